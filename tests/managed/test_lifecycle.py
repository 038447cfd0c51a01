"""The managed server's lifecycle with a real `stylelayer serve` (real engine, CPU): the ready file, --idle-exit,
the stop request, a server that outlives the short-lived process that started it (GIMP's plug-in), finding it
again, and the data folder's lock against a second server.

The installation here is a stand-in for the installer's venv: its `python` runs this checkout's server with the
test venv (the real install, venv and pip included, is tests/managed/test_install_e2e.py)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from testimages import REPO, real_image

sys.path.insert(0, str(REPO / "plugins" / "common"))
import stylelayer_client
import stylelayer_managed as managed

SERVE = "import sys; from stylelayer.cli import main; sys.exit(main(sys.argv[1:]))"


def _installed(folder: Path) -> managed.Installation:
    """An Installation marked complete whose python is this test's interpreter with this checkout's server."""
    inst = managed.Installation(folder)
    (inst.venv / "bin").mkdir(parents=True)
    inst.python.write_text(f'#!/bin/sh\nPYTHONPATH="{REPO / "server"}" exec "{sys.executable}" "$@"\n')
    inst.python.chmod(0o755)
    for step in managed.STEPS:
        inst._mark(step, "test", {"backend": "cpu"} if step == "check" else {})
    assert inst.state() == "installed"
    return inst


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_serve_writes_the_ready_file_and_stops_when_idle(tmp_path) -> None:
    data = tmp_path / "data"
    argv = ["serve", "--port", "0", "--device", "cpu", "--data-dir", str(data), "--styles-dir", str(tmp_path / "s")]
    env = {**os.environ, "PYTHONPATH": str(REPO / "server"), "STYLELAYER_TOKEN": "tok"}
    proc = subprocess.Popen(
        [sys.executable, "-u", "-c", SERVE, *argv, "--idle-exit", "0.1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        ready_path = data / "ready.json"
        ready = _wait(lambda: ready_path.is_file() and json.loads(ready_path.read_text()), 120, "ready.json")
        assert ready["pid"] == proc.pid and ready["device"] == "cpu" and ready["port"] > 0
        assert ready["url"] == f"http://127.0.0.1:{ready['port']}"
        client = stylelayer_client.StylelayerClient(ready["url"], token="tok")
        started = time.monotonic()
        assert client.health()["status"] == "ok"
        assert proc.wait(timeout=60) == 0
        idle = time.monotonic() - started
        assert 5.0 <= idle <= 20, idle  # 0.1 min after the last request, polled each second
        assert not ready_path.exists()
        assert "stylelayer server stopped: idle for 0.1 min (--idle-exit)" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_running_job_is_not_idle(tmp_path) -> None:
    """A job longer than the idle time keeps a quiet server up (nobody asks about it); the idle time counts from
    the job's end."""
    inst = _installed(tmp_path / "install")
    server = managed.ManagedServer(inst, idle_minutes=0.05)  # 3 s
    server.start()
    try:
        state = server.wait_running(120)
        assert state.state == "running", state
        client = stylelayer_client.StylelayerClient(state.url, token=server.token())
        styles = [_png(real_image("starry_night", 96))]
        job = client.submit(_png(real_image("tubingen", 192)), styles, params={"size": 192, "iterations": 300})
        time.sleep(5)  # no request for longer than the idle time
        assert managed.pid_alive(state.pid)
        assert client.status(job)["state"] == "running", "the job ended too soon to show anything"
        _wait(lambda: client.status(job)["state"] == "done", 600, "the job")
        ended = time.monotonic()
        _wait(lambda: not managed.pid_alive(state.pid), 30, "the idle exit after the job")
        assert time.monotonic() - ended >= 2.5
        assert server.status().state == "stopped"
    finally:
        assert server.stop()


def test_managed_start_survives_its_starter_is_found_again_and_stops(tmp_path) -> None:
    inst = _installed(tmp_path / "install")
    token_file = tmp_path / "plugin" / "token"
    starter = (
        f"import sys; sys.path.insert(0, {str(REPO / 'plugins' / 'common')!r}); import stylelayer_managed as m;"
        f" s = m.ManagedServer(m.Installation({str(inst.folder)!r}), token_file={str(token_file)!r});"
        " print(s.start().state)"
    )
    # GIMP's plug-in process: starts the server and ends at once
    done = subprocess.run([sys.executable, "-c", starter], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "starting", done.stderr
    server = managed.ManagedServer(managed.Installation(inst.folder), token_file=token_file)  # the next run
    try:
        state = server.wait_running(120)
        assert state.state == "running" and state.device == "cpu", (
            state,
            inst.folder.joinpath("server.log").read_text(),
        )
        assert managed.state_line(inst, state) == "Running on CPU"
        assert "--token" not in " ".join(_cmdline(state.pid)).replace("--token-file", "")  # never on a command line
        assert server.token() not in " ".join(_cmdline(state.pid))
        assert stylelayer_client.StylelayerClient(state.url, token=server.token()).health()["engine"] == "ready"
        with pytest.raises(stylelayer_client.StylelayerError):
            stylelayer_client.StylelayerClient(state.url).health()  # the token is required
        again = server.start()  # a second Start, or a second window: the same server
        assert (again.state, again.pid) == ("running", state.pid)
        # a second server on the same data folder is refused by the job store's lock
        second = subprocess.run(
            [
                str(inst.python),
                "-c",
                SERVE,
                "serve",
                "--port",
                "0",
                "--device",
                "cpu",
                "--data-dir",
                str(server.jobs_dir),
                "--styles-dir",
                str(server.styles_dir),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode == 2 and "stylelayer serve:" in second.stderr, second.stderr
        assert server.status().pid == state.pid
        assert server.stop(timeout=30)
        assert server.status().state == "stopped" and not (server.jobs_dir / "ready.json").exists()
        assert not managed.pid_alive(state.pid)
    finally:
        server.stop()


def test_a_server_that_cannot_start_says_why(tmp_path) -> None:
    inst = _installed(tmp_path / "install")
    inst.python.write_text("#!/bin/sh\necho 'stylelayer serve: cannot listen on 127.0.0.1 port 0: boom' >&2\nexit 2\n")
    server = managed.ManagedServer(inst)
    assert server.start().state == "starting"
    state = server.wait_running(30)
    assert state.state == "failed"
    assert state.message.startswith("The server did not start (cannot listen on 127.0.0.1 port 0: boom); press Repair")


def _png(image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def _cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
