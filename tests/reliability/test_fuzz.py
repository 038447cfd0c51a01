"""Property-based fuzzing (hypothesis) of the HTTP API and of image decoding.

The API runs in Flask's test client (thousands of requests in seconds) around the fake engine; after every
example the server must still answer /v1/health. Seeds are fixed (derandomize) so CI sees the same inputs.
"""

from __future__ import annotations

import contextlib
import io
import json
import string
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from protocol_helpers import FakeEngine, gradient, png_bytes
from reliability_helpers import assert_json_error, real_jpeg

from stylelayer.api import create_app
from stylelayer.api.errors import ApiError
from stylelayer.api.images import load_upload
from stylelayer.core.imaging import ImageError, decode_image
from stylelayer.core.params import StyleParams

pytestmark = pytest.mark.category("Property-based fuzzing")

FUZZ = settings(
    max_examples=150,
    deadline=None,  # a first request warms Flask up; wall time is bounded by max_examples instead
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
CONTENT = png_bytes(gradient(24, 16))
STYLE = png_bytes(gradient(8, 8))
PARAM_NAMES = sorted(StyleParams().to_dict())
ANY_STATUS_OK = {200, 201, 202, 204}  # 204: OPTIONS


@pytest.fixture(scope="module")
def api() -> Iterator[FlaskClient]:
    """One app for all examples: jobs pile up, so the queue and history limits are generous."""
    engine = FakeEngine()
    app = create_app({"max_queue": 10_000, "keep_results": 50}, engine=engine)
    yield app.test_client()
    app.extensions["stylelayer"].queue.stop()


def check(response, ok: set[int] = ANY_STATUS_OK) -> None:
    """A success the test allows, or the JSON error shape with a 4xx; and the server answers the next request."""
    if response.status_code not in ok:
        assert_json_error(response.status_code, response.data, response.content_type)
    assert response.status_code < 500, response.data


def alive(api: FlaskClient) -> None:
    health = api.get("/v1/health")
    assert health.status_code == 200 and health.get_json()["status"] == "ok"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
# Mostly real parameter names with random values, so validation paths beyond "unknown parameter" are reached.
param_objects = st.dictionaries(st.sampled_from(PARAM_NAMES) | st.text(max_size=12), json_values, max_size=5)


@FUZZ
@given(params=param_objects | json_values)
def test_random_params_json(api: FlaskClient, cases, params: object) -> None:
    """Random JSON (mostly objects of real parameter names with random values) as `params`: 202 or 400."""
    text = json.dumps(params)
    data = {"content": (io.BytesIO(CONTENT), "c.png"), "style": (io.BytesIO(STYLE), "s.png"), "params": text}
    response = api.post("/v1/jobs", data=data, content_type="multipart/form-data")
    check(response, {202})
    if response.status_code == 400:
        error = response.get_json()["error"]
        assert error["code"] in ("bad_param", "missing_field") and isinstance(error.get("field"), str), error
    else:
        assert isinstance(params, dict)
        api.post(f"/v1/jobs/{response.get_json()['id']}/cancel")
    alive(api)
    cases()


@FUZZ
@given(params=st.text(max_size=60) | st.binary(max_size=60).map(lambda b: b.decode("latin-1")))
def test_random_params_text(api: FlaskClient, cases, params: str) -> None:
    """Arbitrary text as `params` (mostly not JSON)."""
    data = {"content": (io.BytesIO(CONTENT), "c.png"), "style": (io.BytesIO(STYLE), "s.png"), "params": params}
    response = api.post("/v1/jobs", data=data, content_type="multipart/form-data")
    check(response, {202})
    if response.status_code == 202:
        api.post(f"/v1/jobs/{response.get_json()['id']}/cancel")
    alive(api)
    cases()


FIELD_NAMES = ["content", "style", "style_id", "params", "preview_every", "image", "name", "x"]
field_values = st.one_of(
    st.text(max_size=30),
    st.tuples(st.binary(max_size=200), st.text(string.printable, max_size=12)),  # a file with a random name
    st.tuples(st.sampled_from([CONTENT, STYLE, b""]), st.just("f.png")),
)


@FUZZ
@given(
    route=st.sampled_from(["/v1/jobs", "/v1/stylize", "/v1/styles"]),
    fields=st.lists(st.tuples(st.sampled_from(FIELD_NAMES), field_values), max_size=6),
)
def test_random_multipart_fields(api: FlaskClient, cases, route: str, fields: list) -> None:
    """Random multipart forms (real and made-up field names, text or file values, repeats) on every upload route."""
    data: dict[str, list] = {}
    for name, value in fields:
        if isinstance(value, tuple):
            value = (io.BytesIO(value[0]), value[1])
        data.setdefault(name, []).append(value)
    response = api.post(route, data=data, content_type="multipart/form-data")
    check(response)
    if response.status_code == 202:
        api.post(f"/v1/jobs/{response.get_json()['id']}/cancel")
    alive(api)
    cases()


@FUZZ
@given(blob=st.binary(max_size=2048), as_field=st.sampled_from(["content", "style", "image"]))
def test_random_bytes_as_images(api: FlaskClient, cases, blob: bytes, as_field: str) -> None:
    """Random bytes uploaded as a content, style or library image."""
    if as_field == "image":
        response = api.post("/v1/styles", data={"image": (io.BytesIO(blob), "x"), "name": "n"})
    else:
        files = {"content": CONTENT, "style": STYLE, as_field: blob}
        data = {k: (io.BytesIO(v), f"{k}.bin") for k, v in files.items()}
        response = api.post("/v1/jobs", data=data, content_type="multipart/form-data")
    check(response, set())
    assert response.get_json()["error"]["code"] in ("empty_file", "not_an_image", "bad_image", "too_many_pixels")
    alive(api)
    cases()


@FUZZ
@given(
    ident=st.text(max_size=40) | st.from_regex(r"[0-9a-f]{16}|[0-9a-f]{32}", fullmatch=True),
    route=st.sampled_from(
        [
            ("GET", "/v1/jobs/{}"),
            ("GET", "/v1/jobs/{}/preview"),
            ("GET", "/v1/jobs/{}/result"),
            ("POST", "/v1/jobs/{}/cancel"),
            ("DELETE", "/v1/jobs/{}"),
            ("GET", "/v1/styles/{}/thumbnail"),
            ("DELETE", "/v1/styles/{}"),
            ("PUT", "/v1/{}"),
        ]
    ),
)
def test_random_ids(api: FlaskClient, cases, ident: str, route: tuple[str, str]) -> None:
    """Random (percent-encoded) ids, including well-formed ones that name nothing, in every id route."""
    method, template = route
    response = api.open(template.format(quote(ident, safe="")), method=method)
    check(response, set())
    assert response.status_code in (404, 405), response.data
    alive(api)
    cases()


header_text = st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=40)


@FUZZ
@given(
    headers=st.dictionaries(
        st.sampled_from(["Origin", "Host", "Authorization", "Sec-Fetch-Site", "Content-Type", "Referer"]),
        header_text | st.sampled_from(["null", "http://[", "http://127.0.0.1", "localhost", "multipart/form-data"]),
        max_size=4,
    ),
    method=st.sampled_from(["GET", "POST", "DELETE", "OPTIONS"]),
    path=st.sampled_from(["/v1/health", "/v1/jobs", "/v1/styles", "/v1/stylize", "/"]),
)
def test_random_headers(api: FlaskClient, cases, headers: dict[str, str], method: str, path: str) -> None:
    """Random Origin/Host/Authorization/Sec-Fetch-Site/Content-Type headers on reads and writes."""
    response = api.open(path, method=method, headers=headers, data=b"")
    check(response)
    if method in ("POST", "DELETE") and headers.get("Origin") in ("null", "http://["):
        assert response.status_code == 403 or response.get_json()["error"]["code"] == "bad_host"
    alive(api)
    cases()


# ---- image decoding ------------------------------------------------------------------------------------------
def _seed_files() -> list[bytes]:
    """Valid files in many formats and modes: mutations of these reach deep into each decoder."""
    src = gradient(24, 18)
    out = []
    for fmt, mode in [
        ("PNG", "RGB"),
        ("PNG", "P"),
        ("PNG", "I;16"),
        ("PNG", "LA"),
        ("GIF", "P"),
        ("TIFF", "RGB"),
        ("TIFF", "F"),
        ("WEBP", "RGB"),
        ("BMP", "RGB"),
        ("ICO", "RGBA"),
        ("TGA", "RGB"),
        ("PPM", "RGB"),
        ("JPEG", "CMYK"),
    ]:
        buf = io.BytesIO()
        src.convert(mode).save(buf, format=fmt)
        out.append(buf.getvalue())
    out.append(real_jpeg(longest=48))
    return out


SEEDS = _seed_files()


@st.composite
def mutated_images(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "zero"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip":
            data[at] ^= draw(st.integers(1, 255))
        elif op == "truncate":
            del data[max(1, at) :]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        else:
            data[at : at + 8] = bytes(len(data[at : at + 8]))
    return bytes(data)


@settings(FUZZ, max_examples=600)
@given(data=mutated_images() | st.binary(max_size=512))
def test_decoding_mutated_files(cases, data: bytes) -> None:
    """Bit flips, truncation and insertions in 14 formats/modes: an RGB(A) image or a 4xx ApiError, nothing else."""
    try:
        image = load_upload(data, "content", 16_000_000)
    except ApiError as exc:
        assert exc.status in (400, 413, 415) and exc.field == "content"
    else:
        assert image.mode in ("RGB", "RGBA") and image.width * image.height <= 16_000_000
        image.tobytes()  # fully decoded, not lazily failing later in the engine
    with contextlib.suppress(ImageError):  # the core decoder raises only its own error type
        decode_image(data)
    cases()


@settings(FUZZ, max_examples=120)
@given(
    width=st.integers(1, 300),
    height=st.integers(1, 300),
    mode=st.sampled_from(["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F"]),
    fmt=st.sampled_from(["PNG", "TIFF", "JPEG", "WEBP", "BMP", "GIF"]),
    orientation=st.integers(1, 8),
)
def test_decoding_valid_images_keeps_size(
    cases, width: int, height: int, mode: str, fmt: str, orientation: int
) -> None:
    """Any valid image decodes to RGB/RGBA of its (EXIF-oriented) size; alpha only where the file has it."""
    img = Image.new(mode, (width, height))
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = orientation
    try:
        img.save(buf, format=fmt, exif=exif.tobytes()) if fmt in ("JPEG", "PNG", "WEBP", "TIFF") else img.save(
            buf, format=fmt
        )
    except (OSError, ValueError, KeyError):
        return  # Pillow cannot write this mode in this format: nothing to test
    written = Image.open(io.BytesIO(buf.getvalue()))
    swapped = written.getexif().get(0x0112, 1) in (5, 6, 7, 8)
    out = load_upload(buf.getvalue(), "content", 16_000_000)
    assert out.size == ((height, width) if swapped else (width, height))
    assert out.mode in ("RGB", "RGBA")
    if out.mode == "RGBA":
        assert written.mode in ("LA", "RGBA", "PA", "P") or "transparency" in written.info
    cases()
