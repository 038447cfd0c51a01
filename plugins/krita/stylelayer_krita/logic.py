"""Pure logic of the Krita plug-in: no `krita` or Qt import, so the tests run it with a plain Python.

Krita-only parts live here: pixel conversions (Krita's BGRA <-> RGBA, 16 -> 8 bit), the region to send (layer
bounds, canvas and selection), selection masking, which layer the dialog targets and the loss curve's geometry.
What the GIMP plug-in shares (the workflow, parameters, PNG, selection feathering, status lines, messages, the
token) is in the stylelayer_*.py modules that the installer copies into this package from plugins/common.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from stylelayer_messages import PluginError

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
    return swap_red_blue(u16_to_u8(raw) if channel_bytes == 2 else bytes(raw))


def to_krita(rgba: bytes, channel_bytes: int) -> bytes:
    """RGBA 8-bit -> Krita setPixelData bytes (BGRA, 8 or 16 bit)."""
    bgra = swap_red_blue(rgba)
    return u8_to_u16(bgra) if channel_bytes == 2 else bgra


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


# ---- the dialog's target -------------------------------------------------------------------------------------
def follow_target(target: str | None, active: str | None, created: str | None) -> tuple[str | None, str | None]:
    """(target, created) after Krita's active layer is seen to be `active` (ids of layers).

    The dialog processes the layer the painter chose: it follows the active layer, except to the layer its own
    last run `created` (Krita may make that one active), so a second Apply stylises the original again, not the
    result. Once the painter picks another layer, that exception ends: picking the result later targets it.
    """
    if active is None or active == target:
        return target, created
    if active == created:
        return target, created
    return active, None


# ---- loss curve -------------------------------------------------------------------------------------------
def loss_polyline(values: list, width: float, height: float, margin: float = 4.0) -> list[tuple[float, float]]:
    """Widget coordinates of a loss curve: iteration on x, log10(loss) on y (top = highest), within `margin`.

    Losses span orders of magnitude, hence the log scale; values that are missing, 0 or not finite (a diverged
    loss is null in the server's JSON) are left out, so what is drawn is always a plain polyline.
    """
    logs = [
        (i, math.log10(v)) for i, v in enumerate(values) if isinstance(v, (int, float)) and math.isfinite(v) and v > 0
    ]
    if not logs:
        return []
    lo, hi = min(y for _, y in logs), max(y for _, y in logs)
    span_x, span_y = max(len(values) - 1, 1), (hi - lo) or 1.0
    inner_w, inner_h = width - 2 * margin, height - 2 * margin
    return [(margin + inner_w * i / span_x, margin + inner_h * (hi - y) / span_y) for i, y in logs]
