"""Shared fixtures: real test images (see testimages.py), one loaded engine, and one Ray pool for the session
(ray_helpers.py: defined here once, so tests/protocol and tests/workers share it)."""

from __future__ import annotations

import os

import pytest
from PIL import Image
from ray_helpers import ray_pool  # noqa: F401  (fixture)
from testimages import real_image


@pytest.fixture(scope="session")
def engine():
    """The real engine; STYLELAYER_TEST_DEVICE=cuda runs the core tests on a GPU."""
    from stylelayer.core.engine import StyleEngine

    return StyleEngine(weights="caffe", device=os.environ.get("STYLELAYER_TEST_DEVICE", "cpu"))


@pytest.fixture(scope="session")
def tubingen64() -> Image.Image:
    return real_image("tubingen", 64)


@pytest.fixture(scope="session")
def starry64() -> Image.Image:
    return real_image("starry_night", 64)
