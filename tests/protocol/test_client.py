"""The stdlib client's waiting and failures mean what they say: a queued job is waited for as long as the caller
asked (None: until done), its per-request timeout limits only single requests, and "cannot reach the server" is
reserved for a refused connection (or an unknown host)."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from protocol_helpers import FakeEngine, gradient, png_bytes, stylelayer_client

CONTENT = png_bytes(gradient(24, 16))
STYLE = png_bytes(gradient(8, 8))


def busy_server(make_server, seconds: float):
    """A server whose worker is busy for about `seconds` with a job submitted first; clients time out at 0.5 s."""
    engine = FakeEngine(step_delay=0.05)
    srv, client = make_server(engine)
    blocker = client.submit(CONTENT, STYLE, params={"iterations": int(seconds / 0.05)})
    assert engine.started.wait(5)
    client.timeout = 0.5
    return srv, client, blocker, engine


def test_stylize_waits_for_a_queued_job_beyond_the_request_timeout(make_server) -> None:
    _, client, _, _ = busy_server(make_server, 1.5)
    started = time.monotonic()
    png = client.stylize(CONTENT, STYLE, params={"iterations": 2})  # timeout None: until done
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and time.monotonic() - started > 1.0


def test_stylize_timeout_is_timed_out_and_the_job_is_cancelled(make_server) -> None:
    _, client, _, _ = busy_server(make_server, 5)
    started = time.monotonic()
    with pytest.raises(stylelayer_client.TimedOut) as err:
        client.stylize(CONTENT, STYLE, params={"iterations": 2}, timeout=1.0)
    assert 0.9 < time.monotonic() - started < 3 and err.value.code == "timeout"
    assert not isinstance(err.value, stylelayer_client.ServerUnavailable)
    deadline = time.monotonic() + 3  # the server saw the hang-up and cancelled the queued job
    while client.info()["jobs"]["cancelled"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_run_job_waits_as_long_as_asked(make_server) -> None:
    _, client, _, _ = busy_server(make_server, 1.5)
    assert client.run_job(CONTENT, STYLE, params={"iterations": 2}, poll_interval=0.05)  # None: until done
    _, client, _, _ = busy_server(make_server, 5)
    started = time.monotonic()
    with pytest.raises(stylelayer_client.TimedOut, match="within 0.8 s and was cancelled"):
        client.run_job(CONTENT, STYLE, params={"iterations": 2}, poll_interval=0.05, timeout=0.8)
    assert time.monotonic() - started < 2
    assert client.info()["jobs"]["cancelled"] == 1


def test_silent_server_is_timed_out_not_unreachable() -> None:
    with socket.socket() as listener:  # accepts connections (the kernel does) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        client = stylelayer_client.StylelayerClient(f"http://127.0.0.1:{listener.getsockname()[1]}", timeout=0.5)
        with pytest.raises(stylelayer_client.TimedOut, match="did not answer within 0.5 s"):
            client.health()


def test_connection_closed_mid_request_is_connection_lost() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)

        def hang_up() -> None:
            conn, _ = listener.accept()
            conn.recv(1024)
            conn.close()

        thread = threading.Thread(target=hang_up)
        thread.start()
        client = stylelayer_client.StylelayerClient(f"http://127.0.0.1:{listener.getsockname()[1]}", timeout=5)
        with pytest.raises(stylelayer_client.ConnectionLost, match="broke"):
            client.health()
        thread.join(5)


def test_refused_and_unknown_host_are_server_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens once it is closed
    for url in (f"http://127.0.0.1:{port}", "http://no-such-host.invalid:8765"):
        with pytest.raises(stylelayer_client.ServerUnavailable, match="stylelayer serve"):
            stylelayer_client.StylelayerClient(url, timeout=5).health()


def test_a_server_that_stops_during_a_job_is_an_interrupted_run() -> None:
    """The job was accepted, then the server went away (kill -9): JobInterrupted, not "cannot reach … start it"."""
    import http.server
    import json

    polls = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def _json(self, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self._json({"id": "f" * 32})

        def do_GET(self) -> None:
            polls.append(self.path)
            self._json({"id": "f" * 32, "state": "running", "iteration": 1, "total": 9})
            threading.Thread(target=stop).start()  # gone after its first answer, as after kill -9

    def stop() -> None:
        httpd.shutdown()
        httpd.server_close()

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever)
    thread.start()
    url = f"http://127.0.0.1:{httpd.server_port}"
    client = stylelayer_client.StylelayerClient(url, timeout=5)
    with pytest.raises(stylelayer_client.JobInterrupted) as err:
        client.run_job(CONTENT, STYLE, poll_interval=0.2)
    thread.join(5)
    assert polls and err.value.code == "job_interrupted" and err.value.url == url
    assert "stopped answering during job " + "f" * 32 in err.value.message
    with pytest.raises(stylelayer_client.ServerUnavailable):  # before a job is accepted: nothing listens
        client.run_job(CONTENT, STYLE)
