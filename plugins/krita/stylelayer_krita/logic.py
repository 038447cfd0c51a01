"""Pure logic of the Krita plug-in: no `krita` or Qt import, so the tests run it with a plain Python.

Pixel conversions (Krita's BGRA <-> RGBA, 16 -> 8 bit), a stdlib PNG codec, the region to send (layer bounds,
canvas and selection), selection masking, preset -> server parameter mapping, layer naming and progress text.
"""

from __future__ import annotations

import math
import os
import struct
import zlib
from dataclasses import dataclass

DEFAULT_SERVER_URL = "http://127.0.0.1:8765"
MAX_SIZE = 4096
MAX_ITERATIONS = 10_000
BASE_STYLE_WEIGHT = 1e4  # = StyleParams.style_weight default (a test checks): style strength 1.0 means it
MIN_STRENGTH = 0.01
MAX_STRENGTH = 100.0
LAYER_NAME_MAX = 64
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# name -> (working size, iterations); the dialog's spin boxes start from these and may be edited.
PRESETS: dict[str, tuple[int, int]] = {
    "preview": (256, 60),
    "normal": (512, 200),
    "high": (1024, 500),
}
DEFAULT_PRESET = "normal"


class PluginError(Exception):
    """A failure worth showing to the painter as it is."""


# ---- pixel formats ---------------------------------------------------------------------------------------
SUPPORTED_DEPTHS = {"U8": 1, "U16": 2}


def bytes_per_channel(model: str, depth: str, what: str = "The active layer") -> int:
    """1 or 2 for RGBA/U8 and RGBA/U16 (converted on the fly); PluginError naming the fix otherwise."""
    if model == "RGBA" and depth in SUPPORTED_DEPTHS:
        return SUPPORTED_DEPTHS[depth]
    raise PluginError(
        f"{what} uses the colour space {model}/{depth}; style transfer works on RGB/Alpha with 8- or 16-bit "
        "integer channels. Convert it first (Image > Convert Image Color Space…, RGB/Alpha, 8-bit integer)."
    )


def swap_red_blue(pixels: bytes) -> bytes:
    """BGRA <-> RGBA for 8-bit pixels (the same swap both ways)."""
    if len(pixels) % 4:
        raise ValueError(f"4 bytes a pixel expected; got {len(pixels)} bytes")
    out = bytearray(pixels)
    out[0::4] = pixels[2::4]
    out[2::4] = pixels[0::4]
    return bytes(out)


def bgra_to_rgba(pixels: bytes) -> bytes:
    return swap_red_blue(pixels)


def rgba_to_bgra(pixels: bytes) -> bytes:
    return swap_red_blue(pixels)


def u16_to_u8(pixels: bytes) -> bytes:
    """Little-endian 16-bit channels -> 8-bit: the high byte of each (65535 -> 255, 0 -> 0)."""
    if len(pixels) % 2:
        raise ValueError("16-bit data must have an even length")
    return bytes(pixels[1::2])


def u8_to_u16(pixels: bytes) -> bytes:
    """8-bit channels -> little-endian 16-bit: v * 257, so 255 -> 65535 and the round trip is exact."""
    out = bytearray(len(pixels) * 2)
    out[0::2] = pixels
    out[1::2] = pixels
    return bytes(out)


def from_krita(raw: bytes, channel_bytes: int) -> bytes:
    """Krita pixelData (BGRA, 8 or 16 bit) -> RGBA 8-bit."""
    return bgra_to_rgba(u16_to_u8(raw) if channel_bytes == 2 else bytes(raw))


def to_krita(rgba: bytes, channel_bytes: int) -> bytes:
    """RGBA 8-bit -> Krita setPixelData bytes (BGRA, 8 or 16 bit)."""
    bgra = rgba_to_bgra(rgba)
    return u8_to_u16(bgra) if channel_bytes == 2 else bgra


# ---- PNG (stdlib only; the Krita side uses QImage, which is much faster for big images) ---------------------
def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(width: int, height: int, rgba: bytes, level: int = 6) -> bytes:
    """8-bit RGBA PNG of `rgba` (rows top to bottom)."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive; got {width}x{height}")
    stride = width * 4
    if len(rgba) != stride * height:
        raise ValueError(f"expected {stride * height} bytes for {width}x{height} RGBA; got {len(rgba)}")
    view = memoryview(rgba)
    raw = b"".join(b"\x00" + view[y * stride : (y + 1) * stride] for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, level)) + _chunk(b"IEND", b"")


def png_size(data: bytes) -> tuple[int, int]:
    if len(data) < 24 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        raise PluginError("the server did not send back a PNG image")
    return struct.unpack(">II", data[16:24])


def decode_png(data: bytes) -> tuple[int, int, bytes]:
    """(width, height, RGBA bytes) of an 8-bit, non-interlaced grey/grey+alpha/RGB/RGBA PNG (pure Python)."""
    width, height = png_size(data)
    pos, idat, header = 8, [], b""
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    depth, color_type, _, _, interlace = header[8:13]
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(color_type)
    if depth != 8 or channels is None or interlace:
        raise PluginError(f"unsupported PNG (bit depth {depth}, colour type {color_type}, interlace {interlace})")
    raw = zlib.decompress(b"".join(idat))
    bpp, stride = channels, width * channels
    prev = bytearray(stride)
    rows = []
    for y in range(height):
        start = y * (stride + 1)
        ftype, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        if ftype == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif ftype == 2:
            for i in range(stride):
                line[i] = (line[i] + prev[i]) & 0xFF
        elif ftype == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif ftype == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b = prev[i]
                c = prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 0xFF
        elif ftype != 0:
            raise PluginError(f"corrupt PNG: filter type {ftype}")
        rows.append(bytes(line))
        prev = line
    pixels = b"".join(rows)
    if channels == 4:
        return width, height, pixels
    out = bytearray(width * height * 4)
    if channels == 3:
        for c in range(3):
            out[c::4] = pixels[c::3]
        out[3::4] = b"\xff" * (width * height)
    elif channels == 1:
        for c in range(3):
            out[c::4] = pixels
        out[3::4] = b"\xff" * (width * height)
    else:
        for c in range(3):
            out[c::4] = pixels[0::2]
        out[3::4] = pixels[1::2]
    return width, height, bytes(out)


# ---- regions and masks ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rect:
    x: int
    y: int
    width: int
    height: int

    @property
    def empty(self) -> bool:
        return self.width <= 0 or self.height <= 0

    def intersect(self, other: Rect) -> Rect:
        x0, y0 = max(self.x, other.x), max(self.y, other.y)
        x1 = min(self.x + self.width, other.x + other.width)
        y1 = min(self.y + self.height, other.y + other.height)
        return Rect(x0, y0, max(0, x1 - x0), max(0, y1 - y0))

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.x, self.y, self.width, self.height)


def source_region(layer: Rect, canvas: Rect, selection: Rect | None) -> Rect:
    """The pixels to stylise: the layer's extent on the canvas, cut to the selection's bounds if any."""
    region = layer.intersect(canvas)
    if region.empty:
        raise PluginError("The active layer is empty on the canvas: there is nothing to stylise.")
    if selection is not None:
        region = region.intersect(selection)
        if region.empty:
            raise PluginError("The selection does not overlap the active layer's pixels: nothing to stylise.")
    return region


def apply_mask(rgba: bytes, mask: bytes | None) -> bytes:
    """Multiply alpha by a selection mask (one byte a pixel, 255 = fully selected), rounding to nearest."""
    if mask is None:
        return bytes(rgba)
    if len(mask) * 4 != len(rgba):
        raise ValueError(f"mask has {len(mask)} pixels but the image {len(rgba) // 4}")
    if mask.count(255) == len(mask):
        return bytes(rgba)
    out = bytearray(rgba)
    alpha = out[3::4]
    for i, m in enumerate(mask):
        if m != 255:
            alpha[i] = (alpha[i] * m + 127) // 255
    out[3::4] = alpha
    return bytes(out)


# ---- parameters and names ------------------------------------------------------------------------------
def preset_values(name: str) -> tuple[int, int]:
    """(working size, iterations) of a preset."""
    try:
        return PRESETS[name]
    except KeyError:
        raise PluginError(f"unknown preset {name!r} (choose {', '.join(PRESETS)})") from None


def build_params(
    iterations: int,
    strength: float = 1.0,
    preserve_colors: bool = False,
    size: int = 512,
    seed: int | None = None,
) -> dict:
    """The dialog's values -> the server's StyleParams dict; PluginError for nonsense."""
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
    if seed is not None and seed >= 0:
        params["seed"] = int(seed)
    return params


def preset_params(preset: str, strength: float = 1.0, preserve_colors: bool = False, seed: int | None = None) -> dict:
    size, iterations = preset_values(preset)
    return build_params(iterations, strength, preserve_colors, size, seed)


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
    """"Style: <label>", shortened to LAYER_NAME_MAX and made unique among `existing` with " #2", " #3"…"""
    base = f"Style: {label}"
    if len(base) > LAYER_NAME_MAX:
        base = base[: LAYER_NAME_MAX - 1].rstrip() + "…"
    name, n = base, 2
    while name in existing:
        name = f"{base} #{n}"
        n += 1
    return name


def check_server_url(url: str) -> str:
    url = (url or "").strip()
    if not url.startswith(("http://", "https://")) or len(url) <= len("https://"):
        raise PluginError(f"the server URL must start with http:// or https://; got {url!r}")
    return url.rstrip("/")


# ---- progress ------------------------------------------------------------------------------------------
def _num(value: object) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def progress_fraction(status: dict | None) -> float | None:
    """0..1 from a job status: `progress` when given, else iteration / total (or iterations)."""
    if not isinstance(status, dict):
        return None
    value = _num(status.get("progress"))
    if value is not None:
        return min(1.0, max(0.0, value / 100.0 if value > 1.0 else value))
    done = _num(status.get("iteration"))
    total = _num(status.get("total")) or _num(status.get("iterations"))
    if done is not None and total:
        return min(1.0, max(0.0, done / total))
    return None


def progress_text(status: dict | None) -> str:
    if not isinstance(status, dict):
        return "Waiting for the server…"
    state = status.get("state") or status.get("status") or ""
    done = status.get("iteration")
    total = status.get("total") or status.get("iterations")
    if state == "queued":
        return "Queued on the server…"
    if isinstance(done, int) and isinstance(total, int) and total > 0:
        eta = _num(status.get("eta_s"))
        suffix = f", about {math.ceil(eta)} s left" if eta is not None and state == "running" else ""
        return f"Iteration {done} / {total}{suffix}"
    return f"{state.capitalize()}…" if isinstance(state, str) and state else "Working…"
