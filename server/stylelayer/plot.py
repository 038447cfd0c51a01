"""Loss curves drawn with Pillow alone (log scale), so `--loss-plot` needs no plotting library."""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw

COLORS = {"total": (20, 20, 20), "content": (31, 119, 180), "style": (214, 39, 40), "tv": (44, 160, 44)}


def plot_losses(history: list[dict[str, float]], path: Path, size: tuple[int, int] = (800, 480)) -> None:
    """One line per loss term, iteration on x, log10(loss) on y; terms that stay 0 are left out."""
    width, height = size
    left, right, top, bottom = 70, 20, 20, 40
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    series = {k: [math.log10(h[k]) if h.get(k, 0) > 0 else None for h in history] for k in COLORS}
    series = {k: v for k, v in series.items() if any(x is not None for x in v)}
    values = [x for v in series.values() for x in v if x is not None]
    draw.rectangle([left, top, width - right, height - bottom], outline=(160, 160, 160))
    if not values:
        draw.text((left + 10, top + 10), "no losses recorded", fill="black")
        img.save(path)
        return
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
            draw.line(line, fill=COLORS[name], width=2)
        draw.text((width - right - 90, top + 8 + 14 * row), name, fill=COLORS[name])
    img.save(path)
