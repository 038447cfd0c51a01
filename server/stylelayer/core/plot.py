"""Loss curves drawn with Pillow alone (log scale): the CLI's `--loss-plot` and the server's
`GET /v1/jobs/{id}/losses.png` both draw with `draw_losses`, so they look the same and need no plotting library."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from PIL import Image, ImageDraw

COLORS = {"total": (20, 20, 20), "content": (31, 119, 180), "style": (214, 39, 40), "tv": (44, 160, 44)}
OTHER_COLORS = [(255, 127, 14), (148, 103, 189), (140, 86, 75), (227, 119, 194), (188, 189, 34), (23, 190, 207)]


History = Sequence[Mapping[str, float | None]]  # one {term name: loss, ..., "total": ...} per iteration


def plot_losses(history: History, path: Path, size: tuple[int, int] = (800, 480)) -> None:
    """Save the loss curves as an image file (the CLI's --loss-plot)."""
    draw_losses(history, size).save(path)


def loss_plot_png(history: History, size: tuple[int, int] = (800, 480)) -> bytes:
    """The loss curves as PNG bytes (the server's losses.png)."""
    out = io.BytesIO()
    draw_losses(history, size).save(out, format="PNG")
    return out.getvalue()


def draw_losses(history: History, size: tuple[int, int] = (800, 480)) -> Image.Image:
    """One line per loss term, named as the terms are (`objective.Objective.totals`), iteration on x, log10(loss)
    on y; terms that stay 0 (or are never finite) are left out, and a point that is missing, 0 or not finite (a
    diverged loss, null in JSON) breaks nothing."""
    width, height = size
    left, right, top, bottom = 70, 20, 20, 40
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    names = list(dict.fromkeys(name for h in history for name in h))
    colors = dict(zip([n for n in names if n not in COLORS], OTHER_COLORS * len(names), strict=False)) | COLORS
    series = {k: [_log10(h.get(k)) for h in history] for k in names}
    series = {k: v for k, v in series.items() if any(x is not None for x in v)}
    values = [x for v in series.values() for x in v if x is not None]
    draw.rectangle([left, top, width - right, height - bottom], outline=(160, 160, 160))
    if not values:
        draw.text((left + 10, top + 10), "no losses recorded", fill="black")
        return img
    lo, hi = math.floor(min(values)), math.ceil(max(values))
    hi = hi if hi > lo else lo + 1
    n = max(len(history) - 1, 1)

    def xy(i: int, value: float) -> tuple[float, float]:
        x = left + (width - left - right) * i / n
        y = height - bottom - (height - top - bottom) * (value - lo) / (hi - lo)
        return x, y

    for decade in range(lo, hi + 1):
        _, y = xy(0, decade)
        draw.line([left, y, width - right, y], fill=(230, 230, 230))
        draw.text((8, y - 6), f"1e{decade}", fill="black")
    draw.text((left, height - bottom + 8), "iteration 1", fill="black")
    draw.text((width - right - 80, height - bottom + 8), f"iteration {len(history)}", fill="black")
    for row, (name, points) in enumerate(series.items()):
        line = [xy(i, v) for i, v in enumerate(points) if v is not None]
        if len(line) > 1:
            draw.line(line, fill=colors[name], width=2)
        draw.text((width - right - 90, top + 8 + 14 * row), name, fill=colors[name])
    return img


def _log10(value: float | None) -> float | None:
    if value is None or not math.isfinite(value) or value <= 0:
        return None
    return math.log10(value)
