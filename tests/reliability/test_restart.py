"""Jobs and results survive a restart: a clean stop, and `stylelayer serve` killed with SIGKILL mid-job.

The SIGKILL test runs the real command with the real engine on tiny images (32-64 px, a few dozen iterations), so
what it proves is what a painter gets: the finished result comes back byte for byte, the running and queued jobs
run again to the end.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from protocol_helpers import FakeEngine, gradient, png_bytes, stylelayer_client
from reliability_helpers import stylize_behind, wait_terminal
from server_thread import ServerThread
from testimages import real_image

from stylelayer.api import create_app, serve
from stylelayer.api.job_store import JobStore, StoreBusy

pytestmark = pytest.mark.category("Restart")

CONTENT = png_bytes(gradient(24, 16))
STYLE = png_bytes(gradient(8, 8))


def wait_state(client: stylelayer_client.StylelayerClient, job_id: str, state: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while (status := client.status(job_id))["state"] != state:
        assert time.monotonic() < deadline, status
        time.sleep(0.02)
    return status


def test_clean_stop_and_start_keep_every_job(tmp_path, cases) -> None:
    """Stop with one job done, one running, one queued and a /v1/stylize caller waiting; start again on the same
    data folder: the result and its losses are identical, the running and queued jobs run to the end (the running
    one from the start, `restarts` 1), the /v1/stylize job (its caller is gone) is cancelled."""
    data = str(tmp_path / "data")
    engine = FakeEngine()
    srv = ServerThread(create_app({"data_dir": data}, engine=engine)).start()
    client = stylelayer_client.StylelayerClient(srv.url, timeout=20)
    done = client.submit(CONTENT, STYLE, params={"iterations": 4, "seed": 9})
    wait_state(client, done, "done")
    result, losses = client.result(done), client.losses(done)
    engine.gate = threading.Event()
    running = client.submit(png_bytes(gradient(30, 20)), STYLE, params={"iterations": 3})
    assert engine.started.wait(5)
    queued = client.submit(CONTENT, [STYLE, STYLE], params={"iterations": 2, "style_blend": [1, 3]})
    caller, answer = stylize_behind(client, CONTENT, STYLE, queued=2)
    srv.stop()
    caller.join(10)
    assert answer == {"error": (409, "job_cancelled")}

    again = FakeEngine()
    srv = ServerThread(create_app({"data_dir": data}, engine=again)).start()
    try:
        client = stylelayer_client.StylelayerClient(srv.url, timeout=20)
        assert client.result(done) == result and client.losses(done) == losses
        assert client.status(done)["restarts"] == 0
        assert wait_terminal(client, running)["state"] == "done" and client.status(running)["restarts"] == 1
        assert wait_terminal(client, queued)["state"] == "done" and client.status(queued)["restarts"] == 0
        assert client.result(running)[:8] == b"\x89PNG\r\n\x1a\n"
        assert [len(call[1]) for call in again.calls] == [1, 2]  # the two jobs again, with their own styles
        assert again.calls[1][2].style_blend == (1.0, 3.0)
        assert len(client.losses(running)["points"]) == 3  # its interrupted run's points are gone
        counts = client.info()["jobs"]
        assert counts == {"queued": 0, "running": 0, "done": 3, "failed": 0, "cancelled": 1}
        assert sorted(p.name for p in (tmp_path / "data" / "files").iterdir()) == sorted(
            f"{i}.result.png" for i in (done, running, queued)
        )  # the inputs went when their jobs ended
    finally:
        srv.stop()
    cases(4)


def test_lost_input_fails_only_that_job(tmp_path, cases) -> None:
    """A queued job whose saved input vanished while the server was down fails with `restart_failed`; the job
    behind it still runs."""
    data = tmp_path / "data"
    engine = FakeEngine()
    engine.gate = threading.Event()
    srv = ServerThread(create_app({"data_dir": str(data)}, engine=engine)).start()
    client = stylelayer_client.StylelayerClient(srv.url, timeout=20)
    first = client.submit(CONTENT, STYLE)
    assert engine.started.wait(5)
    second = client.submit(CONTENT, STYLE, params={"iterations": 1})
    srv.stop()
    (data / "files" / f"{first}.content").unlink()
    srv = ServerThread(create_app({"data_dir": str(data)}, engine=FakeEngine())).start()
    try:
        client = stylelayer_client.StylelayerClient(srv.url, timeout=20)
        status = wait_terminal(client, first)
        assert status["state"] == "failed" and status["error"]["code"] == "restart_failed"
        assert "content" in status["error"]["message"]
        assert wait_terminal(client, second)["state"] == "done"
    finally:
        srv.stop()
    cases(2)


def test_one_data_folder_one_server(tmp_path, capsys, cases) -> None:
    """A second server on a data folder in use is refused (no two workers running the same jobs): StoreBusy from
    the store, exit 2 with a clear line from `stylelayer serve`."""
    store = JobStore(tmp_path / "data")
    try:
        with pytest.raises(StoreBusy, match="another stylelayer server"):
            JobStore(tmp_path / "data")
        parser = __import__("argparse").ArgumentParser()
        serve.add_arguments(parser)
        args = parser.parse_args(
            [
                "--port",
                "0",
                "--device",
                "cpu",
                "--data-dir",
                str(tmp_path / "data"),
                "--styles-dir",
                str(tmp_path / "styles"),
            ]
        )
        serve.StyleEngine, real = (lambda **kw: FakeEngine()), serve.StyleEngine
        try:
            assert serve.run(args) == 2
        finally:
            serve.StyleEngine = real
        assert "another stylelayer server is using" in capsys.readouterr().err
    finally:
        store.close()
    JobStore(tmp_path / "data").close()  # free again once the first one closed
    cases(2)


def _start_serve(tmp_path: Path, log_name: str) -> tuple[subprocess.Popen, str]:
    """`stylelayer serve` as a user runs it (real engine, CPU), output to a file; returns (process, URL)."""
    code = "import sys; from stylelayer.cli import main; sys.exit(main(sys.argv[1:]))"
    argv = [
        "serve",
        "--port",
        "0",
        "--device",
        "cpu",
        "--data-dir",
        str(tmp_path / "data"),
        "--styles-dir",
        str(tmp_path / "styles"),
    ]
    log = tmp_path / log_name
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-u", "-c", code, *argv], stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", log.read_text())
        if match:
            return proc, match.group(1)
        assert proc.poll() is None, log.read_text()
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"the server did not start: {log.read_text()}")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="SIGKILL is POSIX-only")
def test_sigkill_mid_job_then_restart(tmp_path, cases, request) -> None:
    """`stylelayer serve` (real engine, CPU) killed with SIGKILL while one job is done, one running and one
    queued; started again on the same data folder: the finished result is served byte-identical with its losses,
    the killed running job starts over and completes, the queued job completes."""
    content = png_bytes(real_image("tubingen", 64))
    style = png_bytes(real_image("starry_night", 64))
    proc, url = _start_serve(tmp_path, "serve1.log")
    try:
        client = stylelayer_client.StylelayerClient(url, timeout=30)
        done = client.submit(content, style, params={"size": 32, "iterations": 4, "seed": 1})
        wait_state(client, done, "done", 120)
        result, losses = client.result(done), client.losses(done)
        running = client.submit(content, style, params={"size": 64, "iterations": 30, "seed": 2})
        queued = client.submit(content, style, params={"size": 32, "iterations": 4, "seed": 3})
        deadline = time.monotonic() + 120
        while (status := client.status(running))["iteration"] < 2:
            assert time.monotonic() < deadline and status["state"] in ("queued", "running"), status
            time.sleep(0.05)
        killed_at = status["iteration"]
        assert client.status(queued)["state"] == "queued"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL

    started = time.monotonic()
    proc, url = _start_serve(tmp_path, "serve2.log")
    try:
        client = stylelayer_client.StylelayerClient(url, timeout=30)
        restart_s = time.monotonic() - started
        assert client.status(done)["state"] == "done"
        assert client.result(done) == result and client.losses(done) == losses
        after_kill = client.status(running)
        assert after_kill["restarts"] == 1 and after_kill["state"] in ("queued", "running")
        assert wait_state(client, running, "done", 240)["iteration"] == 30
        assert len(client.losses(running)["points"]) == 30
        assert wait_state(client, queued, "done", 120)["restarts"] == 0
        assert client.result(queued)[:8] == b"\x89PNG\r\n\x1a\n"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    request.node.user_properties.append(
        (
            "figures",
            f"before the kill: 1 done ({len(result)} B result, {len(losses['points'])} loss points), 1 running (at "
            f"iteration {killed_at} of 30), 1 queued; after it: server up again in {restart_s:.1f} s, result "
            "byte-identical, losses identical, the running job restarted (restarts 1) and done in 30 iterations, the "
            "queued job done",
        )
    )
    cases(3)
