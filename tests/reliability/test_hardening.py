"""Security guards, checked exhaustively: every route in the Flask url_map, every write method, every origin trick."""

from __future__ import annotations

import argparse
import re

import pytest
from protocol_helpers import FakeEngine, gradient, png_bytes, raw, stylelayer_client
from reliability_helpers import assert_json_error

from stylelayer.api import create_app, serve

pytestmark = pytest.mark.category("Security")

SAMPLE_ARGS = {"job_id": "0" * 32, "style_id": "0" * 16}


def every_route() -> list[tuple[str, str]]:
    """(method, concrete path) for every rule and method the app really has, read from its url_map."""
    app = create_app({}, engine=FakeEngine())
    routes = []
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: SAMPLE_ARGS.get(m.group(1), "x"), rule.rule)
        routes += [(method, path) for method in sorted(rule.methods)]
    app.extensions["stylelayer"].queue.stop()
    return routes + [("GET", "/"), ("GET", "/no-such-route"), ("PUT", "/v1/jobs")]


ROUTES = every_route()
WRITES = sorted({(m, p) for m, p in ROUTES if m in ("POST", "DELETE", "PUT")})


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "10.0.0.1", "example.com", "", "127.0.0.1.evil"])
def test_non_loopback_bind_without_token_exits_2(host: str, capsys, monkeypatch, cases) -> None:
    """`stylelayer serve --host H` without --token refuses (exit 2) before loading anything or binding."""
    monkeypatch.delenv("STYLELAYER_TOKEN", raising=False)
    monkeypatch.setattr(serve, "StyleEngine", lambda **kw: pytest.fail("the engine must not load"))
    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    assert serve.run(parser.parse_args(["--host", host, "--port", "0"])) == 2
    assert "--token" in capsys.readouterr().err
    cases()


def test_url_map_is_what_this_suite_covers() -> None:
    """If a route is added, ROUTES grows with it; this pins that the walk sees the API and nothing unexpected."""
    paths = {p for _, p in ROUTES}
    assert "/v1/stylize" in paths and "/v1/styles/" + "0" * 16 + "/thumbnail" in paths
    assert not [p for p in paths if p.startswith("/static")]  # no static file route on an API server


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_token_enforced_on_every_route(make_server, cases, method: str, path: str) -> None:
    """No token, a wrong one, the right one without 'Bearer', another scheme, a prefix of it: all 401 JSON."""
    srv, client = make_server(FakeEngine(), token="s3cret-token")
    for auth in (None, "Bearer wrong", "s3cret-token", "Basic s3cret-token", "Bearer s3cret", "Bearer s3cret-token2"):
        headers = {"Authorization": auth} if auth else {}
        status, response_headers, body = raw(
            srv.url + path, method, None if method in ("GET", "HEAD") else b"", headers
        )
        if method == "HEAD":
            assert status == 401 and not body
        else:
            assert assert_json_error(status, body, response_headers["Content-Type"])["code"] == "unauthorized"
            assert status == 401 and "Bearer" in response_headers["WWW-Authenticate"]
        cases()
    status, _, _ = raw(srv.url + "/v1/health", headers={"Authorization": "Bearer s3cret-token"})
    assert status == 200 and client.info()["auth_required"] is True


ORIGINS = [
    "https://evil.example",
    "null",
    "http://127.0.0.1:1",
    "http://localhost.evil",
    "http://[",
    "http://[::1",
    "file://",
    "   ",
    "http://127.0.0.1@evil.example",
]


@pytest.mark.parametrize(("method", "path"), WRITES, ids=[f"{m} {p}" for m, p in WRITES])
def test_cross_origin_writes_refused_on_every_write_route(server, cases, method: str, path: str) -> None:
    """Foreign, `null`, malformed origins and cross-site fetch metadata on every write route: 403 JSON, no CORS,
    nothing queued or stored. (A malformed Origin such as 'http://[' used to be a 500.)"""
    srv, client = server
    body, ctype = stylelayer_client._job_form(png_bytes(gradient()), png_bytes(gradient(8, 8)), None, {}, None)
    tricks = [{"Origin": o} for o in ORIGINS] + [{"Sec-Fetch-Site": s} for s in ("cross-site", "same-site")]
    for extra in tricks:
        status, headers, data = raw(srv.url + path, method, body, {"Content-Type": ctype, **extra})
        error = assert_json_error(status, data, headers["Content-Type"], {403, 405})
        assert error["code"] in ("cross_origin", "method_not_allowed"), (extra, error)
        if status == 403:
            assert error["code"] == "cross_origin"
        assert not [k for k in headers if k.lower().startswith("access-control-")]
        cases()
    assert client.info()["jobs"] == {"queued": 0, "running": 0, "done": 0, "failed": 0, "cancelled": 0}
    assert client.styles() == []


def test_same_origin_write_still_allowed(server, cases) -> None:
    """The guard is not a blanket refusal: the server's own origin may post."""
    srv, client = server
    body, ctype = stylelayer_client._job_form(png_bytes(gradient()), png_bytes(gradient(8, 8)), None, {}, None)
    status, _, _ = raw(srv.url + "/v1/jobs", "POST", body, {"Content-Type": ctype, "Origin": srv.url})
    assert status == 202
    cases()


@pytest.mark.parametrize("path", ["/v1/jobs//result", "/v1/jobs//preview", "/v1//styles", "/v1/styles//thumbnail"])
def test_double_slash_paths_are_json_404_not_html_redirects(server, cases, path: str) -> None:
    """Werkzeug merged slashes with an HTML 308 to another resource ('/v1/jobs//result' -> job 'result')."""
    srv, _ = server
    status, headers, body = raw(srv.url + path)
    assert assert_json_error(status, body, headers["Content-Type"], {404})["code"] == "not_found"
    cases()
