"""The loss terms of an objective, one class each: its name, its weight, its loss over the whole image and its exact
part of a tile's gradient. A new term is one class here and one entry in the list the engine builds
(`engine._Run._terms`); `objective.Objective` weighs and adds them in one place.

Two kinds, because they tile differently:

* `LocalTerm`: a sum over positions (content, total variation). Each tile's core adds its part of the value and of
  the gradient, and the parts add up to the whole image's.
* `GramTerm`: a function of per-layer sums over positions (Gram matrices). A first pass adds up each tile's sums
  without gradients; the second back-propagates each tile with the whole image's residual held fixed
  (`losses.style_gradient_surrogate`), so the tiles' gradients add up to the whole image's.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping

import torch
from torch import Tensor

from .losses import content_loss, gram_matrix, positions, style_gradient_surrogate, style_loss_from_gram, tv_terms
from .tiling import Tile
from .vgg import layer_stride

TV_UNITS = 255.0**2  # total variation is measured on 0..255 pixels, as the default weights assume

Features = Mapping[str, Tensor]  # layer -> feature map of the whole image, or of a tile's crop
Sums = dict[str, tuple[Tensor, Tensor | float]]  # layer -> (Gram matrix, position count or mask area) of some positions


class Term(ABC):
    """One weighted loss term; `layers` are the VGG layers it reads (none: it reads the pixels only)."""

    name: str
    weight: float
    layers: tuple[str, ...] = ()

    @abstractmethod
    def whole(self, image: Tensor, feats: Features) -> Tensor:
        """The term's loss of the whole image, differentiable with respect to `image`."""


class LocalTerm(Term):
    """A sum over positions: every tile's core contributes its part of the value and of the gradient."""

    @abstractmethod
    def tile(self, tile: Tile, crop: Tensor, feats: Features) -> Tensor:
        """The part of the loss at `tile`'s core, from the crop (pixels) and its features."""


class GramTerm(Term):
    """A function of per-layer Gram matrices, each a sum over the image's positions."""

    @abstractmethod
    def sums(self, feats: Features, tile: Tile | None) -> Sums:
        """Gram matrices and counts of `tile`'s core (None: of the whole image) at this term's layers."""

    @abstractmethod
    def loss(self, sums: Sums) -> Tensor:
        """The term's loss from the whole image's sums."""

    @abstractmethod
    def surrogate(self, feats: Features, tile: Tile, sums: Sums) -> Tensor:
        """A loss whose gradient at `tile`'s core equals the whole loss's there (`sums` are the whole image's)."""

    def whole(self, image: Tensor, feats: Features) -> Tensor:
        return self.loss(self.sums(feats, None))


class Content(LocalTerm):
    """L_content = ½ Σ (F − P)² at one layer (Gatys et al. 2016), times the units' pixel scale."""

    name = "content"

    def __init__(self, weight: float, layer: str, target: Tensor, scale: float):
        self.weight, self.layer, self.target, self.scale = weight, layer, target, scale
        self.layers = (layer,)

    def whole(self, image: Tensor, feats: Features) -> Tensor:
        return content_loss(feats[self.layer], self.target, self.scale)

    def tile(self, tile: Tile, crop: Tensor, feats: Features) -> Tensor:
        stride = layer_stride(self.layer)
        wanted = self.target[..., tile.rows(stride), tile.cols(stride)]
        return content_loss(tile.core_of(feats[self.layer], stride), wanted, self.scale)


class TotalVariation(LocalTerm):
    """Σ of squared differences between neighbouring pixels (on 0..255), times the units' pixel scale."""

    name = "tv"

    def __init__(self, weight: float, scale: float):
        self.weight, self.scale = weight, scale

    def whole(self, image: Tensor, feats: Features) -> Tensor:
        return self.scale * TV_UNITS * tv_terms(image)

    def tile(self, tile: Tile, crop: Tensor, feats: Features) -> Tensor:
        # The core's pixels with their right and lower neighbours (in the crop's halo unless at the image's edge).
        top, left = tile.y0 - tile.cy0, tile.x0 - tile.cx0
        return self.scale * TV_UNITS * tv_terms(crop[..., top:, left:], tile.y1 - tile.y0, tile.x1 - tile.x0)


class GramStyle(GramTerm):
    """Σ_l w_l E_l over the style layers, E_l comparing the image's Gram matrix with the target T (losses.py)."""

    def __init__(
        self, weight: float, targets: dict[str, Tensor], layer_weights: Mapping[str, float], name: str = "style"
    ):
        self.name, self.weight, self.targets, self.layer_weights = name, weight, targets, layer_weights
        self.layers = tuple(targets)

    def guided(self, layer: str, core: Tensor, tile: Tile | None) -> tuple[Tensor, Tensor | float]:
        """The features whose Gram matrix is taken at `layer`, and the count it is a mean over."""
        return core, positions(core)

    def sums(self, feats: Features, tile: Tile | None) -> Sums:
        out: Sums = {}
        for name in self.targets:
            core = feats[name] if tile is None else tile.core_of(feats[name], layer_stride(name))
            features, count = self.guided(name, core, tile)
            out[name] = (gram_matrix(features), count)
        return out

    def loss(self, sums: Sums) -> Tensor:
        style = torch.zeros((), device=next(iter(self.targets.values())).device)
        for name, target in self.targets.items():
            gram, m = sums[name]
            style = style + self.layer_weights[name] * style_loss_from_gram(gram, m, target)
        return style

    def surrogate(self, feats: Features, tile: Tile, sums: Sums) -> Tensor:
        part = torch.zeros((), device=next(iter(feats.values())).device)
        for name, target in self.targets.items():
            gram, m = sums[name]
            features, _ = self.guided(name, tile.core_of(feats[name], layer_stride(name)), tile)
            part = part + self.layer_weights[name] * style_gradient_surrogate(features, gram, m, target)
        return part


class GuidedGramStyle(GramStyle):
    """The style of one region (Gatys et al., "Controlling Perceptual Factors in Neural Style Transfer", 2017):
    Gram matrices of the features multiplied by the region's soft mask at each layer, as means over the mask's area
    Σ m², so a small region weighs as much as a large one. `masks`: layer -> (1, 1, H_l, W_l) mask in 0..1, the same
    grid as the layer's features (regions.layer_masks)."""

    def __init__(
        self,
        name: str,
        weight: float,
        targets: dict[str, Tensor],
        layer_weights: Mapping[str, float],
        masks: Mapping[str, Tensor],
    ):
        super().__init__(weight, targets, layer_weights, name)
        self.masks = masks
        self.areas = {layer: mask.square().sum() for layer, mask in masks.items()}

    def guided(self, layer: str, core: Tensor, tile: Tile | None) -> tuple[Tensor, Tensor | float]:
        mask = self.masks[layer]
        if tile is None:
            return core * mask.to(core.dtype), self.areas[layer]
        stride = layer_stride(layer)
        part = mask[..., tile.rows(stride), tile.cols(stride)]
        return core * part.to(core.dtype), part.square().sum()
