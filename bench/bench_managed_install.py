"""Time and megabytes from Install to Running for the plug-ins' managed server, cold and with a warm cache.

Cold: a new install folder (new venv, nothing downloaded). Warm: the same folder with the venv and the step markers
removed but PyTorch's downloaded wheels and pip's cache kept (what a Repair after an install killed during the
PyTorch step finds). Usage:

    python bench/bench_managed_install.py [--torch torch==2.13.0 torchvision==0.28.0] [--index URL]

The defaults install the CPU build of PyTorch that pip finds on this machine's disk; on a painter's machine
leave out --torch and --index to use the table's choice for the hardware.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugins" / "common"))
sys.path.insert(0, str(REPO / "server"))
import stylelayer_managed as managed  # noqa: E402

from stylelayer.install.server_wheel import build_wheel  # noqa: E402


def _mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6 if path.exists() else 0.0


def install_to_running(inst: managed.Installation, settings: managed.Settings) -> tuple[float, float]:
    """Seconds for Install plus Start until the server answers ready; and the seconds of the start alone."""
    t0 = time.monotonic()
    inst.install(settings)
    t1 = time.monotonic()
    server = managed.ManagedServer(inst, idle_minutes=2)
    server.start()
    state = server.wait_running(600)
    t2 = time.monotonic()
    assert state.state == "running", state
    server.stop()
    return t2 - t0, t2 - t1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch", nargs="*", default=["torch==2.13.0", "torchvision==0.28.0"])
    parser.add_argument("--index", default=managed.PYPI)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="stylelayer-bench-install-"))
    try:
        wheel = build_wheel(work / "wheel")
        settings = managed.Settings(
            wheel=wheel, index=args.index, packages=tuple(args.torch) or None, keep_downloads=True
        )
        inst = managed.Installation(work / "install")
        cold, start = install_to_running(inst, settings)
        kept, folder_mb = _mb(inst.cache) + _mb(inst.downloads), _mb(inst.folder)
        print(
            f"cold: {cold:.0f} s to running (start {start:.0f} s); downloads kept {kept:.0f} MB, all {folder_mb:.0f} MB"
        )
        shutil.rmtree(inst.venv)
        shutil.rmtree(inst.steps_dir)
        warm, start = install_to_running(inst, settings)
        print(f"warm: {warm:.0f} s to running (start {start:.0f} s)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
