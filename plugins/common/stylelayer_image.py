"""The image side of a run, without a host: the PNG bytes sent and received, the selection's mask (a hard edge
feathered inwards), and the new layer's name and place in the stack.

Standard library only, Python 3.8: it runs in Krita's and GIMP's own Python. `stylelayer install-plugin`
copies it from plugins/common into each plug-in's folder.
"""

from __future__ import annotations

import os
import struct
import zlib

from stylelayer_messages import PluginError

LAYER_NAME_MAX = 64
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EDGE_FEATHER = 6  # pixels over which a hard-edged selection fades in, inside its edge


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


# ---- the new layer -----------------------------------------------------------------------------
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


def insert_above(names: list[str], target: int) -> int:
    """Where a new result goes, given the names of the target's siblings bottom to top: the index of the layer
    it goes directly above. That is the target, or the topmost of the results ("Style: …") stacked right above it
    by earlier runs, so the newest result is the one the painter sees."""
    top = target
    while top + 1 < len(names) and names[top + 1].startswith("Style: "):
        top += 1
    return top


# ---- selection masks ------------------------------------------------------------------------------
def clear_outside(rgba: bytes, mask: bytes) -> bytes:
    """RGBA pixels with alpha 0 where the selection `mask` (one byte a pixel) is 0: the result layer is transparent
    outside the selection even with its layer mask disabled; inside, its own alpha is kept (the mask fades it)."""
    if len(mask) * 4 != len(rgba):
        raise ValueError(f"mask has {len(mask)} pixels but the image {len(rgba) // 4}")
    out = bytearray(rgba)
    alpha = out[3::4]
    out[3::4] = bytes(a if m else 0 for a, m in zip(alpha, mask))  # lengths checked above
    return bytes(out)


def mask_is_hard(mask: bytes) -> bool:
    """True when a selection mask has only fully selected and unselected pixels (no feather of its own)."""
    return not mask.translate(None, b"\x00\xff")


def feather_mask(mask: bytes, width: int, height: int, radius: int = EDGE_FEATHER, open_edges=(False,) * 4) -> bytes:
    """A hard selection mask (0/255, one byte a pixel, rows top to bottom) faded in over `radius` pixels inside
    its edge, so the new layer blends into the picture instead of ending in a seam; outside stays 0.

    `open_edges` (left, top, right, bottom): True where the selection goes on beyond the mask (the region was cut
    there by the layer's or the canvas's edge, which is no selection edge); elsewhere beyond the mask is
    unselected. Fast in plain Python: the erosions run on the whole mask as one big integer.
    """
    if len(mask) != width * height:
        raise ValueError(f"mask has {len(mask)} bytes for {width}x{height}")
    radius = max(0, min(int(radius), min(width, height) // 4))
    if radius == 0 or not mask_is_hard(mask):
        return bytes(mask)
    pad = radius + 1
    wide = width + 2 * pad
    left, top, right, bottom = open_edges
    blank = b"\x00" * pad
    rows = []
    for y in range(height):  # padded with copies of the edge pixels where open, so only selection edges erode
        row = mask[y * width : (y + 1) * width]
        rows.append((row[:1] * pad if left else blank) + row + (row[-1:] * pad if right else blank))
    rows = [rows[0] if top else b"\x00" * wide] * pad + rows + [rows[-1] if bottom else b"\x00" * wide] * pad
    frame = b"\x00" + b"\x00".join(rows) + b"\x00"  # one 0 column between rows stops sideways wrap-around
    stride = wide + 1
    level = int.from_bytes(frame, "big")
    ones = int.from_bytes(b"\x01" * len(frame), "big")
    total = level & ones  # per byte: how many erosions the pixel survived (plus one for itself)
    for _ in range(radius - 1):
        step = 8 * stride
        level &= (level << 8) & (level >> 8) & (level << step) & (level >> step)  # 4-neighbour erosion
        total += level & ones
    counts = total.to_bytes(len(frame), "big")
    table = bytes(min(255, (255 * c + radius // 2) // radius) for c in range(256))
    out = bytearray()
    for y in range(pad, pad + height):
        start = 1 + y * stride + pad
        out += counts[start : start + width]
    return bytes(out.translate(table))


def open_edges(region: tuple, selection: tuple, canvas: tuple) -> tuple:
    """(left, top, right, bottom): True where an edge of `region` is no edge of the selection: the selection's
    bounds go on beyond it (the layer's edge cut it), or it is the canvas's edge. All three are (x, y, w, h)."""
    rx, ry, rw, rh = region
    sx, sy, sw, sh = selection
    cx, cy, cw, ch = canvas
    return (
        sx < rx or rx <= cx,
        sy < ry or ry <= cy,
        sx + sw > rx + rw or rx + rw >= cx + cw,
        sy + sh > ry + rh or ry + rh >= cy + ch,
    )
