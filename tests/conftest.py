"""Shared fixtures: real test images from ../shared/images (downscaled in memory) and one loaded engine."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED_IMAGES = REPO.parent / "shared" / "images"
ASSETS = REPO / "server" / "stylelayer" / "assets"


def real_image(name: str, longest: int | None = None) -> Image.Image:
    """A real test image; falls back to the bundled copy when ../shared is absent."""
    path = SHARED_IMAGES / f"{name}.jpg"
    if not path.is_file():
        path = ASSETS / f"{name}.jpg"
    img = Image.open(path).convert("RGB")
    if longest:
        img.thumbnail((longest, longest), Image.Resampling.LANCZOS)
    return img


@pytest.fixture(scope="session")
def engine():
    """The real engine; STYLELAYER_TEST_DEVICE=cuda runs the core tests on a GPU."""
    from stylelayer.engine import StyleEngine

    return StyleEngine(weights="caffe", device=os.environ.get("STYLELAYER_TEST_DEVICE", "cpu"))


@pytest.fixture(scope="session")
def tubingen64() -> Image.Image:
    return real_image("tubingen", 64)


@pytest.fixture(scope="session")
def starry64() -> Image.Image:
    return real_image("starry_night", 64)
