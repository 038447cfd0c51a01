"""docs/openapi.yaml is a valid OpenAPI document, and it is the contract: real answers of a real server (waitress,
fake engine) for every route, successes and every error it documents, are checked against it.

Each answer must be documented for its operation (its status, or `default` for the request-level errors the
HTTP server answers), have the documented media type and headers, and a JSON body must validate against the
documented schema (OpenAPI 3.0 rules: `nullable`, `additionalProperties: false` where the spec says so). Every
status the spec lists for an operation must have been seen at least once, so the spec lists nothing the server
never says.
"""

from __future__ import annotations

import json
import re
import threading
import time
from urllib.parse import urlsplit

import pytest
import yaml
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate as validate_spec
from protocol_helpers import (
    OVERSIZE_HEADERS,
    REPO,
    FakeEngine,
    gradient,
    png_bytes,
    raw,
    raw_exchange,
    stylelayer_client,
)

from stylelayer.core.engine import Cancelled

SPEC = yaml.safe_load((REPO / "docs" / "openapi.yaml").read_text())
METHODS = ("get", "post", "put", "delete", "patch")
REQUEST_LEVEL = {400, 413, 431, 501}  # what `default` stands for: answered before a route runs
CONTENT = png_bytes(gradient(24, 16))
STYLE = png_bytes(gradient(8, 8))
JOB_ZERO, STYLE_ZERO = "0" * 32, "0" * 16


def test_openapi_document_is_valid() -> None:
    validate_spec(SPEC)  # raises with the first problem (the CLI `openapi-spec-validator` runs the same check)


def resolve(node: object) -> object:
    """The node with every local $ref replaced by what it points to (the spec has no recursive schemas)."""
    if isinstance(node, dict):
        if "$ref" in node:
            target: object = SPEC
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]  # type: ignore[index]
            return resolve(target)
        return {key: resolve(value) for key, value in node.items()}
    if isinstance(node, list):
        return [resolve(item) for item in node]
    return node


def template_of(path: str) -> str | None:
    """The spec's path template that `path` (no query) matches: /v1/jobs/ab.../losses -> /v1/jobs/{job_id}/losses."""
    for template in SPEC["paths"]:
        pattern = re.sub(r"\\{\w+\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, path):
            return template
    return None


class Contract:
    """Sends requests, checks every answer against the spec, and remembers which (method, path, status) it saw."""

    def __init__(self) -> None:
        self.seen: set[tuple[str, str, str]] = set()

    def call(self, url: str, method: str = "GET", body: bytes | None = None, headers: dict | None = None):
        status, response_headers, data = raw(url, method, body, headers)
        self.check(method, urlsplit(url).path, status, dict(response_headers.items()), data)
        return status, response_headers, data

    def form(self, url: str, content=CONTENT, style=STYLE, style_id=None, params=None, headers=None, method="POST"):
        body, ctype = stylelayer_client._job_form(content, style, style_id, params or {}, None)
        return self.call(url, method, body, {"Content-Type": ctype, **(headers or {})})

    def socket(self, url: str, payload: bytes) -> int:
        """Raw bytes on a fresh connection, for what urllib will not send (bad framing, huge headers)."""
        head, _, body = raw_exchange(url, payload).partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:])
        method, path = payload.split(b" ", 2)[:2]
        status = int(lines[0].split(" ")[1])
        self.check(method.decode(), path.decode(), status, headers, body)
        return status

    def check(self, method: str, path: str, status: int, headers: dict[str, str], body: bytes) -> None:
        where = f"{method} {path} -> {status}"
        headers = {k.lower(): v for k, v in headers.items()}
        template = template_of(path)
        operation = SPEC["paths"].get(template, {}).get(method.lower()) if template else None
        if operation is None:  # no such path (404) or no such method on it (405): the Error shape
            assert status == (405 if template else 404), where
            if status == 405:
                allowed = {m.upper() for m in SPEC["paths"][template] if m in METHODS}
                assert allowed <= set(headers["allow"].replace(" ", "").split(",")), where
            response = resolve(SPEC["components"]["responses"]["Error"])
        else:
            documented = operation["responses"]
            if str(status) in documented:
                response = resolve(documented[str(status)])
                self.seen.add((method.upper(), template, str(status)))
            else:
                assert status in REQUEST_LEVEL and "default" in documented, f"undocumented answer {where}"
                response = resolve(documented["default"])
        media = headers.get("content-type", "").split(";")[0]
        assert media in response.get("content", {}), f"{where}: {media!r} not documented"
        for name, header in response.get("headers", {}).items():
            if resolve(header).get("required", True):  # required: false - only some answers have it (a seed)
                assert name.lower() in headers, f"{where}: header {name} missing"
        if status == 429:
            assert int(headers["retry-after"]) >= 1
        schema = response["content"][media]["schema"]
        if media == "application/json":
            errors = sorted(OAS30Validator(schema).iter_errors(json.loads(body)), key=str)
            assert not errors, f"{where}: {errors[0].message} at {list(errors[0].absolute_path)}"
        else:
            assert media == "image/png" and body.startswith(b"\x89PNG\r\n\x1a\n"), where


class EngineCancels(FakeEngine):
    """Cancels itself (as if asked to) when a job asks for 7 iterations: a /v1/stylize job that ends cancelled."""

    def stylize(self, content, styles, params, progress=None, should_cancel=None, preview_every=0):
        if params.iterations == 7:
            raise Cancelled()
        return super().stylize(content, styles, params, progress, should_cancel, preview_every)


def wait(client: stylelayer_client.StylelayerClient, job_id: str, states: set[str]) -> None:
    deadline = time.monotonic() + 10
    while client.status(job_id)["state"] not in states:
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_every_answer_of_every_route_is_as_documented(make_server, tmp_path) -> None:
    contract = Contract()
    engine = EngineCancels()
    srv, client = make_server(engine, max_pixels=50_000, max_queue=3, sync_timeout=0.5)
    base = srv.url + "/v1"

    # ---- health, info, styles -----------------------------------------------------------------------------
    contract.call(base + "/health")
    contract.call(base + "/info")
    _, _, data = contract.call(base + "/styles", "POST", *_style_form(STYLE, "s"))
    style_id = json.loads(data)["id"]
    contract.call(base + "/styles")
    contract.call(base + f"/styles/{style_id}/thumbnail")
    contract.call(base + "/styles", "POST", *_style_form(None, "no image"))  # 400 missing_field
    contract.call(base + "/styles", "POST", *_style_form(png_bytes(gradient(300, 300)), "big"))  # 413 pixels
    contract.call(base + "/styles", "POST", b"{}", {"Content-Type": "application/json"})  # 415
    contract.call(base + f"/styles/{STYLE_ZERO}/thumbnail")  # 404
    contract.call(base + f"/styles/{STYLE_ZERO}", "DELETE")  # 404

    # ---- estimate ----------------------------------------------------------------------------------------------
    contract.call(base + "/estimate", "POST", *_json({"width": 40, "height": 30, "params": {"size": 20}}))
    contract.call(base + "/estimate", "POST", *_json({"width": 0, "height": 30}))  # 400

    # ---- jobs: submit, follow, results, losses --------------------------------------------------------------
    _, _, data = contract.form(base + "/jobs", params={"iterations": 3, "seed": 2**60}, style_id=style_id)
    done = json.loads(data)["id"]
    wait(client, done, {"done"})
    for suffix in ("", "/preview", "/result", "/losses", "/losses?since=2", "/losses.png"):
        contract.call(base + f"/jobs/{done}{suffix}")
    contract.call(base + f"/jobs/{done}/losses?since=-1")  # 400
    contract.call(base + f"/styles/{style_id}", "DELETE")
    engine.gate = threading.Event()
    _, _, data = contract.form(base + "/jobs", params={"iterations": 2}, headers={"Origin": srv.url})
    running = json.loads(data)["id"]
    assert engine.started.wait(5)
    _, _, data = contract.form(base + "/jobs")
    queued = json.loads(data)["id"]
    for job_id in (running, queued):
        for suffix in ("", "/preview", "/result", "/losses", "/losses.png"):  # 200s, 404 no_preview, 409 not_ready
            contract.call(base + f"/jobs/{job_id}{suffix}")
    contract.call(base + f"/jobs/{queued}/cancel", "POST")
    contract.call(base + f"/jobs/{queued}/result")  # 409 job_cancelled
    contract.call(base + f"/jobs/{queued}", "DELETE")
    for suffix, method in (
        ("", "GET"),
        ("", "DELETE"),
        ("/cancel", "POST"),
        ("/preview", "GET"),
        ("/result", "GET"),
        ("/losses", "GET"),
        ("/losses.png", "GET"),
    ):
        contract.call(base + f"/jobs/{JOB_ZERO}{suffix}", method)  # 404 job_not_found
    contract.call(base + "/stylize", "POST", *_form(params={"iterations": 1}))  # 504: the worker is held
    fill = [json.loads(contract.form(base + "/jobs")[2])["id"] for _ in range(3)]
    contract.form(base + "/jobs")  # 429 with Retry-After
    contract.form(base + "/stylize")  # 429
    for job_id in [*fill, running]:
        client.cancel(job_id)
    engine.gate = None
    wait(client, running, {"cancelled"})

    # ---- bad submissions, on both job routes ----------------------------------------------------------------
    for route in ("/jobs", "/stylize"):
        contract.form(base + route, params={"size": "64"})  # 400 bad_param
        contract.form(base + route, style_id=STYLE_ZERO, style=None)  # 404 style_not_found
        contract.form(base + route, content=png_bytes(gradient(300, 300)))  # 413 too_many_pixels
        contract.call(base + route, "POST", b"{}", {"Content-Type": "application/json"})  # 415
        contract.form(base + route, headers={"Origin": "https://evil.example"})  # 403 cross_origin
    contract.form(base + "/stylize", params={"iterations": 2})  # 200
    contract.form(base + "/stylize", params={"iterations": 7})  # 409 job_cancelled
    engine.fail_with = RuntimeError("boom")
    contract.form(base + "/stylize", params={"iterations": 1})  # 500 engine_error
    _, _, data = contract.form(base + "/jobs", params={"iterations": 1})
    wait(client, json.loads(data)["id"], {"failed"})
    contract.call(base + f"/jobs/{json.loads(data)['id']}/result")  # 409 engine_error
    engine.fail_with = None

    # ---- every operation: 403 for a foreign Host without a token, 401 without the token ---------------------
    token_srv, _ = make_server(FakeEngine(), token="t")
    for template, item in SPEC["paths"].items():
        path = template.replace("{job_id}", JOB_ZERO).replace("{style_id}", STYLE_ZERO)
        for method in (m for m in item if m in METHODS):
            contract.call(srv.url + path, method.upper(), b"", {"Host": "evil.example"})
            contract.call(token_srv.url + path, method.upper(), b"")

    # ---- an engine that failed to load: 503 ------------------------------------------------------------------
    broken, broken_client = make_server(None, weights=str(tmp_path / "missing.pth"), device="cpu")
    assert broken.app.extensions["stylelayer"].queue.wait_ready(30)
    contract.call(broken.url + "/v1/health")
    contract.form(broken.url + "/v1/jobs")
    contract.form(broken.url + "/v1/stylize")
    contract.call(broken.url + "/v1/estimate", "POST", *_json({"width": 40, "height": 30}))

    # ---- a data folder nearly full: health degraded (with its reason), submissions 507 ------------------------
    full, _ = make_server(FakeEngine(), min_free_bytes=2**62)
    contract.call(full.url + "/v1/health")
    contract.form(full.url + "/v1/jobs")
    contract.form(full.url + "/v1/stylize")

    # ---- answers with no operation, and the HTTP server's own errors -----------------------------------------
    contract.call(srv.url + "/v1/nope")  # 404
    contract.call(base + "/health", "POST", b"")  # 405
    contract.call(base + "/jobs", "PUT", b"")  # 405
    host = b"Host: 127.0.0.1\r\n"
    assert contract.socket(srv.url, OVERSIZE_HEADERS) == 431
    assert contract.socket(srv.url, b"POST /v1/jobs HTTP/1.1\r\n" + host + b"Content-Length: -5\r\n\r\n") == 400
    assert contract.socket(srv.url, b"POST /v1/jobs HTTP/1.1\r\n" + host + b"Transfer-Encoding: gzip\r\n\r\n") == 501
    assert contract.socket(srv.url, b"POST /v1/jobs HTTP/1.1\r\n" + host + b"Content-Length: 999999999\r\n\r\n") == 413

    documented = {
        (method.upper(), template, status)
        for template, item in SPEC["paths"].items()
        for method, op in item.items()
        if method in METHODS
        for status in op["responses"]
        if status != "default"
    }
    assert documented - contract.seen == set(), "documented but never answered"


def _form(content=CONTENT, style=STYLE, params=None) -> tuple[bytes, dict[str, str]]:
    body, ctype = stylelayer_client._job_form(content, style, None, params or {}, None)
    return body, {"Content-Type": ctype}


def _json(body: object) -> tuple[bytes, dict[str, str]]:
    return json.dumps(body).encode(), {"Content-Type": "application/json"}


def _style_form(image: bytes | None, name: str) -> tuple[bytes, dict[str, str]]:
    fields = [("name", None, name.encode())] + ([("image", "s.png", image)] if image is not None else [])
    body, ctype = stylelayer_client._multipart(fields)
    return body, {"Content-Type": ctype}


@pytest.mark.parametrize("job_state", ["queued", "running", "done", "failed", "cancelled"])
def test_job_json_in_every_state_matches_the_schema(make_server, job_state) -> None:
    """The Job schema holds in each state (nullable fields null or set), restarts included."""
    engine = FakeEngine(fail_with=RuntimeError("x") if job_state == "failed" else None)
    engine.gate = threading.Event() if job_state in ("queued", "running", "cancelled") else None
    _, client = make_server(engine)
    job_id = client.submit(CONTENT, STYLE, params={"iterations": 2})
    if job_state == "queued":
        assert engine.started.wait(5)
        job_id = client.submit(CONTENT, STYLE)
    elif job_state == "cancelled":
        client.cancel(job_id)
    wait(client, job_id, {job_state})
    schema = resolve(SPEC["components"]["schemas"]["Job"])
    status = client.status(job_id)
    assert list(OAS30Validator(schema).iter_errors(status)) == []
    assert set(status) == set(schema["properties"])  # nothing undocumented, nothing documented missing
    if engine.gate is not None:
        engine.gate.set()
