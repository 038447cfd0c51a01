"""Regions of the content, each painted by its own styles (Gatys et al., "Controlling Perceptual Factors in Neural
Style Transfer", CVPR 2017): the masks the guided Gram terms (`terms.GuidedGramStyle`) see at each level and layer.

A mask is soft (0..1, feathered edges allowed): its grey level times its alpha, so a white-on-black selection and a
layer's alpha both work. It is stretched over the content whatever its own size. Where masks overlap, each region's
style pulls on the overlap in proportion to its mask. What no region covers (1 − Σ masks, clipped at 0) takes the
job's global styles if it has any (where some pixel is less than half covered), and otherwise keeps the content:
only the content and total variation terms act there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from PIL import Image, ImageChops
from torch import Tensor

from .vgg import layer_stride


class RegionError(ValueError):
    """A region that cannot run; `number` (1-based, as painters count) and `what` ('mask' or 'style') name it."""

    def __init__(self, number: int, what: str, message: str):
        super().__init__(message)
        self.number, self.what = number, what


@dataclass(frozen=True)
class Region:
    """A soft mask over the content (see `grey`) and the styles that paint it; `blend`: one weight per style (None:
    equal). The job's `region_weights` parameter weighs the regions against each other."""

    mask: Image.Image
    styles: tuple[Image.Image, ...]
    blend: tuple[float, ...] | None = None

    def blend_weights(self) -> list[float]:
        if self.blend is None:
            return [1.0 / len(self.styles)] * len(self.styles)
        total = sum(self.blend)
        return [w / total for w in self.blend]


def check_regions(regions: Sequence[Region]) -> None:
    """Refuse regions that cannot run (RegionError naming the region)."""
    for number, region in enumerate(regions, 1):
        if not region.styles:
            raise RegionError(number, "style", f"region {number} has no style image")
        if region.blend is not None and (len(region.blend) != len(region.styles) or sum(region.blend) <= 0):
            raise RegionError(number, "style", f"region {number}: give one blend weight per style, not all zero")
        if grey(region.mask).getextrema()[1] == 0:
            raise RegionError(
                number,
                "mask",
                f"region {number}'s mask is empty (black or transparent): it covers no part of the image",
            )


def size_notes(regions: Sequence[Region], size: tuple[int, int]) -> list[str]:
    """What a painter should know about masks that are not the content's (width, height): they are stretched."""
    return [
        f"region {number}'s mask is {region.mask.width}x{region.mask.height} px, the content {size[0]}x{size[1]}:"
        " the mask is stretched over the content"
        for number, region in enumerate(regions, 1)
        if region.mask.size != size
    ]


def grey(mask: Image.Image) -> Image.Image:
    """The mask as 'L': its grey level, times its alpha where it has one."""
    if mask.mode in ("RGBA", "LA", "PA") or (mask.mode == "P" and "transparency" in mask.info):
        rgba = mask.convert("RGBA")
        return ImageChops.multiply(rgba.convert("L"), rgba.getchannel("A"))
    return mask.convert("L")


def level_mask(mask: Image.Image, size: tuple[int, int], device: torch.device) -> Tensor:
    """The mask at a level's (width, height) as a (1, 1, H, W) tensor in 0..1 (antialiased when shrunk)."""
    grey_mask = grey(mask)
    if grey_mask.size != size:
        grey_mask = grey_mask.resize(size, Image.Resampling.BILINEAR)
    pixels = torch.frombuffer(bytearray(grey_mask.tobytes()), dtype=torch.uint8).view(1, 1, size[1], size[0])
    return pixels.to(device, torch.float32) / 255.0


def uncovered(masks: Sequence[Tensor]) -> Tensor:
    """What no region covers: 1 − Σ masks, clipped to 0..1."""
    return (1.0 - torch.stack(list(masks)).sum(dim=0)).clamp(0.0, 1.0)


def layer_masks(mask: Tensor, layers: Sequence[str]) -> dict[str, Tensor]:
    """The mask on each layer's feature grid: averaged over the stride's cells, as the average pooling between
    VGG's blocks shrinks the features (and cut to the same floor(H / stride) rows and columns)."""
    return {layer: F.avg_pool2d(mask, layer_stride(layer)) if layer_stride(layer) > 1 else mask for layer in layers}
