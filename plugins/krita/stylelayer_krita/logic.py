"""Pure logic of the Krita plug-in: no `krita` or Qt import, so the tests run it with a plain Python.

Krita-only parts live here: pixel conversions (Krita's BGRA <-> RGBA, 16 -> 8 bit), a stdlib PNG decoder, the
region to send (layer bounds, canvas and selection), selection masking and the presets. What the GIMP plug-in
shares (parameter limits and mapping, PNG encoding, layer naming, URL check, progress text) is in the vendored
`stylelayer_plugin_logic.py` and re-exported from here, so `logic.build_params` etc. keep working.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

# The logic shared with the GIMP plug-in (its vendored copy in this folder), re-exported: logic.build_params etc.
from .stylelayer_plugin_logic import *  # noqa: F403
from .stylelayer_plugin_logic import PluginError, build_params, png_size

# name -> (working size, iterations); the dialog's spin boxes start from these and may be edited.
PRESETS: dict[str, tuple[int, int]] = {
    "preview": (256, 60),
    "normal": (512, 200),
    "high": (1024, 500),
}
DEFAULT_PRESET = "normal"


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


# ---- PNG decoding (stdlib only; the Krita side uses QImage, which is much faster for big images) --------
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


def preset_params(preset: str, strength: float = 1.0, preserve_colors: bool = False, seed: int | None = None) -> dict:
    size, iterations = preset_values(preset)
    return build_params(iterations, strength, preserve_colors, size, seed)
