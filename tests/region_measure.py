"""The measure of "each region is its own style" (Gatys et al. 2017), one source for the engine's test
(tests/core/test_regions.py) and the real Krita and GIMP tests: in a region, the image's guided Gram matrices (the
features times the region's mask, over the mask's area) are nearer its own style's Gram matrices than the other
style's, at every style layer."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image
from torch import Tensor

from stylelayer.core import imaging
from stylelayer.core.engine import StyleEngine
from stylelayer.core.losses import gram_matrix, positions
from stylelayer.core.regions import layer_masks, level_mask

LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")


def guided_grams(engine: StyleEngine, image: Image.Image, mask: Image.Image | None) -> dict[str, Tensor]:
    """Per layer: G/M of the whole image (mask None), or the guided Gram matrix over the mask's area."""
    x = imaging.to_tensor(image.convert("RGB"), engine.device)
    with torch.no_grad():
        feats = engine.model(x, LAYERS, "avg")
        if mask is None:
            return {layer: gram_matrix(f) / positions(f) for layer, f in feats.items()}
        masks = layer_masks(level_mask(mask, image.size, engine.device), LAYERS)
        return {layer: gram_matrix(feats[layer] * m) / m.square().sum() for layer, m in masks.items()}


def scaled_like_the_engine(style: Image.Image, size: tuple[int, int]) -> Image.Image:
    """A style as the engine scales it for a work of `size`: to the work's longest side."""
    factor = max(size) / max(style.size)
    return style.resize((round(style.width * factor), round(style.height * factor)), Image.Resampling.LANCZOS)


def region_misses(
    engine: StyleEngine, image: Image.Image, regions: Sequence[tuple[Image.Image, Image.Image, Image.Image]]
) -> list[str]:
    """For (mask, own style, other style) per region: each region and layer where `image`'s guided Gram matrices
    are NOT nearer the own style's than the other's, as 'region N at LAYER: own >= other'; [] when all are."""
    misses = []
    for number, (mask, own, other) in enumerate(regions, 1):
        grams = guided_grams(engine, image, mask)
        targets = [guided_grams(engine, scaled_like_the_engine(style, image.size), None) for style in (own, other)]
        for layer in LAYERS:
            to_own = float((grams[layer] - targets[0][layer]).norm())
            to_other = float((grams[layer] - targets[1][layer]).norm())
            if not to_own < to_other:
                misses.append(f"region {number} at {layer}: {to_own:.3g} >= {to_other:.3g}")
    return misses
