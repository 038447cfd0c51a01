"""Pure logic shared by the Krita and GIMP plug-ins: no Qt, no gi, standard library only, Python 3.8 syntax.

Limits and defaults of the server's parameters, the dialog values -> StyleParams mapping, the stdlib PNG
encoder, layer naming, server URL checks, progress arithmetic/text and the messages the painter reads for a
failure. This file is the one source: `stylelayer install-plugin` copies it (with stylelayer_client.py) into
each plug-in's folder, where the plug-in's own logic module re-exports `__all__`.
"""
from __future__ import annotations

import math
import os
import struct
import zlib

__all__ = [  # what the plug-ins' own logic modules re-export (`from ... import *`)
    "BASE_STYLE_WEIGHT", "CANCELLED_MESSAGE", "DEFAULT_SERVER_URL", "LAYER_NAME_MAX", "MAX_ITERATIONS", "MAX_SIZE",
    "MAX_STRENGTH", "MAX_STYLE_SIDE", "MIN_STRENGTH", "PNG_SIGNATURE", "PluginError", "build_params",
    "check_server_url", "encode_png", "error_message", "is_png", "png_size", "progress_fraction", "progress_text",
    "style_label", "style_layer_name",
]  # fmt: skip

# Copies of server/stylelayer/limits.py (this file runs in the host's Python without the stylelayer package);
# tests/protocol/test_plugin_common.py fails when one differs.
DEFAULT_SERVER_URL = "http://127.0.0.1:8765"
MAX_SIZE = 4096
MAX_ITERATIONS = 10_000
MAX_STYLE_SIDE = 2048  # a larger style image is scaled down before it is sent
BASE_STYLE_WEIGHT = 1e4  # = StyleParams.style_weight default (a test checks): style strength 1.0 means it
MIN_STRENGTH = 0.01
MAX_STRENGTH = 100.0
LAYER_NAME_MAX = 64
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


CANCELLED_MESSAGE = "The style transfer was cancelled; the image is unchanged."


class PluginError(Exception):
    """A failure worth showing to the painter as it is."""


def error_message(exc: BaseException) -> str:
    """What the painter reads for an exception from the plug-in, the HTTP client or the host, in Krita and GIMP.

    The client's exceptions are recognised by class name: this module does not import the client.
    """
    if isinstance(exc, PluginError):
        return str(exc)
    kinds = {cls.__name__ for cls in type(exc).__mro__}
    message = str(getattr(exc, "message", None) or exc) or type(exc).__name__
    if "JobCancelled" in kinds:
        return CANCELLED_MESSAGE
    if kinds & {"ServerUnavailable", "TimedOut", "ConnectionLost"}:
        return message  # the client's own text names the address and says what to check
    if "JobFailed" in kinds:
        return f"The server could not finish the style transfer: {message}"
    if "StylelayerError" in kinds:
        return f"The server refused the request: {message}"
    return f"Unexpected error ({type(exc).__name__}): {message}"


# ---- PNG ---------------------------------------------------------------------------------------
def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(width: int, height: int, pixels: bytes, channels: int = 4, level: int = 6) -> bytes:
    """8-bit PNG of `pixels`: rows top to bottom, `channels` bytes a pixel (1 Y, 2 YA, 3 RGB, 4 RGBA)."""
    color_types = {1: 0, 2: 4, 3: 2, 4: 6}
    if channels not in color_types:
        raise ValueError(f"channels must be 1, 2, 3 or 4; got {channels}")
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive; got {width}x{height}")
    stride = width * channels
    if len(pixels) != stride * height:
        raise ValueError(f"expected {stride * height} bytes for {width}x{height}x{channels}; got {len(pixels)}")
    view = memoryview(pixels)
    raw = b"".join(b"\x00" + view[y * stride : (y + 1) * stride] for y in range(height))  # filter 0 (None)
    header = struct.pack(">IIBBBBB", width, height, 8, color_types[channels], 0, 0, 0)
    return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, level)) + _chunk(b"IEND", b"")


def is_png(data: bytes) -> bool:
    return data.startswith(PNG_SIGNATURE)


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's header; raises PluginError when `data` is not a PNG."""
    if len(data) < 24 or not is_png(data) or data[12:16] != b"IHDR":
        raise PluginError("the server did not send back a PNG image")
    return struct.unpack(">II", data[16:24])


# ---- parameters, names and the server URL ---------------------------------------------------------
def build_params(
    iterations: int,
    strength: float = 1.0,
    preserve_colors: bool = False,
    size: int = 512,
    seed: int | None = None,
) -> dict:
    """Map the dialog's values onto the server's StyleParams dict; refuses nonsense with PluginError."""
    if isinstance(iterations, bool) or not isinstance(iterations, int) or not 1 <= iterations <= MAX_ITERATIONS:
        raise PluginError(f"iterations must be a whole number from 1 to {MAX_ITERATIONS}; got {iterations!r}")
    if (
        isinstance(strength, bool)
        or not isinstance(strength, (int, float))
        or not math.isfinite(strength)
        or not MIN_STRENGTH <= strength <= MAX_STRENGTH
    ):
        raise PluginError(f"style strength must be from {MIN_STRENGTH:g} to {MAX_STRENGTH:g}; got {strength!r}")
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_SIZE:
        raise PluginError(f"working size must be 0 (full size) or up to {MAX_SIZE} pixels; got {size!r}")
    params: dict = {
        "iterations": iterations,
        "style_weight": BASE_STYLE_WEIGHT * float(strength),
        "preserve_colors": bool(preserve_colors),
        "size": size,
    }
    if seed is not None and seed >= 0:  # seed -1 (or None): let the server pick
        params["seed"] = int(seed)
    return params


def style_label(style_path: str | None = None, style_name: str | None = None) -> str:
    """Human name of a style: the library's name, else the file name without extension, tidied."""
    if style_name and style_name.strip():
        text = style_name
    elif style_path:
        text = os.path.splitext(os.path.basename(style_path.rstrip("/\\")))[0]
    else:
        text = ""
    return " ".join(text.replace("_", " ").replace("-", " ").split()) or "style"


def style_layer_name(label: str, existing: set[str] | frozenset[str] = frozenset()) -> str:
    """The layer name "Style: <label>", cut to LAYER_NAME_MAX, made unique among `existing` by " #2", " #3"…"""
    base = f"Style: {label}"
    if len(base) > LAYER_NAME_MAX:
        base = base[: LAYER_NAME_MAX - 1].rstrip() + "…"
    name, n = base, 2
    while name in existing:
        name = f"{base} #{n}"
        n += 1
    return name


def check_server_url(url: str) -> str:
    """The server URL without surrounding blanks and trailing slashes; PluginError unless http(s) with a host."""
    url = (url or "").strip()
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("http", "https") or not rest.strip("/"):
        raise PluginError(f"the server URL must be http://host:port or https://host:port; got {url!r}")
    return url.rstrip("/")


# ---- progress ------------------------------------------------------------------------------------
def _num(value: object) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _total(status: dict) -> float | None:
    total = _num(status.get("total")) or _num(status.get("iterations"))
    return total if total is not None and total > 0 else None


def progress_fraction(status: dict | None) -> float | None:
    """0..1 from a server job status: `progress` when given, else iteration / total; None when unknown."""
    if not isinstance(status, dict):
        return None
    value = _num(status.get("progress"))
    if value is not None:
        return min(1.0, max(0.0, value / 100.0 if value > 1.0 else value))
    done, total = _num(status.get("iteration")), _total(status)
    if done is not None and total:
        return min(1.0, max(0.0, done / total))
    return None


def progress_text(status: dict | None, title: str = "") -> str:
    """One status line ("Iteration 3/200, about 12 s left", "Queued on the server (2 ahead)…", "Done").

    With a `title` the line reads "<title>: iteration 3/200, ..." and is just the title while nothing is known.
    """
    if not isinstance(status, dict):
        return title or "Waiting for the server…"
    state = status.get("state") or status.get("status") or ""
    state = state if isinstance(state, str) else ""
    done, total = status.get("iteration"), _total(status)
    if state == "queued":
        ahead = status.get("queue_position")
        ahead_text = f" ({ahead} ahead)" if isinstance(ahead, int) and not isinstance(ahead, bool) and ahead > 0 else ""
        text = f"queued on the server{ahead_text}…"
    elif isinstance(done, int) and not isinstance(done, bool) and total and (done > 0 or state == "running"):
        text = f"iteration {done}/{int(total)}"
        eta = _num(status.get("eta_s"))
        if state == "running" and eta is not None and eta > 0:
            text += f", about {math.ceil(eta)} s left"
    elif state:
        text = state + ("…" if state == "running" else "")
    else:
        return title or "Working…"
    return f"{title}: {text}" if title else text[0].upper() + text[1:]
