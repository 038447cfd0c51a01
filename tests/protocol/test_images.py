"""Uploaded images of every common kind reach the engine as RGB or RGBA, upright, and come back the same."""

from __future__ import annotations

import io

import pytest
import requests
from PIL import Image
from protocol_helpers import gradient, png_bytes

STYLE = png_bytes(gradient(8, 8))


def encoded(image: Image.Image, fmt: str, **save) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **save)
    return out.getvalue()


def palette_with_transparency() -> Image.Image:
    img = gradient(20, 10).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    img.info["transparency"] = 0
    return img


CASES = {
    "grey": (lambda: encoded(gradient(20, 10).convert("L"), "PNG"), "RGB", (20, 10)),
    "grey+alpha": (lambda: encoded(gradient(20, 10, "RGBA").convert("LA"), "PNG"), "RGBA", (20, 10)),
    "palette": (lambda: encoded(gradient(20, 10).convert("P"), "PNG"), "RGB", (20, 10)),
    "palette+transparency": (lambda: encoded(palette_with_transparency(), "PNG", transparency=0), "RGBA", (20, 10)),
    "16-bit": (lambda: encoded(Image.new("I;16", (20, 10), 40000), "PNG"), "RGB", (20, 10)),
    "cmyk-jpeg": (lambda: encoded(gradient(20, 10).convert("CMYK"), "JPEG"), "RGB", (20, 10)),
    "webp": (lambda: encoded(gradient(20, 10), "WEBP", lossless=True), "RGB", (20, 10)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_image_kinds_are_normalised(server, fake_engine, case) -> None:
    make, mode, size = CASES[case]
    _, client = server
    out = Image.open(io.BytesIO(client.stylize(make(), STYLE, params={"iterations": 1})))
    content, _, _ = fake_engine.calls[-1]
    assert (content.mode, content.size) == (mode, size)
    assert (out.mode, out.size) == (mode, size)


def test_exif_orientation_is_applied(server, fake_engine) -> None:
    _, client = server
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    data = encoded(gradient(40, 20), "JPEG", exif=exif.tobytes())
    out = Image.open(io.BytesIO(client.stylize(data, STYLE, params={"iterations": 1})))
    assert fake_engine.calls[-1][0].size == out.size == (20, 40)


def test_requests_example_from_the_docs_works(server) -> None:
    srv, _ = server
    reply = requests.post(
        f"{srv.url}/v1/stylize",
        files={"content": ("c.jpg", encoded(gradient(), "JPEG")), "style": ("s.png", STYLE)},
        data={"params": '{"iterations": 2, "seed": 9}'},
        timeout=10,
    )
    assert reply.status_code == 200 and reply.headers["Content-Type"] == "image/png"
    assert reply.headers["X-Stylelayer-Seed"] == "9"
    assert Image.open(io.BytesIO(reply.content)).size == (40, 30)
