"""Hostile and unusual uploads, fields, parameters and ids against a real server (waitress on 127.0.0.1).

Every refusal must be a JSON 4xx naming the problem, every acceptance must produce a correct result, and the
server must answer the next request.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image
from protocol_helpers import gradient, png_bytes, raw, stylelayer_client
from reliability_helpers import BadImage, assert_json_error, image_corpus, wait_terminal

from stylelayer.core.params import MAX_STYLES
from stylelayer.limits import MAX_FIELD_BYTES

pytestmark = pytest.mark.category("Bad inputs")

STYLE = png_bytes(gradient(16, 16))
CONTENT = png_bytes(gradient(40, 30))


def post_form(url: str, fields: list[tuple[str, str | None, bytes]], headers: dict | None = None):
    body, ctype = stylelayer_client._multipart(fields)
    return raw(url, "POST", body, {"Content-Type": ctype, **(headers or {})})


def check_upload(srv, client, case: BadImage, field: str) -> None:
    """One image as the content, a style or a library image: refused as documented, or accepted and used."""
    url = srv.url + ("/v1/styles" if field == "image" else "/v1/jobs")
    if field == "content":
        fields = [("content", "x.bin", case.data), ("style", "s.png", STYLE), ("params", None, b'{"iterations": 2}')]
    elif field == "style":
        fields = [("content", "c.png", CONTENT), ("style", "x.bin", case.data), ("params", None, b'{"iterations": 2}')]
    else:
        fields = [("image", "x.bin", case.data), ("name", None, b"case")]
    status, headers, body = post_form(url, fields)
    allowed = case.status if isinstance(case.status, tuple) else (case.status,)
    accepted = status == 201 and 202 in allowed and field == "image"  # the library answers 201 Created
    assert status in allowed or accepted, (case.name, field, status, body)
    if status >= 400:
        error = assert_json_error(status, body, headers["Content-Type"])
        if case.code is not None:
            assert error["code"] == case.code and error["field"] == field, (case.name, error)
    elif field == "image":
        meta = json.loads(body)
        assert (meta["width"], meta["height"]) == case.size
        assert Image.open(io.BytesIO(client.style_thumbnail(meta["id"]))).format == "PNG"
    else:
        job_id = json.loads(body)["id"]
        assert wait_terminal(client, job_id)["state"] == "done"
        if field == "content":  # the fake engine returns the decoded content unchanged
            result = Image.open(io.BytesIO(client.result(job_id)))
            assert (result.size, result.mode) == (case.size, case.mode), case.name
    assert client.health()["status"] == "ok"


@pytest.mark.parametrize("case", image_corpus(), ids=lambda c: c.name)
def test_image_upload_as_content_style_and_library_image(server, cases, case: BadImage) -> None:
    """Damaged, hostile and unusual images, each sent as content, as a style and as a library style."""
    srv, client = server
    for field in ("content", "style", "image"):
        check_upload(srv, client, case, field)
        cases()


def test_declared_content_type_is_not_trusted(server, cases) -> None:
    """A PNG declared text/html is judged by its bytes; an HTML page declared image/png is refused."""
    srv, client = server
    body = (
        b'--b\r\nContent-Disposition: form-data; name="content"; filename="a.html"\r\n'
        b"Content-Type: text/html\r\n\r\n"
        + CONTENT
        + b'\r\n--b\r\nContent-Disposition: form-data; name="style"; filename="s.png"\r\nContent-Type: image/png'
        b"\r\n\r\n<html>not an image</html>\r\n--b--\r\n"
    )
    status, headers, data = raw(srv.url + "/v1/jobs", "POST", body, {"Content-Type": "multipart/form-data; boundary=b"})
    assert assert_json_error(status, data, headers["Content-Type"])["code"] == "not_an_image"
    assert json.loads(data)["error"]["field"] == "style"
    cases()


def _params(value: object) -> list[tuple[str, str | None, bytes]]:
    text = value if isinstance(value, bytes) else json.dumps(value).encode()
    return [("content", "c.png", CONTENT), ("style", "s.png", STYLE), ("params", None, text)]


BAD_FORMS: list[tuple[str, list, int, str, str | None]] = [
    ("no content", [("style", "s.png", STYLE)], 400, "missing_field", "content"),
    ("no style", [("content", "c.png", CONTENT)], 400, "missing_field", "style"),
    ("nothing", [("params", None, b"{}")], 400, "missing_field", "content"),
    (
        "content as a text field",
        [("content", None, b"abc"), ("style", "s.png", STYLE)],
        400,
        "missing_field",
        "content",
    ),
    (
        "texture without output_size",
        [("style", "s.png", STYLE), ("params", None, b'{"mode": "texture"}')],
        400,
        "missing_field",
        "content",
    ),
    ("params not JSON", _params(b"{nope"), 400, "bad_param", "params"),
    ("params nested 60000 deep", _params(b"[" * 60_000), 400, "bad_param", "params"),
    ("params object nested 12000 deep", _params(b'{"a":' * 12_000), 400, "bad_param", "params"),
    ("params over its 64 KiB limit", _params(b'{"mode": "' + b"x" * 70_000 + b'"}'), 413, "too_large", "params"),
    ("params a list", _params([1, 2]), 400, "bad_param", "params"),
    ("params a string", _params("size=512"), 400, "bad_param", "params"),
    ("params null", _params(None), 400, "bad_param", "params"),
    ("params not UTF-8", _params(b"\xff\xfe{}"), 400, "bad_param", "params"),
    ("unknown parameter", _params({"bogus": 1}), 400, "bad_param", "bogus"),
    ("iterations 0", _params({"iterations": 0}), 400, "bad_param", "iterations"),
    ("iterations -1", _params({"iterations": -1}), 400, "bad_param", "iterations"),
    ("iterations 10**6", _params({"iterations": 10**6}), 400, "bad_param", "iterations"),
    ("iterations 1.5", _params({"iterations": 1.5}), 400, "bad_param", "iterations"),
    ("iterations true", _params({"iterations": True}), 400, "bad_param", "iterations"),
    ("iterations null", _params({"iterations": None}), 400, "bad_param", "iterations"),
    ("iterations a list", _params({"iterations": [5]}), 400, "bad_param", "iterations"),
    ("size 'big'", _params({"size": "big"}), 400, "bad_param", "size"),
    ("size 1e300", _params({"size": 1e300}), 400, "bad_param", "size"),
    ("size 10**400", _params(b'{"size": ' + b"9" * 400 + b"}"), 400, "bad_param", "size"),
    ("lr NaN", _params(b'{"lr": NaN}'), 400, "bad_param", "lr"),
    ("style_weight Infinity", _params(b'{"style_weight": Infinity}'), 400, "bad_param", "style_weight"),
    ("content_weight -1", _params({"content_weight": -1}), 400, "bad_param", "content_weight"),
    ("mode 'dream'", _params({"mode": "dream"}), 400, "bad_param", "mode"),
    ("optimizer 7", _params({"optimizer": 7}), 400, "bad_param", "optimizer"),
    ("style_blend for 2 styles, 1 given", _params({"style_blend": [1, 2]}), 400, "bad_param", "style_blend"),
    ("style_layers unknown", _params({"style_layers": ["conv9_9"]}), 400, "bad_param", "style_layers"),
    ("output_size negative", _params({"mode": "texture", "output_size": [-1, 5]}), 400, "bad_param", "output_size"),
    ("seed -1", _params({"seed": -1}), 400, "bad_param", "seed"),
    ("preview_every -1", [*_params({}), ("preview_every", None, b"-1")], 400, "bad_param", "preview_every"),
    ("preview_every 'x'", [*_params({}), ("preview_every", None, b"x")], 400, "bad_param", "preview_every"),
    ("preview_every empty", [*_params({}), ("preview_every", None, b"")], 400, "bad_param", "preview_every"),
    ("preview_every 10**1000", [*_params({}), ("preview_every", None, b"9" * 1000)], 400, "bad_param", "preview_every"),
    ("preview_every 5 KB", [*_params({}), ("preview_every", None, b"9" * 5000)], 413, "too_large", "preview_every"),
    (
        "too many styles",
        [("content", "c.png", CONTENT)] + [("style", "s.png", STYLE)] * (MAX_STYLES + 1),
        400,
        "too_many_styles",
        "style",
    ),
    (
        "unknown style_id",
        [("content", "c.png", CONTENT), ("style_id", None, b"0" * 16)],
        404,
        "style_not_found",
        "style_id",
    ),
]


@pytest.mark.parametrize(("name", "fields", "status", "code", "field"), BAD_FORMS, ids=[f[0] for f in BAD_FORMS])
def test_bad_fields_and_parameters(server, cases, name, fields, status, code, field) -> None:
    """Missing fields, out-of-range and wrong-typed parameters, on both job routes."""
    srv, client = server
    for route in ("/v1/jobs", "/v1/stylize"):
        got, headers, body = post_form(srv.url + route, fields)
        error = assert_json_error(got, body, headers["Content-Type"])
        assert (got, error["code"], error.get("field")) == (status, code, field), (name, route, error)
        cases()
    assert client.info()["jobs"]["queued"] == 0 and client.health()["status"] == "ok"


@pytest.mark.parametrize(
    ("ctype", "body"),
    [
        ("application/json", b'{"content": "x"}'),
        ("application/x-www-form-urlencoded", b"content=x&style=y"),
        ("text/plain", b"hello"),
        ("image/png", CONTENT),
        ("multipart/form-data", b"no boundary"),
        ("multipart/form-data; boundary=zz", b"--zz\r\nbroken"),
        (None, b""),
    ],
)
def test_wrong_body_types(server, cases, ctype, body) -> None:
    """Non-multipart or malformed multipart bodies on every upload route: 4xx JSON, nothing queued or stored."""
    srv, client = server
    for route in ("/v1/jobs", "/v1/stylize", "/v1/styles"):
        status, headers, data = raw(srv.url + route, "POST", body, {"Content-Type": ctype} if ctype else {})
        error = assert_json_error(status, data, headers["Content-Type"])
        assert error["code"] in ("unsupported_media_type", "missing_field", "bad_request"), error
        cases()
    assert client.info()["jobs"]["queued"] == 0 and client.styles() == []


HOSTILE_IDS = [
    "0" * 32,
    "0" * 16,
    "x",
    "..",
    "%2e%2e",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "..%2F..%2F..%2Fetc%2Fpasswd",
    "..%5c..%5cwindows%5cwin.ini",
    "%252e%252e%252fetc%252fpasswd",
    "%2Fetc%2Fpasswd",
    "C:%5CWindows%5Cwin.ini",
    "abc%00def",
    "%00",
    "0123456789abcdef%00.png",
    "0123456789ABCDEF",
    "0123456789abcdef.json",
    "a" * 5000,
    "%F0%9F%8E%A8",
    "%ff%fe",
]


@pytest.mark.parametrize("ident", HOSTILE_IDS)
def test_unknown_and_path_like_ids(server, cases, tmp_path: Path, ident: str) -> None:
    """Unknown, path-like, encoded and NUL-bearing ids in every id route and in the style_id field: JSON 404."""
    srv, client = server
    style = client.add_style("kept", STYLE)  # a real file the traversal must not reach or delete
    styles_dir = Path(srv.app.extensions["stylelayer"].library.directory)
    before = sorted(p.name for p in styles_dir.iterdir())
    routes = [
        ("GET", f"/v1/jobs/{ident}"),
        ("GET", f"/v1/jobs/{ident}/preview"),
        ("GET", f"/v1/jobs/{ident}/result"),
        ("POST", f"/v1/jobs/{ident}/cancel"),
        ("DELETE", f"/v1/jobs/{ident}"),
        ("GET", f"/v1/styles/{ident}/thumbnail"),
        ("DELETE", f"/v1/styles/{ident}"),
    ]
    for method, path in routes:
        status, headers, body = raw(srv.url + path, method, b"" if method != "GET" else None)
        error = assert_json_error(status, body, headers["Content-Type"], {404, 405})
        assert error["code"] in ("not_found", "job_not_found", "style_not_found", "method_not_allowed"), error
        assert b"root:" not in body and b"[fonts]" not in body
        cases()
    from urllib.parse import unquote_to_bytes

    status, headers, body = post_form(
        srv.url + "/v1/jobs", [("content", "c.png", CONTENT), ("style_id", None, unquote_to_bytes(ident))]
    )
    expected = (413, "too_large") if len(unquote_to_bytes(ident)) > MAX_FIELD_BYTES else (404, "style_not_found")
    assert (status, assert_json_error(status, body, headers["Content-Type"])["code"]) == expected
    cases()
    assert sorted(p.name for p in styles_dir.iterdir()) == before
    assert [s["id"] for s in client.styles()] == [style["id"]]
