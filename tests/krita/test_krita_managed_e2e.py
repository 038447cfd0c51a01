"""The managed server in a REAL Krita (xvfb), from a fresh HOME: the plug-in unpacked from its import zip, Server:
Local (managed), Install (a venv from $STYLELAYER_PYTHON's 3.11, PyTorch, the wheel the zip carries) until the
state line says Running, a job on an elliptical selection landing as a masked layer, then File > Quit: no
stylelayer process is left. PyTorch is the CPU build on this machine's disk (STYLELAYER_TORCH_PACKAGES; the table's
CPU index is out of reach here); nothing comes from the developer's .venv."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from test_krita_e2e import _require_host, check_masked, crop, ellipse_region, inputs, krita_job, layers, run_krita  # noqa: F401

from stylelayer.install import krita as kinstall

pytestmark = [pytest.mark.krita, pytest.mark.slow]

HERE = Path(__file__).resolve().parent
LOCAL_TORCH = Path("/opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl")


def _stylelayer_processes(folder: Path) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if str(folder) in line]


@pytest.mark.skipif(not LOCAL_TORCH.is_file(), reason=f"needs the CPU build of PyTorch on disk ({LOCAL_TORCH})")
@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="the PyTorch wheel on disk is for Python 3.11")
def test_install_from_the_dialog_paint_an_ellipse_quit(tmp_path, inputs, monkeypatch):  # noqa: F811
    from stylelayer_image import feather_mask, open_edges

    _require_host()
    home = tmp_path / "home"
    pykrita = home / ".local" / "share" / "krita" / "pykrita"
    pykrita.mkdir(parents=True)
    with zipfile.ZipFile(kinstall.build_zip(tmp_path / "stylelayer_krita.zip")) as zf:
        zf.extractall(pykrita)  # what Import Python Plugin from File… does with it
    (pykrita / "stylelayer_e2e").mkdir()
    for path in (HERE / "driver_plugin" / "stylelayer_e2e").iterdir():
        (pykrita / "stylelayer_e2e" / path.name).write_bytes(path.read_bytes())
    (pykrita / "stylelayer_e2e.desktop").write_bytes((HERE / "driver_plugin" / "stylelayer_e2e.desktop").read_bytes())
    kritarc = home / ".config" / "kritarc"
    kritarc.parent.mkdir(parents=True)
    text = kinstall.set_plugin_enabled("", "stylelayer_krita")
    kritarc.write_text(kinstall.set_plugin_enabled(text, "stylelayer_e2e"))
    (home / "run").mkdir(mode=0o700)
    # the wheel on disk is for CPython 3.11: the venv must be one (another python3.x on PATH could win)
    monkeypatch.setenv("STYLELAYER_PYTHON", getattr(sys, "_base_executable", sys.executable))
    monkeypatch.setenv("STYLELAYER_TORCH_INDEX", "pypi")
    monkeypatch.setenv("STYLELAYER_TORCH_PACKAGES", "torch==2.13.0 torchvision==0.28.0")
    for name in ("VIRTUAL_ENV", "PYTHONHOME"):
        monkeypatch.delenv(name, raising=False)
    folder = home / ".local" / "share" / "krita" / "stylelayer-server"
    out = tmp_path / "run"
    try:
        result = run_krita(
            home,
            out,
            krita_job(
                "dialog",
                inputs,
                "",
                managed=True,
                install_timeout_s=480,
                ellipse=[12, 10, 60, 44],
                quit=True,
                dialog_timeout_s=120,
                grab_dir=os.environ.get("STYLELAYER_GRAB_DIR", ""),  # pictures of the panel, when asked for
            ),
            timeout=720,
        )
        assert result["ok"], result.get("traceback") or result.get("error_message") or result
        states, managed = result["managed_states"], result["managed"]
        assert states[0] == "Not installed: press Install.", states
        assert any(s.startswith("Installing — Installing PyTorch (step 3 of 5)") for s in states), states
        assert managed["state"] == "Running on CPU", (states, (folder / "install.log").read_text()[-3000:])
        assert managed["url"].startswith("http://127.0.0.1:") and managed["status_line"].startswith("Connected to")
        size = tuple(result["size"])
        selection = (out / "selection.mask").read_bytes()
        rect = ellipse_region(selection, size)
        edges = open_edges(rect, rect, (0, 0, *size))
        check_masked(
            result, out, rect, feather_mask(crop(selection, size, rect, 1), rect[2], rect[3], open_edges=edges)
        )
        assert [entry[0] for entry in layers(result)][-1] == "Style: starry night"
        # File > Quit ended Krita (the driver quit, not the timeout) and with it the managed server
        assert not json.loads((out / "result.json").read_text()).get("quit_timeout")
        assert not (folder / "data" / "jobs" / "ready.json").exists()
        assert _stylelayer_processes(folder) == []
        print(f"\nKrita: Install to Running and one job, {result['elapsed_s']} s; {len(states)} state lines")
    finally:
        for line in _stylelayer_processes(folder):
            os.kill(int(line.split()[0]), 9)
