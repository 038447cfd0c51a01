"""The torch step downloads into downloads/ before installing: a wheel that finished downloading is not fetched
again by the next run (Repair after an interruption).

A real venv made by the installer and real pip runs against PyPI, with two small packages standing in for
PyTorch's wheels (the real PyTorch install is test_install_e2e.py). The first run downloads one wheel and stops
(its plug-in wheel is missing); the next asks for that one and another, as a Repair after a download that ended
between two wheels does: it takes the first from downloads/ and fetches only the second."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from testimages import REPO

sys.path.insert(0, str(REPO / "plugins" / "common"))
import stylelayer_managed as managed

pytestmark = pytest.mark.slow


def test_an_interrupted_download_goes_on_with_the_files_not_yet_fetched(tmp_path) -> None:
    inst = managed.Installation(tmp_path / "install")
    first = managed.Settings(
        wheel=tmp_path / "none.whl",
        platform="linux",
        backend="cpu",
        index=managed.PYPI,
        packages=("six==1.16.0",),
        keep_downloads=True,
    )
    with pytest.raises(managed.InstallError, match="server package .* is missing"):
        inst.install(first)  # python, venv and "torch" (six) done; no stylelayer wheel: the install stops there
    assert [p.name for p in inst.downloads.iterdir()] == ["six-1.16.0-py2.py3-none-any.whl"]
    assert inst.state() == "incomplete"

    # the set grows by a wheel (as a CUDA build's does over a CPU one): only the new one is downloaded
    second = managed.Settings(
        wheel=tmp_path / "none.whl",
        platform="linux",
        backend="cpu",
        index=managed.PYPI,
        packages=("six==1.16.0", "waitress==3.0.2"),
    )
    before = inst.log_path.read_text()
    with pytest.raises(managed.InstallError, match="server package .* is missing"):
        inst.install(second)
    log = inst.log_path.read_text()[len(before) :]
    assert "step python: already done" in log and "step venv: already done" in log
    assert "File was already downloaded" in log and "six-1.16.0" in log
    assert "Downloading waitress-3.0.2" in log and "Downloading six" not in log
    assert "Successfully installed waitress-3.0.2" in log
    assert not inst.downloads.exists()  # removed once installed (keep_downloads off)
    assert Path(inst.python).is_file()

    # a venv deleted by hand: Repair makes it and what depends on it again, not the Python search
    shutil.rmtree(inst.venv)
    assert inst.state() == "incomplete"
    before = inst.log_path.read_text()
    with pytest.raises(managed.InstallError, match="server package .* is missing"):
        inst.install(second)
    log = inst.log_path.read_text()[len(before) :]
    assert "step python: already done" in log and "step venv: Creating" in log and "step torch: Installing" in log
    assert Path(inst.python).is_file()
