"""Installing the Krita plug-in into a resource folder and building its import zip."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from sourcecheck import foreign_imports

import stylelayer
from stylelayer.install import SHARED_MODULES, plugin_files, plugins_root
from stylelayer.install import krita as kinstall

ASSEMBLED = plugin_files("krita")  # path in pykrita/ -> source file


def test_default_paths_per_platform():
    env = {"HOME": "/home/ann"}
    assert kinstall.default_resource_dir("linux", env) == Path("/home/ann/.local/share/krita")
    assert kinstall.default_kritarc("linux", env) == Path("/home/ann/.config/kritarc")
    xdg = {**env, "XDG_DATA_HOME": "/d", "XDG_CONFIG_HOME": "/c"}
    assert kinstall.default_resource_dir("linux", xdg) == Path("/d/krita")
    assert kinstall.default_kritarc("linux", xdg) == Path("/c/kritarc")
    assert kinstall.default_resource_dir("macos", env) == Path("/home/ann/Library/Application Support/krita")
    assert kinstall.default_kritarc("macos", env) == Path("/home/ann/Library/Preferences/kritarc")
    win = {
        "USERPROFILE": "C:/Users/ann",
        "APPDATA": "C:/Users/ann/AppData/Roaming",
        "LOCALAPPDATA": "C:/Users/ann/AppData/Local",
    }
    assert kinstall.default_resource_dir("windows", win) == Path("C:/Users/ann/AppData/Roaming/krita")
    assert kinstall.default_kritarc("windows", win) == Path("C:/Users/ann/AppData/Local/kritarc")


def test_kritarc_for_standard_layouts():
    assert kinstall.kritarc_for(Path("/h/.local/share/krita")) == Path("/h/.config/kritarc")
    assert kinstall.kritarc_for(Path("/h/Library/Application Support/krita")) == Path("/h/Library/Preferences/kritarc")
    assert kinstall.kritarc_for(Path("/u/AppData/Roaming/krita")) == Path("/u/AppData/Local/kritarc")
    assert kinstall.kritarc_for(Path("/opt/kres")) == Path("/opt/kritarc")


def test_set_plugin_enabled_preserves_other_content():
    assert kinstall.set_plugin_enabled("") == "[python]\nenable_stylelayer_krita=true\n"
    text = "[General]\nfoo=1\n\n[python]\nenable_other=true\nenable_stylelayer_krita=false\n\n[MainWindow]\nx=%20\n"
    out = kinstall.set_plugin_enabled(text)
    assert out == text.replace("enable_stylelayer_krita=false", "enable_stylelayer_krita=true")
    out2 = kinstall.set_plugin_enabled("[python]\nenable_other=true\n\n[Z]\nk=v\n")
    assert out2 == "[python]\nenable_other=true\nenable_stylelayer_krita=true\n\n[Z]\nk=v\n"
    assert kinstall.set_plugin_enabled(out2) == out2  # idempotent
    assert "enable_stylelayer_krita=false" in kinstall.set_plugin_enabled(out2, enabled=False)
    crlf = kinstall.set_plugin_enabled("[General]\r\na=b\r\n")
    assert crlf == "[General]\r\na=b\r\n\r\n[python]\r\nenable_stylelayer_krita=true\r\n"


def test_install_into_throwaway_home(tmp_path):
    resources = tmp_path / ".local" / "share" / "krita"
    kritarc = tmp_path / ".config" / "kritarc"
    kritarc.parent.mkdir(parents=True)
    kritarc.write_text("[General]\nLanguage=de\n\n[python]\nenable_scripter=true\n")
    target = kinstall.install(resources)
    assert target == resources / "pykrita" / "stylelayer_krita"
    for name in ("__init__.py", "logic.py", "qtcodec.py", "transfer.py", "ui.py", "extension.py"):
        assert (target / name).read_bytes() == ASSEMBLED[f"stylelayer_krita/{name}"].read_bytes()
    for name in SHARED_MODULES:  # assembled from their one source
        assert (target / "shared" / name).read_bytes() == (plugins_root() / "common" / name).read_bytes()
    pykrita = resources / "pykrita"
    assert {p.relative_to(pykrita).as_posix() for p in pykrita.rglob("*") if p.is_file()} == set(ASSEMBLED)
    assert not list(target.rglob("__pycache__"))
    text = kritarc.read_text()
    assert "Language=de" in text and "enable_scripter=true" in text and "enable_stylelayer_krita=true" in text
    # reinstall replaces stale files and keeps kritarc stable
    (target / "stale.py").write_text("x")
    kinstall.install(resources)
    assert not (target / "stale.py").exists()
    assert kritarc.read_text() == text


def test_install_without_enable_leaves_kritarc_alone(tmp_path):
    kinstall.install(tmp_path / "res", enable=False)
    assert not (tmp_path / "kritarc").exists()
    kinstall.install(tmp_path / "res", kritarc=tmp_path / "my.rc")
    assert (tmp_path / "my.rc").read_text() == "[python]\nenable_stylelayer_krita=true\n"


def test_build_zip_layout(tmp_path):
    out = kinstall.build_zip(tmp_path / "dist" / "plugin.zip")
    with zipfile.ZipFile(out) as zf:
        names = set(zf.namelist())
    assert "stylelayer_krita.desktop" in names
    assert {
        "stylelayer_krita/",
        "stylelayer_krita/__init__.py",
        "stylelayer_krita/shared/stylelayer_client.py",
        "stylelayer_krita/shared/stylelayer_workflow.py",
    } <= names
    assert all(n == "stylelayer_krita.desktop" or n.startswith("stylelayer_krita/") for n in names)
    assert names == {*ASSEMBLED, "stylelayer_krita/", "stylelayer_krita/server/", "stylelayer_krita/shared/"}
    wheel = ASSEMBLED[f"stylelayer_krita/server/stylelayer-{stylelayer.__version__}-py3-none-any.whl"]
    assert wheel.name.endswith(".whl")  # the server the plug-in's managed server installs
    with zipfile.ZipFile(out) as zf:
        for rel, source in ASSEMBLED.items():
            assert zf.read(rel) == source.read_bytes(), rel
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert kinstall.build_zip(tmp_path) == tmp_path / "stylelayer_krita.zip"


def test_desktop_file_names_the_package():
    desktop = ASSEMBLED["stylelayer_krita.desktop"].read_text()
    assert "X-KDE-Library=stylelayer_krita" in desktop
    assert "ServiceTypes=Krita/PythonPlugin" in desktop


def test_plugin_imports_only_stdlib_pyqt5_and_krita():
    files = [path for rel, path in ASSEMBLED.items() if rel.endswith(".py")]
    assert len(files) == 9 + len(SHARED_MODULES)  # its own nine and the shared ones
    shared = {Path(name).stem for name in SHARED_MODULES}  # imported by name where the host runs them top-level
    assert foreign_imports(files, {"PyQt5", "krita", *shared}) == []


@pytest.mark.parametrize("name", ["logic.py", "transfer.py", *(f"shared/{name}" for name in SHARED_MODULES)])
def test_logic_modules_do_not_import_qt_or_krita(name):
    text = ASSEMBLED[f"stylelayer_krita/{name}"].read_text()
    assert "PyQt5" not in text and "import krita" not in text and "from krita" not in text


KRITA_IMPORTER = Path("/usr/share/krita/pykrita/plugin_importer/plugin_importer.py")


def test_zip_accepted_by_kritas_own_plugin_importer(tmp_path, monkeypatch):
    """Krita's "Import Python Plugin from File…" logic (stdlib-only module shipped with Krita) on our zip."""
    import builtins
    import importlib.util
    import os

    if not KRITA_IMPORTER.is_file():
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI is set but {KRITA_IMPORTER} is missing (run tests/hosts/setup_krita.sh)")
        pytest.skip(f"{KRITA_IMPORTER} not found (Krita not installed)")
    monkeypatch.setattr(builtins, "i18n", lambda text: text, raising=False)  # Krita provides i18n as a builtin
    spec = importlib.util.spec_from_file_location("krita_plugin_importer", KRITA_IMPORTER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    archive = kinstall.build_zip(tmp_path / "stylelayer_krita.zip")
    resources = tmp_path / "resources"
    resources.mkdir()
    imported = module.PluginImporter(str(archive), str(resources), lambda plugin: True).import_all()
    assert [p["name"] for p in imported] == ["stylelayer_krita"]
    for rel, source in ASSEMBLED.items():
        assert (resources / "pykrita" / rel).read_bytes() == source.read_bytes(), rel


def test_dest_is_the_resource_folder_krita_reads(tmp_path):
    """--dest: a folder named krita, one holding pykrita/, pykrita/ itself, or the one chosen in Krita's settings
    (kritarc's ResourceDirectory, then enabled in that same kritarc); anything else is refused."""
    from stylelayer.install import InstallError

    kritarc = tmp_path / "kritarc"
    assert kinstall.resource_dir_for(tmp_path / "krita", kritarc) == (tmp_path / "krita", kritarc)
    assert kinstall.resource_dir_for(tmp_path / "krita" / "pykrita", kritarc) == (tmp_path / "krita", kritarc)
    custom = tmp_path / "art" / "resources"
    with pytest.raises(InstallError, match="would not load a plug-in from"):
        kinstall.resource_dir_for(custom, kritarc)
    kritarc.write_text(f"ResourceDirectory={custom}\n[python]\nenable_other=true\n")
    assert kinstall.configured_resource_dir(kritarc) == custom
    assert kinstall.resource_dir_for(custom, kritarc) == (custom, kritarc)
