"""`stylelayer.install.gimp`: where GIMP 3 looks for plug-ins, and a real copy into a temporary folder."""

from __future__ import annotations

import os
from pathlib import Path

from stylelayer.install import SHARED_MODULES, plugin_files, plugins_root
from stylelayer.install import gimp as gimp_install


def test_default_plugin_dir_per_platform(tmp_path):
    home = tmp_path / "home"
    assert gimp_install.default_plugin_dir("linux", home, {}) == home / ".config/GIMP/3.0/plug-ins"
    assert gimp_install.default_plugin_dir("linux", home, {"XDG_CONFIG_HOME": "/xdg"}) == Path("/xdg/GIMP/3.0/plug-ins")
    assert gimp_install.default_plugin_dir("darwin", home, {}) == (
        home / "Library/Application Support/GIMP/3.0/plug-ins"
    )
    win = gimp_install.default_plugin_dir("win32", home, {"APPDATA": "C:\\Users\\me\\AppData\\Roaming"})
    assert win == Path("C:\\Users\\me\\AppData\\Roaming") / "GIMP" / "3.0" / "plug-ins"
    assert str(win).startswith("C:\\Users\\me\\AppData\\Roaming")
    assert gimp_install.default_plugin_dir("win32", home, {}) == home / "AppData/Roaming/GIMP/3.0/plug-ins"
    # GIMP3_DIRECTORY replaces GIMP's whole per-user folder, for GIMP and for us
    assert gimp_install.default_plugin_dir("linux", home, {"GIMP3_DIRECTORY": "/cfg"}) == Path("/cfg/plug-ins")


def test_default_plugin_dir_uses_this_machine(monkeypatch, tmp_path):
    monkeypatch.delenv("GIMP3_DIRECTORY", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert gimp_install.default_plugin_dir() == tmp_path / ".config/GIMP/3.0/plug-ins"


def test_install_copies_the_assembled_plugin_with_the_executable_bit(tmp_path):
    dest = tmp_path / "plug-ins"
    installed = gimp_install.install(dest)
    assert installed == dest / "stylelayer_gimp"
    main = installed / "stylelayer_gimp.py"
    assert os.access(main, os.X_OK)
    assembled = plugin_files("gimp")
    assert {p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()} == set(assembled)
    for name in ("stylelayer_gimp.py", "stylelayer_logic.py", *SHARED_MODULES):
        assert (installed / name).read_bytes() == assembled[f"stylelayer_gimp/{name}"].read_bytes()
    for name in SHARED_MODULES:  # assembled from their one source
        assert (installed / name).read_bytes() == (plugins_root() / "common" / name).read_bytes()
    assert not list(installed.rglob("__pycache__"))
    assert [p.name for p in dest.iterdir()] == ["stylelayer_gimp"]  # no staging folder left behind


def test_install_replaces_an_earlier_install(tmp_path):
    dest = tmp_path / "plug-ins"
    old = dest / "stylelayer_gimp"
    old.mkdir(parents=True)
    (old / "stale.py").write_text("old")
    (old / "stylelayer_gimp.py").write_text("old")
    gimp_install.install(dest)
    assert not (old / "stale.py").exists()
    assert (old / "stylelayer_gimp.py").read_text().startswith("#!/usr/bin/env python3")


def _legacy_install(folder: Path, main: str) -> None:
    """A plug-in folder as earlier versions named it: `stylelayer/stylelayer.py`, with its client beside it."""
    folder.mkdir(parents=True)
    (folder / "stylelayer.py").write_text(main)
    (folder / "stylelayer_client.py").write_text("# client")


def test_install_removes_our_plugin_under_its_old_name_and_nothing_else(tmp_path):
    dest = tmp_path / "plug-ins"
    ours = dest / "stylelayer"
    _legacy_install(ours, '#!/usr/bin/env python3\nPROC_NAME = "plug-in-stylelayer"\n')
    assert gimp_install.plugin_dir_for(ours) == dest  # --dest naming the old install: its plug-ins folder
    gimp_install.install(dest)
    assert sorted(p.name for p in dest.iterdir()) == ["stylelayer_gimp"]  # GIMP would register the filter twice

    other = tmp_path / "other" / "plug-ins"
    _legacy_install(other / "stylelayer", "#!/usr/bin/env python3\n# someone else's plug-in of that name\n")
    gimp_install.install(other)
    assert sorted(p.name for p in other.iterdir()) == ["stylelayer", "stylelayer_gimp"]
    assert (other / "stylelayer" / "stylelayer.py").read_text().endswith("that name\n")


def test_install_default_destination(monkeypatch, tmp_path):
    monkeypatch.setenv("GIMP3_DIRECTORY", str(tmp_path / "cfg"))
    assert gimp_install.install() == tmp_path / "cfg/plug-ins/stylelayer_gimp"
