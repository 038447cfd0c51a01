"""The loss of a generated image and its gradient: over the whole image at once, or tile by tile, exactly.

The objective is a list of terms (terms.py); its weighted total is `Objective.total`, the one place weights are
applied, and losses are reported by term name. Tiled, the Gram terms first add up their sums over the tiles without
gradients, then every tile is back-propagated once through all terms (see terms.py for why that is exact).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import Tensor

from .terms import GramTerm, LocalTerm, Sums, Term
from .tiling import RaiseIfCancelled, Tile, TileProgress, tile_features
from .vgg import VGG19Features

Value = TypeVar("Value", Tensor, float)


@dataclass
class Objective:
    """What an evaluation needs besides the image: the network and the weighted terms of one level."""

    model: VGG19Features
    pooling: str
    autocast: Callable[[], AbstractContextManager]
    terms: list[Term]

    def __post_init__(self) -> None:
        names = [term.name for term in self.terms]
        if len(set(names)) != len(names) or "total" in names:
            raise ValueError(f"loss terms need distinct names other than 'total'; got {names}")

    @property
    def layers(self) -> list[str]:
        return list(dict.fromkeys(layer for term in self.terms for layer in term.layers))

    def total(self, values: Sequence[Value]) -> Value:
        """Σ weight · value over the terms, `values` in the terms' order."""
        total = 0.0
        for term, value in zip(self.terms, values, strict=True):
            total = total + term.weight * value
        return total  # type: ignore[return-value]  # a float only where every value is one

    def totals(self, values: Sequence[float]) -> dict[str, float]:
        """The losses by term name, and their weighted total."""
        return {
            **{term.name: value for term, value in zip(self.terms, values, strict=True)},
            "total": self.total(values),
        }

    def whole_losses(self, image: Tensor) -> list[Tensor]:
        """Every term's loss of the whole image in one pass, differentiable with respect to `image`."""
        layers = self.layers
        with self.autocast():
            feats = self.model(image, layers, self.pooling) if layers else {}
        return [term.whole(image, feats) for term in self.terms]


def tiled_loss_and_grad(
    objective: Objective,
    image: Tensor,
    tiles: Sequence[Tile],
    check: RaiseIfCancelled | None = None,
    on_tile: TileProgress | None = None,
) -> tuple[Tensor, Tensor]:
    """The whole image's losses (one value per term, in the terms' order, on the device) and the gradient of their
    weighted total, computed tile by tile.

    Nothing is read back from the device: a read per tile drains a GPU's queue, and the card would wait for the
    host to launch the next tile's kernels each time. Peak memory is one tile's forward and backward pass plus the
    image-sized gradient. `check` runs before every tile (it raises to cancel); `on_tile(done, total)` counts tiles
    over both passes.
    """
    image = image.detach()
    grams = [term for term in objective.terms if isinstance(term, GramTerm)]
    counter = _TileCounter(on_tile, (2 if grams else 1) * len(tiles))

    sums: dict[str, Sums] = {}
    if grams:
        layers = list(dict.fromkeys(layer for term in grams for layer in term.layers))
        passes = tile_features(objective.model, image, layers, objective.pooling, tiles, objective.autocast, check)
        for tile, feats in passes:
            for term in grams:
                sums[term.name] = _added(sums.get(term.name), term.sums(feats, tile))
            counter.tick()
    values = {term.name: torch.zeros((), device=image.device) for term in objective.terms}
    values.update({term.name: term.loss(sums[term.name]).detach() for term in grams})

    grad = torch.zeros(image.shape, device=image.device)  # contiguous (NCHW), as L-BFGS flattens it
    layers = objective.layers
    for tile in tiles:
        if check is not None:
            check()
        crop = image[..., tile.cy0 : tile.cy1, tile.cx0 : tile.cx1].clone().requires_grad_(True)
        feats = {}
        if layers:
            with objective.autocast():
                feats = objective.model(crop, layers, objective.pooling)
        part = torch.zeros((), device=image.device)
        for term in objective.terms:
            if isinstance(term, GramTerm):
                piece = term.surrogate(feats, tile, sums[term.name])
            else:
                assert isinstance(term, LocalTerm)
                piece = term.tile(tile, crop, feats)
                values[term.name] = values[term.name] + piece.detach()
            part = part + term.weight * piece
        part.backward()
        assert crop.grad is not None
        grad[..., tile.cy0 : tile.cy1, tile.cx0 : tile.cx1] += crop.grad
        counter.tick()
    return torch.stack([values[term.name].float() for term in objective.terms]), grad


def _added(total: Sums | None, part: Sums) -> Sums:
    if total is None:
        return part
    return {layer: (total[layer][0] + gram, total[layer][1] + count) for layer, (gram, count) in part.items()}


class _TileCounter:
    """Counts tiles over both passes of one evaluation for the caller's (done, total) callback."""

    def __init__(self, callback: TileProgress | None, total: int):
        self.callback, self.total, self.done = callback, total, 0

    def tick(self, *_: int) -> None:
        self.done += 1
        if self.callback is not None:
            self.callback(self.done, self.total)
