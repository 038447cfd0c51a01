"""The plug-ins' "Test connection": StylelayerClient.probe tells apart nothing listening, another web server, a
wrong or missing token and another version, each with its own exception and, through error_message, its own text
for the painter. Real sockets throughout: a stylelayer server, a plain http.server, a server speaking JSON."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from protocol_helpers import FakeEngine, gradient, png_bytes, stylelayer_client
from stylelayer_messages import connection_text, error_message
from stylelayer_params import check_server_url

C = stylelayer_client


@contextmanager
def other_server(answer: tuple[int, str, bytes] | None = None) -> Iterator[str]:
    """A web server that is not stylelayer: Python's http.server (404 HTML for GET, 501 for POST), or one that
    gives `answer` (status, content type, body) to every GET."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if answer is None:
                self.send_error(404)
                return
            status, ctype, body = answer
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_compatible_server_answers_its_info(server) -> None:
    srv, client = server
    info = client.probe()
    assert info["api"] == 1 and info["auth_required"] is False
    text = connection_text(info, srv.url)
    assert text == f"Connected to stylelayer {info['version']} at {srv.url} (CPU)."


def test_nothing_listening_is_not_reachable() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(C.ServerUnavailable) as caught:
        C.StylelayerClient(url, timeout=5).probe()
    assert caught.value.url == url
    assert error_message(caught.value).startswith(f"Cannot reach the stylelayer server at {url}.")


def test_another_web_server_is_not_stylelayer() -> None:
    with other_server() as url:
        client = C.StylelayerClient(url, timeout=5)
        with pytest.raises(C.NotStylelayer):
            client.probe()
        with pytest.raises(C.NotStylelayer) as caught:  # a job sent there: 501 from http.server, not "Broken pipe"
            client.submit(png_bytes(gradient(8, 8)), png_bytes(gradient(8, 8)))
    assert caught.value.status == 501
    assert error_message(caught.value).startswith(f"{url} answers, but it is not a stylelayer server.")


@pytest.mark.parametrize("body", [b'{"status": "up"}', b"[1, 2]", b"<html>ok</html>"])
def test_a_server_answering_something_else_is_not_stylelayer(body) -> None:
    with other_server((200, "application/json", body)) as url, pytest.raises(C.NotStylelayer):
        C.StylelayerClient(url, timeout=5).probe()


@pytest.mark.parametrize(
    ("info", "detail"),
    [
        ({"api": 2, "version": "2.0.0"}, "API 2"),
        ({"api": 1, "version": "0.0.9"}, "0.0.9"),
    ],
)
def test_another_version_is_a_mismatch(info, detail) -> None:
    with (
        other_server((200, "application/json", json.dumps(info).encode())) as url,
        pytest.raises(C.VersionMismatch) as caught,
    ):
        C.StylelayerClient(url, timeout=5).probe()
    assert detail in str(caught.value)
    assert error_message(caught.value).startswith(f"The server at {url} does not match this plug-in")


def test_missing_and_wrong_tokens_are_told_apart(make_server) -> None:
    srv, _ = make_server(FakeEngine(), token="s3cret")
    with pytest.raises(C.WrongToken) as missing:
        C.StylelayerClient(srv.url, timeout=5).probe()
    with pytest.raises(C.WrongToken) as wrong:
        C.StylelayerClient(srv.url, token="guess", timeout=5).probe()
    assert error_message(missing.value).startswith(f"The server at {srv.url} requires a token.")
    assert error_message(wrong.value).startswith(f"The server at {srv.url} did not accept the token.")
    info = C.StylelayerClient(srv.url, token="s3cret", timeout=5).probe()
    assert connection_text(info, srv.url).endswith("(CPU, token accepted).")


def test_a_path_after_the_port_is_explained(server) -> None:
    srv, _ = server
    assert check_server_url(srv.url + "/v1/") == srv.url  # the API's own prefix is dropped
    with pytest.raises(C.NotStylelayer) as caught:
        C.StylelayerClient(srv.url + "/stylelayer", timeout=5).probe()
    assert "the server URL must be the server's address only" in str(caught.value)


def test_serving_the_network_says_what_to_type_in_the_plugin() -> None:
    """`stylelayer serve --host 0.0.0.0` names a URL other machines can use and where the token comes from, and never
    prints the token itself."""
    from argparse import Namespace
    from pathlib import Path

    from stylelayer.api.serve import lan_addresses, remote_instructions, token_source

    addresses = lan_addresses("0.0.0.0")
    assert addresses and not any(a.startswith("127.") or a in ("0.0.0.0", "::1") for a in addresses)
    assert lan_addresses("192.168.1.7") == ["192.168.1.7"]
    source = token_source(Namespace(token_file=Path("/etc/stylelayer/token"), token=None))
    text = remote_instructions("0.0.0.0", 8765, source)
    assert f"http://{addresses[0]}:8765" in text and "the contents of /etc/stylelayer/token" in text
    assert "Token field" in text and "Test connection" in text
    assert token_source(Namespace(token_file=None, token=None)) == "the value of $STYLELAYER_TOKEN on this machine"
