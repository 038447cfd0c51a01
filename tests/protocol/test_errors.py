"""Every error is JSON `{"error": {"code", "message"}}` with the right status, and the server keeps serving."""

from __future__ import annotations

import io
import threading
import time

import pytest
from PIL import Image
from protocol_helpers import (
    OVERSIZE_HEADERS,
    FakeEngine,
    error_of,
    gradient,
    png_bytes,
    raw,
    raw_exchange,
    stylelayer_client,
)

from stylelayer.api import create_app
from stylelayer.core.engine import OutOfMemory

STYLE = png_bytes(gradient(16, 16))


def expect(client, status: int, code: str, call, *args, **kwargs) -> stylelayer_client.StylelayerError:
    with pytest.raises(stylelayer_client.StylelayerError) as err:
        call(*args, **kwargs)
    assert (err.value.status, err.value.code) == (status, code), err.value.message
    assert client.health()["status"] == "ok"  # still serving
    return err.value


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"iterations": 0}, "iterations"),
        ({"size": "big"}, "size"),
        ({"mode": "dream"}, "mode"),
        ({"bogus": 1}, "bogus"),
        ({"style_blend": [1, 2]}, "style_blend"),  # one style image given
        ([1, 2], "params"),
    ],
)
def test_bad_params_are_400_naming_the_field(server, params, field) -> None:
    srv, client = server
    err = expect(client, 400, "bad_param", client.submit, png_bytes(gradient()), STYLE, params=params)
    assert field in err.message
    body, ctype = stylelayer_client._job_form(png_bytes(gradient()), STYLE, None, params, None)
    status, _, data = raw(f"{srv.url}/v1/jobs", "POST", body, {"Content-Type": ctype})
    assert status == 400 and error_of(data)["field"] == field


def test_params_not_json_is_400(server) -> None:
    srv, _ = server
    body, ctype = stylelayer_client._multipart(
        [("params", None, b"{nope"), ("content", "c.png", png_bytes(gradient()))]
    )
    status, _, data = raw(f"{srv.url}/v1/jobs", "POST", body, {"Content-Type": ctype})
    assert status == 400 and error_of(data)["field"] == "params"


def test_missing_content_and_style_are_400(client) -> None:
    assert expect(client, 400, "missing_field", client.submit, None, STYLE).message.startswith("a 'content'")
    expect(client, 400, "missing_field", client.submit, png_bytes(gradient()), None)
    expect(client, 400, "missing_field", client.submit, None, STYLE, params={"mode": "texture"})


def test_preview_every_is_validated(client) -> None:
    expect(client, 400, "bad_param", client.submit, png_bytes(gradient()), STYLE, preview_every=-1)


def test_not_an_image_is_415_and_empty_file_is_400(client) -> None:
    expect(client, 415, "not_an_image", client.submit, b"GIF89a but not really", STYLE)
    expect(client, 415, "not_an_image", client.submit, png_bytes(gradient()), b"\x00" * 100)
    expect(client, 400, "empty_file", client.submit, b"", STYLE)


def test_truncated_png_is_400(client) -> None:
    data = png_bytes(gradient(64, 64))
    expect(client, 400, "bad_image", client.submit, data[: len(data) // 2], STYLE)


def test_wrong_content_type_is_415(server) -> None:
    srv, _ = server
    status, _, data = raw(f"{srv.url}/v1/jobs", "POST", b'{"content": 1}', {"Content-Type": "application/json"})
    assert status == 415 and error_of(data)["code"] == "unsupported_media_type"


def test_pixel_limit_is_413(make_server) -> None:
    _, client = make_server(FakeEngine(), max_pixels=1000)
    err = expect(client, 413, "too_many_pixels", client.submit, png_bytes(gradient(40, 30)), STYLE)
    assert "1200" in err.message and "1000" in err.message


def test_decompression_bomb_is_413_before_decoding(client) -> None:
    bomb = io.BytesIO()
    Image.new("1", (20000, 20000)).save(bomb, format="PNG")  # ~50 KB on the wire, 400 megapixels decoded
    assert len(bomb.getvalue()) < 100_000
    expect(client, 413, "too_many_pixels", client.submit, bomb.getvalue(), STYLE)


def test_request_body_limit_is_413(make_server) -> None:
    _, client = make_server(FakeEngine(), max_content_length=10_000)
    err = expect(client, 413, "too_large", client.submit, png_bytes(gradient(200, 200)), STYLE)
    assert "10000 bytes" in err.message


def test_unknown_and_malformed_job_ids_are_404(client) -> None:
    # "../x" arrives as %2F-quoted but WSGI decodes it, so it matches no route at all: still a JSON 404.
    for job_id, code in (("0" * 32, "job_not_found"), ("x", "job_not_found"), ("../../etc/passwd", "not_found")):
        for call in (client.status, client.result, client.cancel, client.preview):
            expect(client, 404, code, call, job_id)


def test_result_before_done_is_409(make_server) -> None:
    engine = FakeEngine()
    engine.gate = threading.Event()
    _, client = make_server(engine)
    job_id = client.submit(png_bytes(gradient()), STYLE)
    expect(client, 409, "not_ready", client.result, job_id)
    engine.gate.set()


def test_unknown_route_and_wrong_method_are_json(server) -> None:
    srv, _ = server
    status, _, data = raw(f"{srv.url}/nope")
    assert status == 404 and error_of(data)["code"] == "not_found"
    status, headers, data = raw(f"{srv.url}/v1/health", "POST", b"")
    assert status == 405 and error_of(data)["code"] == "method_not_allowed" and "GET" in headers["Allow"]


def test_engine_exception_fails_the_job_not_the_server(make_server) -> None:
    _, client = make_server(FakeEngine(fail_with=KeyError("boom")))
    job_id = client.submit(png_bytes(gradient()), STYLE)
    with pytest.raises(stylelayer_client.JobFailed) as err:
        client.run_job(png_bytes(gradient()), STYLE, poll_interval=0.01)
    assert err.value.code == "engine_error" and "boom" in err.value.message
    assert "Traceback" not in err.value.message
    status = client.status(job_id)
    assert status["state"] == "failed" and status["error"]["code"] == "engine_error"
    expect(client, 409, "engine_error", client.result, job_id)
    expect(client, 500, "engine_error", client.stylize, png_bytes(gradient()), STYLE)


def test_gpu_out_of_memory_fails_with_a_hint_and_next_job_runs(make_server) -> None:
    oom = OutOfMemory("ran out of GPU memory at 2048x1536 px: reduce size (the working size), or close other programs")
    engine = FakeEngine(fail_with=oom)  # what the real engine raises for torch's OOM (tests/core/test_engine_errors.py)
    _, client = make_server(engine)
    with pytest.raises(stylelayer_client.JobFailed) as err:
        client.run_job(png_bytes(gradient()), STYLE, poll_interval=0.01)
    assert err.value.code == "out_of_memory" and "reduce size" in err.value.message
    engine.fail_with = None
    assert client.run_job(png_bytes(gradient()), STYLE, poll_interval=0.01)


def test_unexpected_error_in_a_view_is_500_without_traceback(fake_engine) -> None:
    app = create_app({}, engine=fake_engine)

    @app.get("/v1/explode")
    def explode():
        raise RuntimeError("secret internals")

    response = app.test_client().get("/v1/explode")
    assert response.status_code == 500
    assert response.get_json() == {
        "error": {"code": "internal", "message": "internal server error; see the server log"}
    }
    app.extensions["stylelayer"].queue.stop()


def test_engine_that_fails_to_load_gives_503(make_server, tmp_path) -> None:
    srv, client = make_server(None, weights=str(tmp_path / "missing.pth"), device="cpu")  # the real loader
    assert srv.app.extensions["stylelayer"].queue.wait_ready(30)
    for call, args in ((client.health, ()), (client.submit, (png_bytes(gradient()), STYLE))):
        with pytest.raises(stylelayer_client.StylelayerError) as err:
            call(*args)
        assert err.value.status == 503 and err.value.code == "engine_unavailable"
        assert "missing.pth" in err.value.message
    info = client.info()
    assert info["engine"] == "failed" and info["weights"].endswith("missing.pth")


def test_no_server_is_server_unavailable() -> None:
    import socket

    with socket.socket() as sock:  # a port that was free a moment ago and has no listener now
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = stylelayer_client.StylelayerClient(f"http://127.0.0.1:{port}", timeout=2)
    with pytest.raises(stylelayer_client.ServerUnavailable) as err:
        client.health()
    assert "stylelayer serve" in err.value.message


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"size": "64"}, "size"),
        ({"iterations": 1e2}, "iterations"),  # JSON 1e2 is a number with an exponent, not an integer
        ({"iterations": 12.0}, "iterations"),
        ({"preserve_colors": "yes"}, "preserve_colors"),
        ({"preserve_colors": 1}, "preserve_colors"),
        ({"style_weight": "1e4"}, "style_weight"),
        ({"style_blend": "1,3"}, "style_blend"),
        ({"output_size": "64x32", "mode": "texture"}, "output_size"),
        ({"style_layers": "conv1_1,conv2_1"}, "style_layers"),
        ({"seed": True}, "seed"),
    ],
)
def test_json_params_take_json_types_only(server, params, field) -> None:
    """The spec says integer/number/boolean/array: strings and look-alikes are refused, not converted."""
    _, client = server
    err = expect(client, 400, "bad_param", client.submit, png_bytes(gradient()), STYLE, params=params)
    assert err.message.startswith(f"{field}: must be")


def raw_socket(srv, payload: bytes) -> bytes:
    """Send raw bytes and read the whole answer (the server closes the connection after an error)."""
    return raw_exchange(srv.url, payload)


def parse_reply(reply: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split(" ")[1]), {k.lower(): v for k, v in headers.items()}, body


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        (OVERSIZE_HEADERS, 431, "headers_too_large"),
        (b"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -5\r\n\r\n", 400, "bad_request"),
        (b"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501, "not_implemented"),
    ],
    ids=["headers over waitress's limit", "negative Content-Length", "unknown Transfer-Encoding"],
)
def test_waitress_own_errors_are_json(server, payload, status, code) -> None:
    srv, client = server
    got, headers, body = parse_reply(raw_socket(srv, payload))
    assert got == status and headers["content-type"] == "application/json"
    assert error_of(body)["code"] == code
    assert client.health()["status"] == "ok"


def test_body_over_the_limit_is_refused_by_its_content_length_before_it_is_sent(make_server) -> None:
    """A client that announces 1 GB and sends nothing gets a JSON 413 at once: the limit is checked before any of
    the body is read (before: the whole body was buffered to disk first)."""
    srv, client = make_server(FakeEngine(), max_content_length=10_000)
    started = time.monotonic()
    reply = raw_socket(
        srv,
        b"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; "
        b"boundary=b\r\nContent-Length: 1000000000\r\n\r\n",
    )
    status, headers, body = parse_reply(reply)
    assert time.monotonic() - started < 2
    assert status == 413 and headers["content-type"] == "application/json"
    assert error_of(body) == {
        "code": "too_large",
        "message": "the request is larger than this server's upload limit of 10000 bytes",
    }
    assert client.info()["jobs"]["queued"] == 0


def test_flask_alone_refuses_by_content_length_too(fake_engine) -> None:
    """Under any WSGI server (here Flask's test client) the guard checks Content-Length before a route reads."""
    app = create_app({"max_content_length": 100}, engine=fake_engine)
    response = app.test_client().post("/v1/jobs", data=b"x" * 101, content_type="multipart/form-data; boundary=b")
    assert response.status_code == 413 and response.get_json()["error"]["code"] == "too_large"
    app.extensions["stylelayer"].queue.stop()
