"""The objective is a list of terms: a new term is one class and one list entry, and everything else follows (the
weighted total, tiling, the optimiser, the reported losses and the plot)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from torch import Tensor

from stylelayer.core import imaging
from stylelayer.core.engine import StyleEngine, _Run
from stylelayer.core.objective import Objective
from stylelayer.core.params import StyleParams
from stylelayer.core.plot import OTHER_COLORS, draw_losses
from stylelayer.core.terms import Features, LocalTerm
from stylelayer.core.tiling import Tile, tile_grid

GREY = 0.5


class Greyness(LocalTerm):  # the toy term: the whole of what adding a term takes, besides one list entry
    """Σ (pixel − ½)²: pulls the image towards mid-grey."""

    name = "greyness"

    def __init__(self, weight: float):
        self.weight = weight

    def whole(self, image: Tensor, feats: Features) -> Tensor:
        return (image - GREY).square().sum()

    def tile(self, tile: Tile, crop: Tensor, feats: Features) -> Tensor:
        top, left = tile.y0 - tile.cy0, tile.x0 - tile.cx0
        return (crop[..., top : top + tile.y1 - tile.y0, left : left + tile.x1 - tile.x0] - GREY).square().sum()


def _add_greyness(monkeypatch: pytest.MonkeyPatch, weight: float) -> None:
    """The engine's term list with one more entry."""
    build = _Run._terms

    def terms(self: _Run, *args, **kwargs) -> Objective:
        objective = build(self, *args, **kwargs)
        objective.terms.append(Greyness(weight))
        return objective

    monkeypatch.setattr(_Run, "_terms", terms)


def _distance_from_grey(image: Image.Image) -> float:
    return float((imaging.to_tensor(image) - GREY).abs().mean())


@pytest.mark.parametrize("tile_size", [None, 32])
def test_a_toy_term_is_one_class_and_one_list_entry(monkeypatch, tubingen64, starry64, tile_size):
    """Whole and tiled: the term is reported by name, weighed into the total, optimised, and drawn."""
    shallow = {"style_layers": ["conv1_1", "conv2_1", "conv3_1"], "content_layer": "conv3_1"}  # halo 16: fast tiles
    params = StyleParams.from_dict(
        {"size": 64, "iterations": 6, "scales": 1, "seed": 0, "precision": "fp32", **shallow}
    )
    engine = StyleEngine(device="cpu", tile_size=tile_size)
    plain = engine.stylize(tubingen64, [starry64], params)
    weight = 1e11
    _add_greyness(monkeypatch, weight)
    result = engine.stylize(tubingen64, [starry64], params)
    losses = result.losses
    assert list(losses) == ["content", "style", "tv", "greyness", "total"]
    weights = {"content": params.content_weight, "style": params.style_weight, "tv": params.tv_weight}
    total = sum(weights[name] * losses[name] for name in weights) + weight * losses["greyness"]
    assert losses["total"] == pytest.approx(total, rel=1e-6)
    assert _distance_from_grey(result.image) < 0.8 * _distance_from_grey(plain.image)
    plot = draw_losses(result.history)
    assert sum(n for n, color in plot.getcolors(1 << 16) if color == OTHER_COLORS[0]) > 20  # its own line


def test_a_local_terms_tiles_add_up_to_its_whole():
    """What makes the tiled runs above exact: the cores' parts of a local term add up to the whole."""
    image = torch.rand(1, 3, 70, 90, generator=torch.Generator().manual_seed(0))
    term = Greyness(1.0)
    parts = sum(float(term.tile(t, image[..., t.cy0 : t.cy1, t.cx0 : t.cx1], {})) for t in tile_grid(70, 90, 32, 16))
    assert parts == pytest.approx(float(term.whole(image, {})), rel=1e-5)
