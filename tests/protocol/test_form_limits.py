"""Each form field is checked against its own limit and named in the refusal; errors echo only a short excerpt of
what was sent; OPTIONS answers 204 with Allow (not an empty text/html 200)."""

from __future__ import annotations

import json

import pytest
from protocol_helpers import error_of, gradient, png_bytes, raw, stylelayer_client

from stylelayer.limits import MAX_FIELD_BYTES, MAX_FORM_TEXT_BYTES, MAX_PARAMS_BYTES, MAX_UPLOAD_BYTES

CONTENT = png_bytes(gradient(24, 16))
STYLE = png_bytes(gradient(8, 8))


def post_form(url: str, params_text: str, extra: dict[str, str] | None = None, path: str = "/v1/jobs"):
    boundary = "limitboundary"
    parts = [("params", params_text), *(extra or {}).items()]
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in parts
    )
    files, _ = stylelayer_client._job_form(CONTENT, STYLE, None, None, None, None)
    head = files.split(b"\r\n", 1)[0]  # the client's own boundary line
    files_boundary = head[2:].decode()
    body += files.replace(files_boundary.encode(), boundary.encode())
    return raw(url + path, "POST", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})


@pytest.mark.parametrize("size", [MAX_PARAMS_BYTES + 1, 400_000, 600_000, MAX_FORM_TEXT_BYTES + 10])
def test_params_over_its_own_limit_is_413_naming_that_limit(server, size: int) -> None:
    srv, client = server
    status, _, body = post_form(srv.url, json.dumps({"mode": "x" * size}))
    error = error_of(body)
    assert status == 413 and error["code"] == "too_large", error
    assert str(MAX_PARAMS_BYTES) in error["message"] and str(MAX_UPLOAD_BYTES) not in error["message"]
    if size < MAX_FORM_TEXT_BYTES:  # read whole: the field is named exactly
        assert error["field"] == "params" and error["message"].startswith("params: at most")
    assert client.info()["jobs"]["queued"] == 0  # nothing queued or stored


@pytest.mark.parametrize("field", ["preview_every", "abandon_after", "style_id"])
def test_other_text_fields_have_their_own_small_limit(server, field: str) -> None:
    srv, _ = server
    status, _, body = post_form(srv.url, "{}", {field: "1" * (MAX_FIELD_BYTES + 1)})
    error = error_of(body)
    assert (status, error["code"], error["field"]) == (413, "too_large", field)
    assert f"at most {MAX_FIELD_BYTES} bytes" in error["message"]


def test_a_style_name_over_its_limit_is_named(server) -> None:
    srv, _ = server
    boundary = "b0undary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="name"\r\n\r\n{"n" * 5000}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="s.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + STYLE
        + f"\r\n--{boundary}--\r\n".encode()
    )
    status, _, answer = raw(
        srv.url + "/v1/styles", "POST", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    assert status == 413 and error_of(answer)["field"] == "name"


def test_a_long_bad_value_is_echoed_only_as_an_excerpt(server) -> None:
    srv, _ = server
    status, _, body = post_form(srv.url, json.dumps({"mode": "y" * 40_000}))
    error = error_of(body)
    assert status == 400 and error["field"] == "mode"
    assert len(error["message"]) <= 400 and "more characters not shown" in error["message"]
    assert error["message"].startswith("mode: must be one of")  # the start, which says what is wrong, stays


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/health", "/v1/jobs/" + "0" * 32, "/v1/styles"])
def test_options_answers_204_with_allow(server, path: str) -> None:
    srv, _ = server
    status, headers, body = raw(srv.url + path, "OPTIONS")
    assert status == 204 and body == b"" and "text/html" not in (headers.get("Content-Type") or "")
    assert "GET" in headers["Allow"] or "POST" in headers["Allow"]
    assert not [k for k in headers if k.lower().startswith("access-control-")]
