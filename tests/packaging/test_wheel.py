"""A wheel carries the plug-ins: build one from this source (offline, no build isolation), install it with
`pip install --target` beside no checkout, and run `stylelayer install-plugin` from that non-editable copy."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from testimages import REPO

import stylelayer
from stylelayer.install import plugin_files
from stylelayer.install.server_wheel import cached_wheel

SOURCES = ("setup.py", "setup.cfg", "pyproject.toml", "README.md", "MANIFEST.in", "server", "plugins")


def _run(*args: str | Path, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, f"{args} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A site folder holding the wheel's stylelayer (and only that: its dependencies come from this venv)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc"))
        else:
            shutil.copy2(path, src / name)
    pip = (sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input")
    _run(*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", tmp / "dist", src, cwd=tmp)
    (wheel,) = (tmp / "dist").glob("stylelayer-*.whl")
    _run(*pip, "install", "--no-deps", "--no-index", "--target", tmp / "site", wheel, cwd=tmp)
    shutil.rmtree(src)  # nothing of the source is left beside the installed copy
    return tmp / "site"


def _stylelayer(site: Path, *args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return _run(site / "bin" / "stylelayer", *args, cwd=cwd, env=env)


def test_the_wheel_holds_the_plugins_sources(installed):
    code = "import stylelayer.install as i; print(i.plugins_root())"
    root = _run(sys.executable, "-c", code, cwd=installed.parent, env={**os.environ, "PYTHONPATH": str(installed)})
    assert Path(root.stdout.strip()) == installed / "stylelayer" / "_plugins"
    for rel, source in plugin_files("krita").items() | plugin_files("gimp").items():
        host = "krita" if rel.startswith("stylelayer_krita") else "gimp"
        if rel.endswith(".whl"):
            continue  # the server wheel is built when a plug-in is assembled (test_server_wheel_...)
        if source.parent.name == "common":
            assert (installed / "stylelayer" / "_plugins" / "common" / source.name).read_bytes() == source.read_bytes()
        else:
            assert (installed / "stylelayer" / "_plugins" / host / rel).read_bytes() == source.read_bytes()


def test_install_plugin_krita_zip_from_the_installed_wheel(installed, tmp_path):
    _stylelayer(installed, "install-plugin", "krita", "--zip", tmp_path / "x.zip", cwd=tmp_path)
    expected = plugin_files("krita")  # assembled from this checkout
    assert {"stylelayer_krita/shared/stylelayer_client.py", "stylelayer_krita/shared/stylelayer_workflow.py"} <= set(
        expected
    )
    with zipfile.ZipFile(tmp_path / "x.zip") as zf:
        folders = {"stylelayer_krita/", "stylelayer_krita/server/", "stylelayer_krita/shared/"}
        assert set(zf.namelist()) == {*expected, *folders}
        for rel, source in expected.items():
            assert zf.read(rel) == source.read_bytes(), rel


@pytest.mark.parametrize("host", ["krita", "gimp"])
def test_install_plugin_folder_from_the_installed_wheel(installed, tmp_path, host):
    dest = tmp_path / ("krita" if host == "krita" else "plug-ins")  # folders each host reads plug-ins from
    _stylelayer(installed, "install-plugin", host, "--dest", dest, cwd=tmp_path)
    root = dest / "pykrita" if host == "krita" else dest
    expected = plugin_files(host)
    assert {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} == set(expected)
    for rel, source in expected.items():
        assert (root / rel).read_bytes() == source.read_bytes(), rel
    if host == "gimp":
        assert os.access(root / "stylelayer_gimp" / "stylelayer_gimp.py", os.X_OK)


def test_the_plugins_carry_the_server_wheel_of_their_own_version(installed, tmp_path):
    """The wheel a plug-in assembled from an installed stylelayer carries is byte for byte the one a checkout
    builds, installs with pip into a new folder, and holds the server (and not the plug-ins' sources)."""
    _stylelayer(installed, "install-plugin", "gimp", "--dest", tmp_path / "plug-ins", cwd=tmp_path)
    (carried,) = (tmp_path / "plug-ins" / "stylelayer_gimp" / "server").glob("stylelayer-*.whl")
    assert carried.name == f"stylelayer-{stylelayer.__version__}-py3-none-any.whl"
    assert carried.read_bytes() == cached_wheel().read_bytes()
    with zipfile.ZipFile(carried) as zf:
        names = zf.namelist()
        metadata = zf.read(f"stylelayer-{stylelayer.__version__}.dist-info/METADATA").decode()
    assert "stylelayer/api/serve.py" in names and not any("_plugins" in n for n in names)
    assert "Requires-Dist: torch" in metadata and "Requires-Dist: pytest" not in metadata
    pip = (sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input")
    _run(*pip, "install", "--no-deps", "--no-index", "--target", tmp_path / "site", carried, cwd=tmp_path)
    code = "import stylelayer.api.serve, stylelayer; print(stylelayer.__version__)"
    done = _run(sys.executable, "-c", code, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(tmp_path / "site")})
    assert done.stdout.strip() == stylelayer.__version__
