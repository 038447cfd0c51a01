"""Helpers shared by the reliability tests: a JSON-error check, a liveness check and a corpus of hostile images."""

from __future__ import annotations

import functools
import io
import json
import struct
import threading
import time
from dataclasses import dataclass

from PIL import Image
from protocol_helpers import gradient, png_bytes, stylelayer_client
from testimages import real_image

from stylelayer.api.job import TERMINAL

__all__ = ["TERMINAL", "BadImage", "assert_json_error", "image_corpus", "real_jpeg", "stylize_behind"]


def assert_json_error(status: int, body: bytes, content_type: str | None, allowed: set[int] | None = None) -> dict:
    """The documented error shape: JSON (not HTML), a 4xx (never 5xx) unless `allowed` says otherwise."""
    assert content_type is not None and content_type.startswith("application/json"), (status, content_type, body[:200])
    assert b"<html" not in body.lower() and b"Traceback" not in body
    payload = json.loads(body)
    assert set(payload) == {"error"}, payload
    error = payload["error"]
    assert isinstance(error["code"], str) and isinstance(error["message"], str) and error["message"]
    if allowed is None:
        assert 400 <= status < 500, (status, error)
    else:
        assert status in allowed, (status, error)
    return error


def stylize_behind(client, content: bytes, style: bytes, queued: int) -> tuple[threading.Thread, dict[str, object]]:
    """A synchronous /v1/stylize call on a thread, returned once its job is queued as the `queued`-th: the answer
    it gets ({"png": ...} or {"error": (status, code)}) lands in the dict when the thread ends."""
    answer: dict[str, object] = {}

    def call() -> None:
        try:
            answer["png"] = client.stylize(content, style)
        except stylelayer_client.StylelayerError as exc:
            answer["error"] = (exc.status, exc.code)

    caller = threading.Thread(target=call)
    caller.start()
    deadline = time.monotonic() + 5
    while client.info()["jobs"]["queued"] < queued:
        assert time.monotonic() < deadline, "the stylize call's job was not queued within 5 s"
        time.sleep(0.01)
    return caller, answer


def real_jpeg(name: str = "tubingen", longest: int = 96, **save: object) -> bytes:
    img = real_image(name, longest)
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=90, **save)
    return out.getvalue()


def _save(img: Image.Image, fmt: str, **kw: object) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **kw)
    return out.getvalue()


def _jpeg_with_size(data: bytes, width: int, height: int) -> bytes:
    """Rewrite the SOF0 frame header: a tiny file whose header claims an enormous image."""
    at = data.index(b"\xff\xc0")
    return data[: at + 5] + struct.pack(">HH", height, width) + data[at + 9 :]


def _flip(data: bytes, start: int, count: int) -> bytes:
    out = bytearray(data)
    for i in range(start, min(len(out), start + count)):
        out[i] ^= 0xA5
    return bytes(out)


@dataclass
class BadImage:
    """An upload and what the server must say about it: an error (status, code) or acceptance (size, mode)."""

    name: str
    data: bytes
    status: int | tuple[int, ...]  # 202 = accepted; a tuple where more than one answer is right
    code: str | None = None
    size: tuple[int, int] | None = None  # the result's size when accepted
    mode: str | None = None  # the result's mode when accepted


@functools.cache
def image_corpus() -> tuple[BadImage, ...]:
    """Damaged, hostile and unusual images, built in memory from a real photo and gradients (once per run)."""
    png = png_bytes(gradient(64, 48))
    jpeg = real_jpeg()
    jw, jh = Image.open(io.BytesIO(jpeg)).size
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    rotated = real_jpeg(exif=exif.tobytes())
    bad_exif = Image.Exif()
    bad_exif[0x0112] = 77  # no such orientation: ignored
    palette = gradient(32, 32).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette.info["transparency"] = 0
    sixteen = Image.new("I;16", (40, 30))
    sixteen.putdata([(x * 1500 + y * 700) % 65536 for y in range(30) for x in range(40)])
    frames = [gradient(20, 20), gradient(20, 20).transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:], duration=50)
    float_tiff = Image.new("F", (16, 16), 0.5)
    return (
        BadImage("0 bytes", b"", 400, "empty_file"),
        BadImage("PNG truncated to half", png[: len(png) // 2], 400, "bad_image"),
        BadImage("PNG signature + IHDR only", png[:33], 415, "not_an_image"),
        BadImage("PNG pixel data corrupted", _flip(png, 60, 40), 400, "bad_image"),
        BadImage("PNG signature then garbage", png[:8] + b"\x00garbage" * 20, 415, "not_an_image"),
        BadImage("JPEG truncated to half", jpeg[: len(jpeg) // 2], 400, "bad_image"),
        BadImage("JPEG SOI marker only", b"\xff\xd8\xff", 415, "not_an_image"),
        BadImage("JPEG scan data corrupted", _flip(jpeg, len(jpeg) // 2, 64), (202, 400), None, (jw, jh), "RGB"),
        BadImage("random bytes", bytes(range(256)) * 8, 415, "not_an_image"),
        BadImage("HTML page", b"<!doctype html><html><body>hi</body></html>", 415, "not_an_image"),
        BadImage("pickle", b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00K\x01.", 415, "not_an_image"),
        BadImage("PNG bomb 20000x20000 (50 KB)", _save(Image.new("1", (20000, 20000)), "PNG"), 413, "too_many_pixels"),
        BadImage("JPEG header claiming 65000x65000", _jpeg_with_size(jpeg, 65000, 65000), 413, "too_many_pixels"),
        BadImage("PNG 8000x7000 (over 50 MP)", _save(Image.new("1", (8000, 7000)), "PNG"), 413, "too_many_pixels"),
        BadImage("1x1 PNG", png_bytes(Image.new("RGB", (1, 1), (9, 8, 7))), 202, None, (1, 1), "RGB"),
        BadImage("1x3000 PNG strip", png_bytes(Image.new("RGB", (1, 3000), (9, 8, 7))), 202, None, (1, 3000), "RGB"),
        BadImage("16-bit greyscale PNG", _save(sixteen, "PNG"), 202, None, (40, 30), "RGB"),
        BadImage("palette PNG with transparency", _save(palette, "PNG"), 202, None, (32, 32), "RGBA"),
        BadImage("greyscale PNG", png_bytes(gradient(30, 20).convert("L")), 202, None, (30, 20), "RGB"),
        BadImage("greyscale+alpha PNG", png_bytes(gradient(30, 20, "RGBA").convert("LA")), 202, None, (30, 20), "RGBA"),
        BadImage("1-bit BMP", _save(gradient(24, 16).convert("1"), "BMP"), 202, None, (24, 16), "RGB"),
        BadImage("CMYK JPEG", _save(gradient(40, 30).convert("CMYK"), "JPEG"), 202, None, (40, 30), "RGB"),
        BadImage("EXIF-rotated JPEG (orientation 6)", rotated, 202, None, (jh, jw), "RGB"),
        BadImage("JPEG with invalid EXIF orientation", real_jpeg(exif=bad_exif.tobytes()), 202, None, (jw, jh), "RGB"),
        BadImage("animated GIF (first frame)", gif.getvalue(), 202, None, (20, 20), "RGB"),
        BadImage("32-bit float TIFF", _save(float_tiff, "TIFF"), 202, None, (16, 16), "RGB"),
        BadImage("WebP", _save(gradient(30, 20), "WEBP", lossless=True), 202, None, (30, 20), "RGB"),
    )


def wait_terminal(client: stylelayer_client.StylelayerClient, job_id: str, timeout: float = 20) -> dict:
    """Poll until the job is done, failed or cancelled (failing the test after `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    while (status := client.status(job_id))["state"] not in TERMINAL:
        assert time.monotonic() < deadline, status
        time.sleep(0.01)
    return status
