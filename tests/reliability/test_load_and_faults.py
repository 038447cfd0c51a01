"""Bounded load and injected faults against real servers on 127.0.0.1 (waitress in a thread, fake engine).

Everything here talks only to loopback, has a fixed number of operations and a deadline, and stops by itself.
"""

from __future__ import annotations

import io
import random
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
from PIL import Image
from protocol_helpers import REPO, FakeEngine, gradient, png_bytes, raw, stylelayer_client
from reliability_helpers import TERMINAL, assert_json_error, stylize_behind, wait_terminal
from server_thread import ServerThread

from stylelayer.api import create_app
from stylelayer.core.engine import OutOfMemory

CONTENT = png_bytes(gradient(24, 16))
STYLE = png_bytes(gradient(8, 8))


# ---- load --------------------------------------------------------------------------------------------------
CLIENTS = 8
OPERATIONS = 240


@pytest.mark.category("Load")
def test_concurrent_submit_poll_cancel_none_lost(make_server, cases) -> None:
    """8 threads, 240 random submit/poll/cancel/stylize/info operations, queue of 6 so some get 429: every
    accepted job ends terminal, done jobs hold their own result, cancelled ones were asked to, counts add up."""
    _, client = make_server(FakeEngine(step_delay=0.001), max_queue=6, keep_results=OPERATIONS)
    accepted: list[tuple[str, int]] = []  # (job id, content width): a swapped result cannot pass
    tally: Counter[str] = Counter()
    cancel_asked: set[str] = set()
    lock = threading.Lock()
    rng = random.Random(6)
    plan = [rng.choice(["submit"] * 4 + ["poll", "cancel", "stylize", "info"]) for _ in range(OPERATIONS)]
    picks = [rng.random() for _ in range(OPERATIONS)]

    def operation(n: int) -> None:
        kind, width = plan[n], 8 + n % 50
        try:
            if kind == "submit":
                job_id = client.submit(png_bytes(gradient(width, 6)), STYLE, params={"iterations": 1 + n % 15})
                with lock:
                    accepted.append((job_id, width))
            elif kind == "stylize":
                out = Image.open(
                    io.BytesIO(client.stylize(png_bytes(gradient(width, 6)), STYLE, params={"iterations": 2}))
                )
                assert out.size == (width, 6)
            elif kind in ("poll", "cancel"):
                with lock:
                    if not accepted:
                        return
                    job_id = accepted[int(picks[n] * len(accepted))][0]
                    if kind == "cancel":
                        cancel_asked.add(job_id)
                if kind == "cancel":
                    assert client.cancel(job_id)["id"] == job_id
                else:
                    assert client.status(job_id)["state"] in ("queued", "running", *TERMINAL)
            else:
                assert client.info()["jobs"]["queued"] <= 6
            with lock:
                tally[kind] += 1
        except stylelayer_client.StylelayerError as exc:
            assert (exc.status, exc.code) == (429, "queue_full") and kind in ("submit", "stylize"), exc.message
            with lock:
                tally["429"] += 1

    started = time.monotonic()
    with ThreadPoolExecutor(CLIENTS) as pool:
        for future in [pool.submit(operation, n) for n in range(OPERATIONS)]:
            future.result(timeout=60)
    for job_id, width in accepted:
        status = wait_terminal(client, job_id)
        if status["state"] == "done":
            assert Image.open(io.BytesIO(client.result(job_id))).size == (width, 6)
        else:
            assert status["state"] == "cancelled" and job_id in cancel_asked, status
    assert time.monotonic() - started < 90
    counts = client.info()["jobs"]
    assert counts["queued"] == counts["running"] == counts["failed"] == 0
    assert counts["done"] + counts["cancelled"] == len(accepted) + tally["stylize"]  # none lost, none invented
    assert tally["submit"] > 20 and tally["429"] > 0 and counts["cancelled"] > 0  # the mix really happened
    cases(OPERATIONS)


# ---- client disconnects ------------------------------------------------------------------------------------
def _post_head(path: str, ctype: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}\r\nContent-Length: {length}\r\n\r\n".encode()
    )


def _connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    return socket.create_connection((parts.hostname, parts.port), timeout=5)


@pytest.mark.category("Faults")
def test_client_disconnects_mid_upload(server, cases) -> None:
    """20 uploads cut off after part of the body (half with a TCP reset): nothing queued, server keeps serving."""
    srv, client = server
    body, ctype = stylelayer_client._job_form(CONTENT, STYLE, None, {}, None)
    for n in range(20):
        sock = _connect(srv.url)
        head = (
            f"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        sock.sendall(head.encode() + body[: len(body) * n // 20])
        if n % 2:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
        sock.close()
        cases()
    assert client.health()["status"] == "ok"
    assert client.info()["jobs"] == {"queued": 0, "running": 0, "done": 0, "failed": 0, "cancelled": 0}
    assert client.run_job(CONTENT, STYLE, poll_interval=0.01)


@pytest.mark.category("Faults")
def test_client_disconnects_mid_poll_and_mid_download(server, cases) -> None:
    """Polls and result downloads abandoned before or during the answer; a /v1/stylize caller that hangs up."""
    srv, client = server
    big = png_bytes(gradient(600, 400))  # a result of ~1 MB, so the download is cut mid-transfer
    job_id = client.submit(big, STYLE, params={"iterations": 1})
    wait_terminal(client, job_id)
    for n in range(30):
        sock = _connect(srv.url)
        path = f"/v1/jobs/{job_id}" if n % 2 else f"/v1/jobs/{job_id}/result"
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        if n % 3 == 1:
            sock.recv(100)
        if n % 3 == 2:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()
        cases()
    # a stylize caller that gives up: waitress may notice the hang-up before the request runs (no job at all), else
    # its job ends (cancelled, or done if it finished first; test_stylize_caller_that_hangs_up_cancels_its_job pins
    # the cancel). Either way nothing stays queued or running and the server stays correct.
    sock = _connect(srv.url)
    body, ctype = stylelayer_client._job_form(CONTENT, STYLE, None, {"iterations": 3}, None)
    head = (
        f"POST /v1/stylize HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    sock.sendall(head.encode() + body)
    sock.close()
    cases()
    deadline = time.monotonic() + 10
    time.sleep(0.5)
    while (jobs := client.info()["jobs"])["queued"] + jobs["running"] > 0:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert client.result(job_id) == client.result(job_id) and client.health()["status"] == "ok"
    assert Image.open(io.BytesIO(client.result(job_id))).size == (600, 400)


@pytest.mark.category("Faults")
def test_stylize_caller_that_hangs_up_cancels_its_job(make_server, cases) -> None:
    """7 /v1/stylize callers (one job running, 6 queued; the 8th HTTP thread polls) hang up: every job is
    cancelled within 2 s, no HTTP thread stays held, /v1/health answers at once. (Before: the jobs ran to the end,
    holding the threads.)"""
    engine = FakeEngine(step_delay=0.01)
    engine.gate = threading.Event()  # holds the first job in its first iteration until the callers are gone
    srv, client = make_server(engine)
    body, ctype = stylelayer_client._job_form(CONTENT, STYLE, None, {"iterations": 10_000}, None)
    socks = []
    for _ in range(7):
        sock = _connect(srv.url)
        sock.sendall(_post_head("/v1/stylize", ctype, len(body)) + body)
        socks.append(sock)
    deadline = time.monotonic() + 10
    while (jobs := client.info()["jobs"])["running"] + jobs["queued"] < 7:
        assert time.monotonic() < deadline, jobs
        time.sleep(0.01)
    for sock in socks:
        sock.close()
    hung_up = time.monotonic()
    while client.info()["jobs"]["cancelled"] < 7:
        assert time.monotonic() - hung_up < 2, client.info()["jobs"]
        time.sleep(0.01)
    started = time.monotonic()
    assert client.health()["status"] == "ok" and time.monotonic() - started < 0.5
    assert client.info()["jobs"] == {"queued": 0, "running": 0, "done": 0, "failed": 0, "cancelled": 7}
    engine.gate.set()
    with ThreadPoolExecutor(8) as pool:  # all 8 threads free again: 8 requests at once answer
        assert all(h["status"] == "ok" for h in pool.map(lambda _: client.health(), range(8)))
    cases(7)


@pytest.mark.category("Faults")
def test_garbage_http_on_the_socket(server, cases) -> None:
    """Raw junk, a bad request line, huge headers, a lying Content-Length: each connection ends, the next works."""
    srv, client = server
    rng = random.Random(7)
    payloads = [
        b"\x00" * 64,
        bytes(rng.randrange(256) for _ in range(2000)),
        b"GARBAGE\r\n\r\n",
        b"GET /v1/health HTTP/9.9\r\n\r\n",
        b"GET " + b"/a" * 10000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX: " + b"y" * 300_000 + b"\r\n\r\n",
        b"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -5\r\n\r\n",
        b"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\nContent-Length: 20\r\n\r\n0123456789",
    ]
    for payload in payloads:
        with _connect(srv.url) as sock:
            try:
                sock.sendall(payload)
                sock.shutdown(socket.SHUT_WR)
                reply = sock.recv(65536)
            except OSError:  # the server may drop such a connection outright
                reply = b""
        if reply:
            status = int(reply.split(b" ", 2)[1])
            assert 400 <= status < 500, reply[:200]
        assert client.health()["status"] == "ok"
        cases()


# ---- cancel in every state ---------------------------------------------------------------------------------
@pytest.mark.category("Faults")
def test_cancel_in_every_state(make_server, cases) -> None:
    """Cancel while queued, running, done, failed, already cancelled, twice in a row and after expiry."""
    engine = FakeEngine()
    engine.gate = threading.Event()
    _, client = make_server(engine, keep_results=100)
    running = client.submit(CONTENT, STYLE, params={"iterations": 50})
    assert engine.started.wait(5)
    queued = client.submit(CONTENT, STYLE)
    assert client.status(queued)["queue_position"] == 1
    assert client.cancel(queued)["state"] == "cancelled"  # queued: at once
    assert client.cancel(queued)["state"] == "cancelled"  # twice: unchanged
    assert client.cancel(running)["state"] in ("running", "cancelled")  # running: at its next iteration
    assert wait_terminal(client, running)["state"] == "cancelled"
    engine.gate = None
    done = client.submit(CONTENT, STYLE, params={"iterations": 1})
    assert wait_terminal(client, done)["state"] == "done"
    result = client.result(done)
    assert client.cancel(done)["state"] == "done" and client.result(done) == result  # done: unchanged
    engine.fail_with = RuntimeError("boom")
    failed = client.submit(CONTENT, STYLE)
    assert wait_terminal(client, failed)["state"] == "failed"
    assert client.cancel(failed)["state"] == "failed"  # failed: unchanged, error kept
    assert client.status(failed)["error"]["code"] == "engine_error"
    for job_id in (running, queued):
        with pytest.raises(stylelayer_client.StylelayerError) as err:
            client.result(job_id)
        assert (err.value.status, err.value.code) == (409, "job_cancelled")
    engine.fail_with = None
    assert client.run_job(CONTENT, STYLE, poll_interval=0.01)  # the worker is still healthy
    cases(7)


@pytest.mark.category("Faults")
def test_cancel_after_expiry_is_404(make_server, cases) -> None:
    """A job forgotten by the history limit answers 404 to cancel and status, not a stale state."""
    _, client = make_server(FakeEngine(), keep_results=1)
    first = client.submit(CONTENT, STYLE, params={"iterations": 1})
    wait_terminal(client, first)
    second = client.submit(CONTENT, STYLE, params={"iterations": 1})
    wait_terminal(client, second)
    for call in (client.cancel, client.status):
        with pytest.raises(stylelayer_client.StylelayerError) as err:
            call(first)
        assert (err.value.status, err.value.code) == (404, "job_not_found")
    cases(2)


# ---- engine failures ---------------------------------------------------------------------------------------
class FailOnce(FakeEngine):
    """Raises `fail_with` in one job only (then clears it), so the job queued behind runs normally."""

    def stylize(self, *args, **kwargs):
        try:
            return super().stylize(*args, **kwargs)
        except Exception as exc:
            if exc is self.fail_with:
                self.fail_with = None
            raise


ENGINE_FAULTS = [
    (RuntimeError("kernel exploded"), "engine_error"),
    (KeyError("conv9_1"), "engine_error"),
    (MemoryError(), "engine_error"),
    (ZeroDivisionError("division by zero"), "engine_error"),
    (ValueError("3 styles but style_blend has 2 weights"), "bad_request"),
    # The real engine turns torch's CUDA, MPS and CPU out-of-memory errors into this (tests/core/test_engine_errors.py).
    (
        OutOfMemory(
            "ran out of GPU memory at 2048x1536 px: reduce size (the working size), or close other programs"
            " that need GPU memory"
        ),
        "out_of_memory",
    ),
]


@pytest.mark.category("Faults")
@pytest.mark.parametrize(("exc", "code"), ENGINE_FAULTS, ids=[f"{type(e).__name__}:{c}" for e, c in ENGINE_FAULTS])
def test_engine_exception_fails_only_that_job(make_server, cases, exc: BaseException, code: str) -> None:
    """An exception or simulated GPU OOM mid-job: that job fails with a clear code, no traceback leaks, the
    queued job behind it still runs, and /v1/stylize maps it to a JSON 4xx/5xx."""
    engine = FailOnce()
    engine.gate = threading.Event()
    srv, client = make_server(engine)
    doomed = client.submit(CONTENT, STYLE)
    assert engine.started.wait(5)
    behind = client.submit(CONTENT, STYLE, params={"iterations": 1})
    engine.fail_with = exc
    engine.gate.set()
    status = wait_terminal(client, doomed)
    assert status["state"] == "failed" and status["error"]["code"] == code
    assert "Traceback" not in status["error"]["message"]
    if code == "out_of_memory":
        assert "reduce size" in status["error"]["message"]
    assert wait_terminal(client, behind)["state"] == "done"
    engine.fail_with, engine.gate = exc, None
    body, ctype = stylelayer_client._job_form(CONTENT, STYLE, None, {}, None)
    got, headers, data = raw(srv.url + "/v1/stylize", "POST", body, {"Content-Type": ctype})
    error = assert_json_error(got, data, headers["Content-Type"], {400, 500})
    assert error["code"] == code and got == (400 if code == "bad_request" else 500)
    engine.fail_with = None
    assert client.run_job(CONTENT, STYLE, poll_interval=0.01) and client.health()["status"] == "ok"
    cases(2)


# ---- shutdown ----------------------------------------------------------------------------------------------
@pytest.mark.category("Faults")
def test_shutdown_while_jobs_run_and_wait(fake_engine, tmp_path, cases) -> None:
    """stop() with a running job, 3 queued and a /v1/stylize caller waiting: under 3 s, the caller's job cancelled
    and the caller answered in JSON, the other jobs left queued for the next start (test_restart.py runs them),
    and no worker or HTTP thread is left behind."""
    fake_engine.gate = threading.Event()
    before = set(threading.enumerate())  # servers of session-scoped fixtures elsewhere in the run may be alive
    app = create_app({"styles_dir": str(tmp_path)}, engine=fake_engine)
    srv = ServerThread(app).start()
    client = stylelayer_client.StylelayerClient(srv.url, timeout=20)
    ids = [client.submit(CONTENT, STYLE) for _ in range(4)]
    assert fake_engine.started.wait(5)
    caller, answer = stylize_behind(client, CONTENT, STYLE, queued=4)
    queue = app.extensions["stylelayer"].queue
    started = time.monotonic()
    srv.stop()
    took = time.monotonic() - started
    caller.join(10)
    assert took < 3, f"stop() took {took:.1f} s"
    assert not caller.is_alive() and answer == {"error": (409, "job_cancelled")}
    assert [queue.get(i).state for i in ids] == ["queued"] * 4  # the running one too: it starts over next time
    assert not any(thread.is_alive() for thread in queue._threads)
    leftover = [t.name for t in set(threading.enumerate()) - before if t.name.startswith(("stylelayer", "waitress"))]
    assert leftover == []
    with pytest.raises(stylelayer_client.ServerUnavailable):
        stylelayer_client.StylelayerClient(srv.url, timeout=2).health()
    cases(5)


SERVE_SCRIPT = textwrap.dedent(
    """
    import sys, threading
    sys.path[:0] = [{helpers!r}, {tests!r}]
    from protocol_helpers import FakeEngine
    from stylelayer.api import serve
    engine = FakeEngine(step_delay=0.05)  # a job of 10000 iterations runs far past the SIGINT
    serve.StyleEngine = lambda **kw: engine
    serve.resolve_device = lambda device: device
    raise SystemExit(serve.run(serve_args))
    """
)


@pytest.mark.category("Faults")
@pytest.mark.parametrize(
    ("signame", "sigint_ignored"), [("SIGINT", False), ("SIGTERM", False), ("SIGINT", True)]
)  # a shell starting a background job makes it ignore SIGINT; service managers send SIGTERM
def test_serve_process_stops_on_signal_with_a_job_running(tmp_path, cases, signame, sigint_ignored) -> None:
    """`stylelayer serve` (real waitress main loop, fake engine) gets SIGINT/SIGTERM mid-job: exit 0 within 10 s."""
    import argparse
    import signal

    script = tmp_path / "serve_fake.py"
    args = [
        "--port",
        "0",
        "--styles-dir",
        str(tmp_path / "styles"),
        "--data-dir",
        str(tmp_path / "data"),
        "--device",
        "cpu",
    ]
    script.write_text(
        "import argparse\nfrom stylelayer.api import serve as _s\n_p = argparse.ArgumentParser()\n"
        f"_s.add_arguments(_p)\nserve_args = _p.parse_args({args!r})\n"
        + SERVE_SCRIPT.format(helpers=str(REPO / "tests" / "protocol"), tests=str(REPO / "tests"))
    )
    del argparse
    ignore = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint_ignored else None
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=ignore
    )
    try:
        line = proc.stdout.readline()
        assert "listening on http://" in line, (line, proc.stderr.read() if proc.poll() is not None else "")
        url = line.strip().rsplit(" ", 1)[1]
        client = stylelayer_client.StylelayerClient(url, timeout=10)
        job_id = client.submit(CONTENT, STYLE, params={"iterations": 10000})
        deadline = time.monotonic() + 10
        while client.status(job_id)["state"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(getattr(signal, signame))
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    cases()


@pytest.mark.category("Faults")
def test_stop_when_the_loop_already_closed_its_sockets(fake_engine, tmp_path, cases) -> None:
    """The race behind a rare teardown error: the serve loop wakes between stop()'s flag and its trigger, closes
    the trigger, and stop() then wrote to a closed pipe (OSError EBADF). Forced here by letting the loop exit first."""
    srv = ServerThread(create_app({"styles_dir": str(tmp_path)}, engine=fake_engine)).start()
    assert stylelayer_client.StylelayerClient(srv.url, timeout=5).health()["status"] == "ok"
    srv._stopping.set()
    srv._thread.join(5)  # the loop notices within its 0.5 s poll and closes every socket, the trigger included
    assert not srv._thread.is_alive()
    srv.stop()  # must not raise
    assert not any(thread.is_alive() for thread in srv.app.extensions["stylelayer"].queue._threads)
    cases()
