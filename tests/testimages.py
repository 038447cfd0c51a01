"""The real images the tests use, all inside the repository: tests/images/ (The Scream, The Shipwreck) and the
example images bundled with the package, server/stylelayer/assets/ (Tübingen, The Starry Night).

A module with its own name, not conftest: several conftest.py files exist and `import conftest` is ambiguous.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
TEST_IMAGES = REPO / "tests" / "images"
ASSETS = REPO / "server" / "stylelayer" / "assets"  # the examples bundled with the package
FOLDERS = (TEST_IMAGES, ASSETS)


def image_path(name: str) -> Path:
    """The file of the test image `name` ('tubingen', 'starry_night', 'the_scream', 'shipwreck')."""
    for folder in FOLDERS:
        path = folder / f"{name}.jpg"
        if path.is_file():
            return path
    raise FileNotFoundError(f"no test image {name}.jpg in {' or '.join(str(f) for f in FOLDERS)}")


def real_image(name: str, longest: int | None = None, mode: str = "RGB") -> Image.Image:
    """A real test image in `mode`, downscaled in memory so its longest side is at most `longest`."""
    with Image.open(image_path(name)) as img:
        img = img.convert(mode)
    if longest:
        img.thumbnail((longest, longest), Image.Resampling.LANCZOS)
    return img


def band_mask(size: tuple[int, int], top: float, bottom: float, feather: int = 0) -> Image.Image:
    """A region mask ('L') of `size`: white between the rows at fractions `top` and `bottom` of the height, black
    elsewhere, with linear ramps `feather` pixels wide outside those rows (a soft selection's edge)."""
    width, height = size
    y0, y1 = top * height, bottom * height
    ramp = max(feather, 1)
    rows = [max(0.0, min(1.0, 1 + min(y + 0.5 - y0, y1 - y - 0.5) / ramp)) for y in range(height)]
    column = Image.frombytes("L", (1, height), bytes(round(255 * v) for v in rows))
    return column.resize(size, Image.Resampling.NEAREST)
