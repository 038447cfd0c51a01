"""A real install, as the plug-ins run it: the installer takes the Python 3.11 named by $STYLELAYER_PYTHON (the
PyTorch wheel on disk is for 3.11; finding one on PATH is test_managed_unit's), creates a venv in its own folder,
pip installs PyTorch and the stylelayer wheel the plug-in carries, checks PyTorch, starts the server and a job runs.
Killed half-way, the next install (Repair) skips the finished steps and downloads nothing they downloaded.

PyTorch here is the CPU build 2.13.0 that lies on this machine's disk (pip's configured find-links), chosen with
the table's override: the table's own Linux CPU index (download.pytorch.org) is out of this machine's reach.
Nothing comes from the developer's .venv: the venv is new and its packages come from pip's indexes and cache.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from PIL import Image
from testimages import REPO, real_image

sys.path.insert(0, str(REPO / "plugins" / "common"))
import stylelayer_client
import stylelayer_managed as managed

from stylelayer.install import plugin_files

pytestmark = pytest.mark.slow

# The CPU build on this machine's disk, and the torchvision made for it (pip's index here also has newer ones,
# which would ask for another torch)
TORCH = ("torch==2.13.0", "torchvision==0.28.0")
LOCAL_TORCH = Path("/opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl")


# The wheel on disk is for CPython 3.11: the venv must be one (pyenv's python3.12 shim could win on another PATH)
PYTHON_311 = getattr(sys, "_base_executable", sys.executable)


def _settings(wheel: Path) -> managed.Settings:
    return managed.Settings(wheel=wheel, platform="linux", backend="cpu", index=managed.PYPI, packages=TORCH)


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


@pytest.mark.skipif(not LOCAL_TORCH.is_file(), reason=f"needs the CPU build of PyTorch on disk ({LOCAL_TORCH})")
@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="the PyTorch wheel on disk is for Python 3.11")
def test_install_killed_half_way_then_repair_then_a_job(tmp_path) -> None:
    files = plugin_files("gimp")  # the plug-in as installed, with its server wheel
    plugin = tmp_path / "plug-ins"
    for rel, source in files.items():
        (plugin / rel).parent.mkdir(parents=True, exist_ok=True)
        (plugin / rel).write_bytes(source.read_bytes())
    wheel = managed.find_wheel(plugin / "stylelayer_gimp" / "server")
    assert wheel is not None
    folder = tmp_path / "GIMP" / "stylelayer-server"

    # 1. An install in its own process (as in a host), killed once PyTorch is installed.
    code = (
        f"import sys; sys.path.insert(0, {str(plugin / 'stylelayer_gimp')!r}); import stylelayer_managed as m;"
        f" m.Installation({str(folder)!r}).install(m.Settings(wheel=m.Path({str(wheel)!r}), platform='linux',"
        f" backend='cpu', index=m.PYPI, packages={TORCH!r}))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["STYLELAYER_PYTHON"] = PYTHON_311  # first candidate; the other ones on PATH are still probed after it
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, start_new_session=True)
    inst = managed.Installation(folder)
    try:
        deadline = time.monotonic() + 900
        while inst.marker("torch") is None:
            assert proc.poll() is None, f"the install ended early:\n{inst.log_path.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "PyTorch did not install in 15 min"
            time.sleep(0.2)
        killed_after = time.monotonic() - started
        assert inst.state() == "installing"
        os.killpg(proc.pid, signal.SIGKILL)  # the host and the pip it runs, as when a painter kills Krita
        proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert inst.state() == "incomplete"
    first_log = inst.log_path.read_text()
    assert "Processing /opt/wheels/torch-2.13.0" in first_log or "torch-2.13.0" in first_log

    # 2. Repair: the finished steps are not run again and nothing they fetched is fetched again.
    seen = []
    repaired_at = time.monotonic()
    result = inst.install(_settings(wheel), seen.append)  # (its python step is done: STYLELAYER_PYTHON not needed)
    repair_s = time.monotonic() - repaired_at
    repair_log = inst.log_path.read_text()[len(first_log) :]
    for step in ("python", "venv", "torch"):
        assert f"step {step}: already done" in repair_log
    assert "step stylelayer: Installing the stylelayer server" in repair_log
    assert "torch-2.13.0" not in repair_log.replace("Requirement already satisfied: torch", "")
    assert {p.step for p in seen} == {"stylelayer", "check"}
    assert result["torch"].startswith("2.13.0") and result["cuda"] is False and result["stylelayer"]
    assert inst.state() == "installed"
    size_mb = inst.size_bytes() / 1e6

    # 3. Start, a job, stop.
    server = managed.ManagedServer(inst, token_file=plugin / "stylelayer_gimp" / "token", idle_minutes=5)
    try:
        assert server.start().state == "starting"
        state = server.wait_running(300)
        assert state.state == "running" and state.device == "cpu", (state, server.log_path.read_text()[-2000:])
        ready_s = time.monotonic() - started
        client = stylelayer_client.StylelayerClient(state.url, token=server.token())
        content = real_image("tubingen", 64)
        job = client.submit(_png(content), [_png(real_image("starry_night", 64))], params={"size": 64, "iterations": 5})
        deadline = time.monotonic() + 300
        while client.status(job)["state"] in ("queued", "running"):
            assert time.monotonic() < deadline
            time.sleep(0.5)
        assert client.status(job)["state"] == "done"
        with Image.open(io.BytesIO(client.result(job))) as result_image:
            assert result_image.size == content.size
        assert managed.state_line(inst, server.status()) == "Running on CPU"
    finally:
        assert server.stop()
    print(
        f"\ninstall killed after {killed_after:.0f} s, repair {repair_s:.0f} s, install to running {ready_s:.0f} s,"
        f" install folder {size_mb:.0f} MB"
    )

    # 4. Upgrade to another wheel (here the same files, stored uncompressed: other bytes): only the stylelayer step
    # and the check run again, PyTorch stays, and so do the style library and the jobs.
    (server.styles_dir / "keep.txt").parent.mkdir(parents=True, exist_ok=True)
    (server.styles_dir / "keep.txt").write_text("mine")
    newer = tmp_path / "new" / wheel.name
    newer.parent.mkdir()
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(newer, "w", zipfile.ZIP_STORED) as dst:
        for item in src.infolist():
            dst.writestr(item.filename, src.read(item), zipfile.ZIP_STORED)
    before = inst.log_path.read_text()
    inst.install(_settings(newer))
    upgrade_log = inst.log_path.read_text()[len(before) :]
    assert "step torch: already done" in upgrade_log and "step stylelayer: Installing" in upgrade_log
    assert "Successfully installed stylelayer-" in upgrade_log
    assert (server.styles_dir / "keep.txt").read_text() == "mine"
    assert (server.jobs_dir / "jobs.sqlite3").is_file()
