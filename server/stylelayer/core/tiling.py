"""Tiles for whole-image passes in bounded memory: the grid, and the forward passes that need no gradient.

Tiles are cores on a 16-pixel grid (conv5_1's pooling grid, so every tile sees the same pooling pairs as the whole
image) plus a halo of at least the receptive margin of the deepest layer used (`vgg.receptive_margin`): every feature
position belongs to exactly one core and is computed from the same pixels as in the whole image, so the summed
gradient equals the untiled one up to float rounding. The grid is shifted at random every iteration so that no tile
border stays in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch
from torch import Tensor

from .losses import gram_matrix
from .vgg import VGG19Features, layer_stride, receptive_margin

GRID = 16  # four 2x2 poolings: tile origins on this grid see the whole image's pooling pairs


@dataclass(frozen=True)
class Tile:
    """A core [y0, y1) × [x0, x1) of the image and the crop around it that the network sees (pixels)."""

    y0: int
    y1: int
    x0: int
    x1: int
    cy0: int
    cy1: int
    cx0: int
    cx1: int

    def core_of(self, features: Tensor, stride: int) -> Tensor:
        """The core's positions in `features`, the crop's feature map of a layer with this stride."""
        top, left = (self.y0 - self.cy0) // stride, (self.x0 - self.cx0) // stride
        rows, cols = self.rows(stride), self.cols(stride)
        return features[..., top : top + rows.stop - rows.start, left : left + cols.stop - cols.start]

    def rows(self, stride: int) -> slice:
        """The core's rows in the whole image's feature grid (the image's last core ends at the image's end)."""
        return slice(self.y0 // stride, self.y1 // stride)

    def cols(self, stride: int) -> slice:
        return slice(self.x0 // stride, self.x1 // stride)


def halo_for(layers: Sequence[str]) -> int:
    """Smallest halo on the 16-pixel grid that covers the receptive margin of every layer in `layers`."""
    margin = max(receptive_margin(layer) for layer in layers)
    return -(-margin // GRID) * GRID


def tile_grid(height: int, width: int, tile: int, halo: int, offset: tuple[int, int] = (0, 0)) -> list[Tile]:
    """Cores of `tile`×`tile` pixels (multiples of 16) covering the image once, the grid shifted by `offset`."""
    if tile % GRID or tile <= 0:
        raise ValueError(f"tile size must be a positive multiple of {GRID}; got {tile}")
    return [
        Tile(y0, y1, x0, x1, max(0, y0 - halo), min(height, y1 + halo), max(0, x0 - halo), min(width, x1 + halo))
        for y0, y1 in spans(height, tile, offset[0])
        for x0, x1 in spans(width, tile, offset[1])
    ]


def spans(length: int, tile: int, offset: int) -> Iterator[tuple[int, int]]:
    """[start, end) spans of one axis: a first span of `offset % tile` (if any), then whole tiles, then the rest."""
    cuts = sorted({0, length, *range(offset % tile or tile, length, tile)})
    yield from zip(cuts, cuts[1:], strict=False)


def random_offset(tile: int, generator: torch.Generator) -> tuple[int, int]:
    """A grid shift on the 16-pixel grid, drawn from the job's seeded generator (reproducible)."""
    steps = tile // GRID
    oy, ox = torch.randint(0, steps, (2,), generator=generator).tolist()
    return oy * GRID, ox * GRID


RaiseIfCancelled = Callable[[], None]  # raises (engine.Cancelled) to stop between tiles
TileProgress = Callable[[int, int], None]  # (tiles done, tiles in this pass)


def tile_features(
    model: VGG19Features,
    image: Tensor,
    layers: Sequence[str],
    pooling: str,
    tiles: Sequence[Tile],
    autocast: Callable[[], AbstractContextManager],
    check: RaiseIfCancelled | None = None,
) -> Iterator[tuple[Tile, dict[str, Tensor]]]:
    """Each tile with its crop's features at `layers`, without gradients (the consumer's code runs under no_grad
    too); `check` runs before every tile."""
    with torch.no_grad():
        for tile in tiles:
            if check is not None:
                check()
            with autocast():
                feats = model(image[..., tile.cy0 : tile.cy1, tile.cx0 : tile.cx1], layers, pooling)
            yield tile, feats


def tiled_grams(
    model: VGG19Features,
    image: Tensor,
    layers: Sequence[str],
    pooling: str,
    tiles: Sequence[Tile],
    autocast: Callable[[], AbstractContextManager],
) -> dict[str, tuple[Tensor, int]]:
    """Gram matrices (float32) and position counts of the whole `image` at `layers`, accumulated tile by tile."""
    grams: dict[str, Tensor] = {}
    counts = dict.fromkeys(layers, 0)
    for tile, feats in tile_features(model, image, layers, pooling, tiles, autocast):
        for name in layers:
            core = tile.core_of(feats[name], layer_stride(name))
            gram = gram_matrix(core)
            grams[name] = grams[name] + gram if name in grams else gram
            counts[name] += core.shape[-2] * core.shape[-1]
    return {name: (grams[name], counts[name]) for name in layers}


def tiled_features(
    model: VGG19Features,
    image: Tensor,
    layer: str,
    pooling: str,
    tiles: Sequence[Tile],
    autocast: Callable[[], AbstractContextManager],
) -> Tensor:
    """The whole image's feature map at `layer` (in the features' precision), assembled from the tiles' cores."""
    height, width = image.shape[-2:]
    stride = layer_stride(layer)
    out: Tensor | None = None
    for tile, feats in tile_features(model, image, [layer], pooling, tiles, autocast):
        core = tile.core_of(feats[layer], stride)
        if out is None:
            shape = (1, core.shape[1], height // stride, width // stride)
            out = torch.empty(shape, device=image.device, dtype=core.dtype)
        out[..., tile.rows(stride), tile.cols(stride)] = core
    assert out is not None
    return out
