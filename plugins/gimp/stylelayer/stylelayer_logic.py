"""Pure logic of the GIMP plug-in: no `gi` import, so it is tested with plain Python.

PNG encoding (stdlib zlib + struct), parameter mapping, layer naming, progress arithmetic and a job runner
that keeps the HTTP polling off GIMP's main thread so the plug-in can pump its UI and honour Cancel.
"""

from __future__ import annotations

import math
import os
import struct
import threading
import zlib

DEFAULT_SERVER_URL = "http://127.0.0.1:8765"
DEFAULT_ITERATIONS = 200
DEFAULT_SIZE = 512
MAX_SIZE = 4096
MAX_ITERATIONS = 10_000
BASE_STYLE_WEIGHT = 1e4  # = StyleParams.style_weight default (a test checks): "style strength" 1.0 means it
MIN_STRENGTH = 0.01
MAX_STRENGTH = 100.0
MAX_STYLE_SIDE = 2048  # a style image larger than this is scaled down before it is sent
LAYER_NAME_MAX = 64

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class PluginError(Exception):
    """A failure worth showing to the painter as it is (the plug-in returns EXECUTION_ERROR with it)."""


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


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's header; raises PluginError when `data` is not a PNG."""
    if len(data) < 24 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        raise PluginError("the server did not send back a PNG image")
    return struct.unpack(">II", data[16:24])


def is_png(data: bytes) -> bool:
    return data.startswith(PNG_SIGNATURE)


def rgba_to_rgb(pixels: bytes) -> bytes:
    """Drop every fourth byte (alpha) of RGBA pixel data."""
    out = bytearray(len(pixels) // 4 * 3)
    out[0::3] = pixels[0::4]
    out[1::3] = pixels[1::4]
    out[2::3] = pixels[2::4]
    return bytes(out)


# ---- parameters and names ------------------------------------------------------------------------
def build_params(
    iterations: int,
    strength: float,
    preserve_colors: bool,
    size: int,
    seed: int | None = None,
) -> dict:
    """Map the dialog's values onto the server's StyleParams dict; refuses nonsense with PluginError."""
    if isinstance(iterations, bool) or not isinstance(iterations, int) or not 1 <= iterations <= MAX_ITERATIONS:
        raise PluginError(f"iterations must be a whole number from 1 to {MAX_ITERATIONS}; got {iterations!r}")
    if (
        isinstance(strength, bool)
        or not isinstance(strength, int | float)
        or not math.isfinite(strength)
        or not MIN_STRENGTH <= strength <= MAX_STRENGTH
    ):
        raise PluginError(f"style strength must be from {MIN_STRENGTH:g} to {MAX_STRENGTH:g}; got {strength!r}")
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_SIZE:
        raise PluginError(f"working size must be 0 (full size) or up to {MAX_SIZE} pixels; got {size!r}")
    params = {
        "iterations": iterations,
        "style_weight": BASE_STYLE_WEIGHT * float(strength),
        "preserve_colors": bool(preserve_colors),
        "size": size,
    }
    if seed is not None and seed >= 0:
        params["seed"] = int(seed)
    return params


def style_layer_name(style_path: str, existing: set[str] | frozenset[str] = frozenset()) -> str:
    """Layer name from the style file ("starry_night.jpg" -> "Style: starry night"), unique in `existing`."""
    stem = os.path.splitext(os.path.basename(style_path.rstrip("/\\")))[0]
    stem = " ".join(stem.replace("_", " ").replace("-", " ").split()) or "style"
    base = f"Style: {stem}"
    if len(base) > LAYER_NAME_MAX:
        base = base[: LAYER_NAME_MAX - 1].rstrip() + "…"
    name, n = base, 2
    while name in existing:
        name = f"{base} #{n}"
        n += 1
    return name


def check_server_url(url: str) -> str:
    url = (url or "").strip()
    if not url.startswith(("http://", "https://")) or len(url) <= len("http://"):
        raise PluginError(f"server URL must start with http:// or https://; got {url!r}")
    return url.rstrip("/")


def scaled_to_fit(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(width, height) scaled down (never up) so the longer side is at most `max_side`."""
    longest = max(width, height)
    if longest <= max_side:
        return width, height
    factor = max_side / longest
    return max(1, round(width * factor)), max(1, round(height * factor))


# ---- progress ------------------------------------------------------------------------------------
def _total(status: dict):
    total = status.get("total", status.get("iterations"))
    return total if isinstance(total, int | float) and not isinstance(total, bool) and total > 0 else None


def progress_fraction(status: dict | None) -> float | None:
    """0..1 from a server job status: `progress` when given, else iteration / total; None when unknown."""
    if not isinstance(status, dict):
        return None
    value = status.get("progress")
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return min(1.0, max(0.0, value / 100.0 if value > 1.0 else float(value)))
    done, total = status.get("iteration"), _total(status)
    if isinstance(done, int | float) and not isinstance(done, bool) and total:
        return min(1.0, max(0.0, done / total))
    return None


def progress_text(status: dict | None) -> str:
    """One status line: "iteration 3/200, about 12 s left", "queued (2 ahead)", ..."""
    title = "Neural style transfer"
    if not isinstance(status, dict):
        return title
    state = status.get("state") or status.get("status") or ""
    if state == "queued":
        ahead = status.get("queue_position")
        return f"{title}: queued" + (f" ({ahead} ahead)" if isinstance(ahead, int) and ahead > 0 else "")
    done, total = status.get("iteration"), _total(status)
    if isinstance(done, int) and total and (done > 0 or state == "running"):
        text = f"{title}: iteration {done}/{int(total)}"
        eta = status.get("eta_s")
        if isinstance(eta, int | float) and not isinstance(eta, bool) and eta > 0:
            text += f", about {math.ceil(eta)} s left"
        return text
    return f"{title}: {state}" if state else title


class JobRunner:
    """Runs `work(on_progress, should_cancel)` in a thread; the caller's (GIMP main) thread polls it.

    GIMP's API is only called from the main thread: it reads `fraction`/`text` and calls `cancel()`.
    """

    def __init__(self, work):
        self._work = work
        self._cancel = threading.Event()
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._fraction: float | None = None
        self._text = "Neural style transfer"
        self.result = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="stylelayer-job", daemon=True)

    def start(self) -> JobRunner:
        self._thread.start()
        return self

    def _on_progress(self, status, _preview=None):
        with self._lock:
            fraction = progress_fraction(status)
            if fraction is not None:
                self._fraction = fraction
            self._text = progress_text(status)

    def _run(self):
        try:
            self.result = self._work(self._on_progress, self._cancel.is_set)
        except BaseException as exc:  # handed to the main thread, which reports it
            self.error = exc
        finally:
            self._done.set()

    @property
    def fraction(self) -> float | None:
        with self._lock:
            return self._fraction

    @property
    def text(self) -> str:
        with self._lock:
            return self._text

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def cancel(self) -> None:
        self._cancel.set()

    def wait(self, timeout: float) -> bool:
        """True once the work has finished (successfully or not)."""
        return self._done.wait(timeout)
