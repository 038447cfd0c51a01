"""Token on every route, cross-origin browser requests refused, no CORS, safe style ids."""

from __future__ import annotations

import pytest
from protocol_helpers import gradient, png_bytes, stylelayer_client
from test_errors import error_of, raw

from stylelayer.api import create_app

ROUTES = [
    ("GET", "/v1/health"),
    ("GET", "/v1/info"),
    ("POST", "/v1/jobs"),
    ("GET", "/v1/jobs/" + "0" * 32),
    ("GET", "/v1/jobs/" + "0" * 32 + "/preview"),
    ("GET", "/v1/jobs/" + "0" * 32 + "/result"),
    ("DELETE", "/v1/jobs/" + "0" * 32),
    ("POST", "/v1/jobs/" + "0" * 32 + "/cancel"),
    ("POST", "/v1/stylize"),
    ("GET", "/v1/styles"),
    ("POST", "/v1/styles"),
    ("GET", "/v1/styles/" + "0" * 16 + "/thumbnail"),
    ("DELETE", "/v1/styles/" + "0" * 16),
    ("OPTIONS", "/v1/jobs"),
    ("GET", "/not-a-route"),
]


def test_token_is_required_on_every_route(make_server, fake_engine) -> None:
    srv, client = make_server(fake_engine, token="s3cret")
    for method, path in ROUTES:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            status, response_headers, body = raw(srv.url + path, method, b"" if method != "GET" else None, headers)
            assert status == 401, (method, path, headers)
            assert error_of(body)["code"] == "unauthorized" and "Bearer" in response_headers["WWW-Authenticate"]
    assert client.health()["status"] == "ok"  # the client sends the token
    assert client.stylize(png_bytes(gradient()), png_bytes(gradient(8, 8)), params={"iterations": 1})
    anonymous = stylelayer_client.StylelayerClient(srv.url)
    with pytest.raises(stylelayer_client.StylelayerError) as err:
        anonymous.info()
    assert err.value.status == 401


@pytest.mark.parametrize("origin", ["https://evil.example", "null", "http://127.0.0.1:1", "http://localhost.evil"])
def test_cross_origin_writes_are_refused(server, origin) -> None:
    srv, client = server
    body, ctype = stylelayer_client._job_form(png_bytes(gradient()), png_bytes(gradient(8, 8)), None, {}, None)
    for path in ("/v1/jobs", "/v1/stylize", "/v1/styles"):
        status, headers, data = raw(srv.url + path, "POST", body, {"Content-Type": ctype, "Origin": origin})
        assert status == 403 and error_of(data)["code"] == "cross_origin"
        assert "Access-Control-Allow-Origin" not in headers
    assert client.info()["jobs"]["queued"] == 0 and client.styles() == []


def test_same_origin_and_cross_site_fetch_metadata(server) -> None:
    srv, _ = server
    body, ctype = stylelayer_client._job_form(png_bytes(gradient()), png_bytes(gradient(8, 8)), None, {}, None)
    status, _, _ = raw(srv.url + "/v1/jobs", "POST", body, {"Content-Type": ctype, "Origin": srv.url})
    assert status == 202
    status, _, data = raw(srv.url + "/v1/jobs", "POST", body, {"Content-Type": ctype, "Sec-Fetch-Site": "cross-site"})
    assert status == 403 and error_of(data)["code"] == "cross_origin"


def test_foreign_host_header_is_refused_without_token(make_server, fake_engine) -> None:
    srv, _ = make_server(fake_engine)
    for host in ("evil.example:8765", "evil.example", "192.168.1.5"):  # DNS rebinding to 127.0.0.1
        status, _, data = raw(srv.url + "/v1/info", headers={"Host": host})
        assert status == 403 and error_of(data)["code"] == "bad_host"
    for host in ("localhost:1234", "127.0.0.1", "[::1]:8765"):
        assert raw(srv.url + "/v1/health", headers={"Host": host})[0] == 200
    srv, client = make_server(fake_engine, token="t")  # with a token any Host may be used (LAN serving)
    status, _, _ = raw(srv.url + "/v1/health", headers={"Host": "studio-pc:8765", "Authorization": "Bearer t"})
    assert status == 200


def test_no_cors_headers_even_on_preflight(fake_engine) -> None:
    app = create_app({}, engine=fake_engine)
    response = app.test_client().options(
        "/v1/jobs", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert not [k for k, _ in response.headers.items() if k.lower().startswith("access-control-")]
    app.extensions["stylelayer"].queue.stop()


def test_unknown_config_key_is_refused(fake_engine) -> None:
    with pytest.raises(ValueError, match="tokn"):
        create_app({"tokn": "x"}, engine=fake_engine)
