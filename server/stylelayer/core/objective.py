"""The loss of a generated image and its gradient: over the whole image at once, or tile by tile, exactly.

Content and total variation are local. The style loss depends on the whole image only through each layer's Gram
matrix, a sum over positions: a first pass without gradients accumulates it tile by tile (`tiling.tiled_grams`); a
second pass back-propagates each tile with the whole image's residual (G/M − T) held fixed
(`losses.style_gradient_surrogate`), so the tiles' gradients add up to the whole image's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch
from torch import Tensor

from .losses import content_loss, style_gradient_surrogate, style_layer_loss, style_loss_from_gram, tv_terms
from .tiling import RaiseIfCancelled, Tile, TileProgress, tiled_grams
from .vgg import VGG19Features, layer_stride

_TV_UNITS = 255.0**2  # total variation is measured on 0..255 pixels, as the default weights assume


@dataclass
class Terms:
    """What an evaluation needs besides the image: the network, targets, weights and units of one level."""

    model: VGG19Features
    pooling: str
    autocast: Callable[[], AbstractContextManager]
    style_targets: dict[str, Tensor]  # layer -> T (see losses.style_target)
    layer_weights: dict[str, float]
    content_layer: str
    content_target: Tensor | None  # the whole image's features at content_layer; None: no content term
    content_weight: float
    style_weight: float
    tv_weight: float
    scale: float  # losses.pixel_scale for this level's size

    @property
    def layers(self) -> list[str]:
        extra = [self.content_layer] if self.content_target is not None else []
        return list(dict.fromkeys([*self.style_targets, *extra]))

    def totals(self, content: float, style: float, tv: float) -> dict[str, float]:
        total = self.content_weight * content + self.style_weight * style + self.tv_weight * tv
        return {"content": content, "style": style, "tv": tv, "total": total}


def whole_loss(terms: Terms, image: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(content, style, tv) of the whole image in one pass, differentiable with respect to `image`."""
    zero = torch.zeros((), device=image.device)
    layers = terms.layers
    with terms.autocast():
        feats = terms.model(image, layers, terms.pooling) if layers else {}
    content = zero
    if terms.content_target is not None:
        content = content_loss(feats[terms.content_layer], terms.content_target, terms.scale)
    style = zero
    for name, target in terms.style_targets.items():
        style = style + terms.layer_weights[name] * style_layer_loss(feats[name], target)
    tv = terms.scale * _TV_UNITS * tv_terms(image)
    return content, style, tv


def tiled_loss_and_grad(
    terms: Terms,
    image: Tensor,
    tiles: Sequence[Tile],
    check: RaiseIfCancelled | None = None,
    on_tile: TileProgress | None = None,
) -> tuple[dict[str, float], Tensor]:
    """The whole image's losses and the gradient of their weighted total, computed tile by tile.

    Peak memory is one tile's forward and backward pass plus the image-sized gradient. `check` runs before every
    tile (it raises to cancel); `on_tile(done, total)` counts tiles over both passes.
    """
    image = image.detach()
    counter = _TileCounter(on_tile, (2 if terms.style_targets else 1) * len(tiles))

    style = 0.0
    grams: dict[str, tuple[Tensor, int]] = {}
    if terms.style_targets:
        grams = tiled_grams(
            terms.model, image, list(terms.style_targets), terms.pooling, tiles, terms.autocast, check, counter.tick
        )
        for name, target in terms.style_targets.items():
            gram, m = grams[name]
            style += terms.layer_weights[name] * float(style_loss_from_gram(gram, m, target))

    grad = torch.zeros(image.shape, device=image.device)  # contiguous (NCHW), as L-BFGS flattens it
    content = tv = 0.0
    layers = terms.layers
    stride = layer_stride(terms.content_layer)
    for tile in tiles:
        if check is not None:
            check()
        crop = image[..., tile.cy0 : tile.cy1, tile.cx0 : tile.cx1].clone().requires_grad_(True)
        part = torch.zeros((), device=image.device)
        if layers:
            with terms.autocast():
                feats = terms.model(crop, layers, terms.pooling)
            for name, target in terms.style_targets.items():
                gram, m = grams[name]
                core = tile.core_of(feats[name], layer_stride(name))
                weight = terms.style_weight * terms.layer_weights[name]
                part = part + weight * style_gradient_surrogate(core, gram, m, target)
            if terms.content_target is not None:
                wanted = terms.content_target[..., tile.rows(stride), tile.cols(stride)]
                c = content_loss(tile.core_of(feats[terms.content_layer], stride), wanted, terms.scale)
                content += float(c.detach())
                part = part + terms.content_weight * c
        # The core's pixels with their right and lower neighbours (in the crop's halo unless at the image's edge).
        top, left = tile.y0 - tile.cy0, tile.x0 - tile.cx0
        t = terms.scale * _TV_UNITS * tv_terms(crop[..., top:, left:], tile.y1 - tile.y0, tile.x1 - tile.x0)
        tv += float(t.detach())
        part = part + terms.tv_weight * t
        part.backward()
        assert crop.grad is not None
        grad[..., tile.cy0 : tile.cy1, tile.cx0 : tile.cx1] += crop.grad
        counter.tick()
    return terms.totals(content, style, tv), grad


class _TileCounter:
    """Counts tiles over both passes of one evaluation for the caller's (done, total) callback."""

    def __init__(self, callback: TileProgress | None, total: int):
        self.callback, self.total, self.done = callback, total, 0

    def tick(self, *_: int) -> None:
        self.done += 1
        if self.callback is not None:
            self.callback(self.done, self.total)
