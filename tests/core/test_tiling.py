"""Tiled evaluation is exact: the same losses and gradient as the whole image, and no seams in the result."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from testimages import band_mask, real_image
from torch import Tensor

from stylelayer.core import imaging
from stylelayer.core.colours import StyleColours, colours_for
from stylelayer.core.engine import JobInputs, StyleEngine, _Run
from stylelayer.core.memory import LevelPlan
from stylelayer.core.objective import Objective, tiled_loss_and_grad
from stylelayer.core.params import StyleParams
from stylelayer.core.regions import Region
from stylelayer.core.tiling import GRID, Tile, halo_for, tile_grid
from stylelayer.core.vgg import receptive_margin

SIZE = (248, 136)  # not a multiple of 16 either way; wider than a crop (48 + 2 x 80 px): crops end inside it


def _params(**kw) -> StyleParams:
    return StyleParams.from_dict({"size": 0, "iterations": 1, "seed": 0, "precision": "fp32", **kw})


def _evaluate(
    engine: StyleEngine, params: StyleParams, styles: list[Image.Image], tile: int | None, regions: tuple = ()
):
    """(losses, gradient) of the content image itself under `params`, whole (tile None) or tiled."""
    content = imaging.to_tensor(real_image("tubingen", max(SIZE)).resize(SIZE), engine.device)
    inputs = JobInputs(None, styles, regions, torch.Generator())
    run = _Run(engine, params, 0, [SIZE], 0.0, None, None, 0, inputs)
    colours = colours_for(params.preserve_colors, content)
    content = colours.content(content)
    halo = halo_for(["conv5_1"])
    plan = LevelPlan(*SIZE, tile, halo if tile else 0, "lbfgs", 10, 0)
    objective = run._terms(content, styles, SIZE, colours, plan)
    image = (content + 0.05 * torch.rand(content.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    return evaluate(
        objective, image, None if tile is None else tile_grid(SIZE[1], SIZE[0], tile, halo, offset=(32, 16))
    )


def evaluate(objective: Objective, image: Tensor, tiles: list[Tile] | None) -> tuple[dict[str, float], Tensor]:
    """(losses, gradient of the weighted total) of `image`, whole (tiles None) or tiled."""
    if tiles is None:
        image = image.detach().requires_grad_(True)
        values = objective.whole_losses(image)
        objective.total(values).backward()
        assert image.grad is not None
        return objective.totals([float(v.detach()) for v in values]), image.grad
    assert len(tiles) > 9  # really tiled: cores much smaller than the image, halos overlapping
    values, grad = tiled_loss_and_grad(objective, image, tiles)
    return objective.totals(values.tolist()), grad


@pytest.mark.parametrize(
    "pooling, preserve_colors, n_styles",
    [("avg", False, 1), ("max", True, 2)],  # both poolings, with and without colour preservation, several styles
)
def test_tiled_gradient_equals_whole_image_gradient(engine, pooling, preserve_colors, n_styles):
    styles = [real_image("starry_night", 128), real_image("the_scream", 96)][:n_styles]
    params = _params(pooling=pooling, preserve_colors=preserve_colors, style_blend=[3, 1][:n_styles])
    whole_losses, whole_grad = _evaluate(engine, params, styles, None)
    tiled_losses, tiled_grad = _evaluate(engine, params, styles, 48)
    for name in ("content", "style", "tv", "total"):
        assert tiled_losses[name] == pytest.approx(whole_losses[name], rel=1e-4), name
    assert whole_losses["content"] > 0 and whole_losses["style"] > 0
    error = (tiled_grad - whole_grad).norm() / whole_grad.norm()
    assert error < 1e-3, f"relative gradient error {error:.2e}"


def test_tiled_guided_gradient_equals_whole_image_gradient(engine):
    """Regions tile exactly too: two feathered regions (one with two styles), and the global style over the band
    between them that neither covers."""
    starry, scream = real_image("starry_night", 128), real_image("the_scream", 96)
    regions = (
        Region(band_mask(SIZE, 0.0, 0.4, feather=12), (starry, scream), blend=(3, 1)),
        Region(band_mask(SIZE, 0.65, 1.0, feather=12), (scream,)),
    )
    params = _params(preserve_colors=True, region_weights=[1, 2])
    whole_losses, whole_grad = _evaluate(engine, params, [real_image("shipwreck", 96)], None, regions)
    tiled_losses, tiled_grad = _evaluate(engine, params, [real_image("shipwreck", 96)], 48, regions)
    assert list(whole_losses) == ["content", "region1", "region2", "style", "tv", "total"]
    for name, value in whole_losses.items():
        assert tiled_losses[name] == pytest.approx(value, rel=1e-4), name
        assert value > 0, name
    error = (tiled_grad - whole_grad).norm() / whole_grad.norm()
    assert error < 1e-3, f"relative gradient error {error:.2e}"


def test_too_small_a_halo_breaks_exactness(engine):
    """The test above can fail: with a halo under conv5_1's receptive margin the gradients differ."""
    assert receptive_margin("conv5_1") == 70 and halo_for(["conv5_1"]) == 80
    styles = [real_image("starry_night", 128)]
    params = _params()
    _, whole_grad = _evaluate(engine, params, styles, None)
    content = imaging.to_tensor(real_image("tubingen", max(SIZE)).resize(SIZE), engine.device)
    run = _Run(engine, params, 0, [SIZE], 0.0, None, None, 0)
    plan = LevelPlan(*SIZE, 48, GRID, "lbfgs", 10, 0)
    terms = run._terms(content, styles, SIZE, StyleColours(), plan)
    image = (content + 0.05 * torch.rand(content.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    _, grad = tiled_loss_and_grad(terms, image, tile_grid(SIZE[1], SIZE[0], 48, GRID, offset=(32, 16)))
    assert (grad - whole_grad).norm() / whole_grad.norm() > 1e-2


def test_tile_grid_covers_every_pixel_once_on_the_pooling_grid():
    for offset in ((0, 0), (16, 48), (32, 0)):
        tiles = tile_grid(150, 203, 64, 80, offset)
        cover = torch.zeros(150, 203, dtype=torch.int32)
        for t in tiles:
            cover[t.y0 : t.y1, t.x0 : t.x1] += 1
            assert t.cy0 % GRID == 0 and t.cx0 % GRID == 0 and t.y0 % GRID == 0 and t.x0 % GRID == 0
            assert t.cy0 == max(0, t.y0 - 80) and t.cy1 == min(150, t.y1 + 80)
        assert bool((cover == 1).all())


def test_tiled_run_has_no_seams_and_matches_the_untiled_run(starry64):
    """A tiled job (tiles of 32 px, shifted every iteration) against the same job untiled: same picture, and no
    ridge of gradient energy on the 16-px grid where tile borders can fall. Layers up to conv3_1 keep the halo at
    16 px so that this runs in seconds; the exactness for conv5_1 is tested above."""
    content = real_image("tubingen", 160)
    layers = ["conv1_1", "conv2_1", "conv3_1"]
    params = _params(iterations=8, scales=1, style_layers=layers, content_layer="conv3_1")
    whole = StyleEngine(device="cpu").stylize(content, [starry64], params)
    tiled_engine = StyleEngine(device="cpu", tile_size=32)
    tiled = tiled_engine.stylize(content, [starry64], params)
    assert "tiles of 32 px" in tiled.plans[0] and "whole image" in whole.plans[0]
    a, b = imaging.to_tensor(whole.image), imaging.to_tensor(tiled.image)
    assert (a - b).abs().mean() < 2e-3  # L-BFGS amplifies float rounding a little over the iterations
    assert tiled.losses["total"] == pytest.approx(whole.losses["total"], rel=1e-2)

    dx = (b[..., :, 1:] - b[..., :, :-1]).abs().mean(dim=(0, 1, 2))  # per column boundary x|x+1
    on_grid = dx[GRID - 1 :: GRID].mean()
    off_grid = torch.cat([dx[i::GRID] for i in range(GRID - 1)]).mean()
    assert on_grid < 1.15 * off_grid, f"ridge at tile borders: {on_grid:.4f} vs {off_grid:.4f}"
