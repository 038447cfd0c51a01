"""GIMP's managed server without GIMP: each filter run is its own short-lived process (as GIMP runs plug-ins), using
the assembled plug-in's stylelayer_managed_gimp with server-url `managed`. The first run starts the server, the
second finds the same one, and it stops by itself after its idle time. (A real GIMP cannot run the installer's venv
here: GIMP lives in a Debian trixie chroot whose Python has no PyTorch wheel on this machine's disk.)

The installation is the stand-in of tests/managed/test_lifecycle.py: its python runs this checkout's server."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from testimages import REPO

sys.path.insert(0, str(REPO / "tests" / "managed"))
from test_lifecycle import _installed

FILTER_RUN = """
import json, sys
from pathlib import Path
sys.path.insert(0, {plugin!r})
import stylelayer_managed_gimp as g
import stylelayer_workflow as w
g.install_folder = lambda: Path({folder!r})
g.IDLE_MINUTES = 0.05
# what stylelayer_gimp.py's _make_client does for server-url "managed"
client = w.connect("managed", None, 30, g.running_server)
try:
    print(json.dumps({{"health": client.health(), "pid": g.server().ready()["pid"]}}))
except Exception as exc:
    print(json.dumps({{"error": type(exc).__name__, "message": str(exc)}}))
"""


def _filter_run(plugin_dir: Path, folder: Path) -> dict:
    code = FILTER_RUN.format(plugin=str(plugin_dir), folder=str(folder))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_server_outlives_a_filter_run_is_found_by_the_next_and_stops_when_idle(plugin_dir, tmp_path) -> None:
    import stylelayer_managed as managed

    inst = _installed(tmp_path / "GIMP" / "stylelayer-server")
    first = _filter_run(plugin_dir, inst.folder)
    assert first.get("health", {}).get("status") == "ok", first
    assert managed.pid_alive(first["pid"])  # the plug-in process has ended; its server runs on
    second = _filter_run(plugin_dir, inst.folder)
    assert second["pid"] == first["pid"]
    deadline = time.monotonic() + 30
    while managed.pid_alive(first["pid"]) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not managed.pid_alive(first["pid"]), "the server did not stop after its idle time"
    assert not (inst.data / "jobs" / "ready.json").exists()


def test_a_filter_run_before_install_says_what_to_do(plugin_dir, tmp_path) -> None:
    answer = _filter_run(plugin_dir, tmp_path / "GIMP" / "stylelayer-server")
    assert answer == {
        "error": "PluginError",
        "message": "The local server is not installed: open the filter's dialog, choose Server: Local (managed) and"
        " press Install.",
    }
