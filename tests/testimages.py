"""Where the real test images are: ../shared/images beside the checkout (as in CI), else the bundled copies.

A module with its own name, not conftest: several conftest.py files exist and `import conftest` is ambiguous.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED_IMAGES = REPO.parent / "shared" / "images"
ASSETS = REPO / "server" / "stylelayer" / "assets"


def real_image(name: str, longest: int | None = None) -> Image.Image:
    """A real test image, downscaled in memory so its longest side is `longest`."""
    path = SHARED_IMAGES / f"{name}.jpg"
    if not path.is_file():
        path = ASSETS / f"{name}.jpg"
    img = Image.open(path).convert("RGB")
    if longest:
        img.thumbnail((longest, longest), Image.Resampling.LANCZOS)
    return img
