"""A style per region (Gatys et al. 2017): each region of the result takes its own style, with no seam between."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from region_measure import LAYERS, region_misses
from testimages import band_mask, real_image
from torch import Tensor

from stylelayer.core import imaging
from stylelayer.core.engine import check_inputs
from stylelayer.core.params import ParamError, StyleParams
from stylelayer.core.regions import Region, RegionError, layer_masks, level_mask, uncovered


def _params(**kw) -> StyleParams:
    return StyleParams.from_dict({"size": 0, "seed": 0, "precision": "fp32", **kw})


def _vertical_energy(image: Image.Image) -> Tensor:
    """Mean squared difference between each row and the next (the energy of edges across a horizontal border)."""
    x = imaging.to_tensor(image)
    return (x[..., 1:, :] - x[..., :-1, :]).pow(2).mean(dim=(0, 1, 3))


def test_two_regions_take_their_own_styles_without_a_seam(engine):
    """Sky and ground (feathered masks), The Starry Night and The Scream, two levels: in each region the result's
    guided Gram matrices are nearer its own style's than the other's at every style layer, where the content's own
    are not; and the border band carries no more edge energy than the bands beside it."""
    content = real_image("tubingen", 96)
    starry, scream = real_image("starry_night", 128), real_image("the_scream", 128)
    sky, ground = band_mask(content.size, 0.0, 0.5, feather=8), band_mask(content.size, 0.5, 1.0, feather=8)
    regions = [Region(sky, (starry,)), Region(ground, (scream,))]
    result = engine.stylize(content, [], _params(iterations=24, scales=2), regions=regions)
    assert list(result.losses) == ["content", "region1", "region2", "tv", "total"]
    assert len(result.plans) == 2

    pairs = [(sky, starry, scream), (ground, scream, starry)]
    assert region_misses(engine, result.image, pairs) == []
    assert region_misses(engine, content, pairs)  # the content alone fails the measure: the styles made the difference

    energy = _vertical_energy(result.image)
    middle = content.height // 2
    border = energy[middle - 4 : middle + 4].mean()
    beside = (energy[middle - 16 : middle - 8].mean() + energy[middle + 8 : middle + 16].mean()) / 2
    assert border <= 1.25 * beside, f"seam: {border:.4g} across the border against {beside:.4g} beside it"


def test_what_no_region_covers_keeps_the_content(engine):
    """One region over the top half and no global style: the bottom half changes far less than the top."""
    content = real_image("tubingen", 64)
    top = band_mask(content.size, 0.0, 0.5)
    result = engine.stylize(
        content, [], _params(iterations=8, scales=1), regions=[Region(top, (real_image("the_scream", 64),))]
    )
    change = (imaging.to_tensor(result.image) - imaging.to_tensor(content)).abs().mean(dim=(0, 1, 3))
    middle = content.height // 2
    assert change[middle + 8 :].mean() < 0.5 * change[: middle - 8].mean()


def test_regions_keep_the_contents_colours_when_asked(engine, tubingen64):
    """preserve_colors with regions: each region's style image is used as luminance, the result gets the content's
    chroma back, and the regions' luminance is restyled."""
    top, bottom = band_mask(tubingen64.size, 0.0, 0.5, feather=4), band_mask(tubingen64.size, 0.5, 1.0, feather=4)
    regions = [Region(top, (real_image("starry_night", 64),)), Region(bottom, (real_image("the_scream", 64),))]
    result = engine.stylize(tubingen64, [], _params(iterations=8, scales=1, preserve_colors=True), regions=regions)
    yiq, yiq0 = (imaging.rgb_to_yiq(imaging.to_tensor(img)) for img in (result.image, tubingen64))
    assert (yiq[:, 1:] - yiq0[:, 1:]).abs().mean().item() < 0.02
    assert (yiq[:, :1] - yiq0[:, :1]).abs().mean().item() > 0.02


def test_layer_masks_lie_on_each_layers_feature_grid(engine):
    """An odd-sized mask averaged down to every layer has that layer's feature shape and keeps its mean."""
    size = (53, 37)
    mask = level_mask(band_mask(size, 0.2, 0.7, feather=5), size, engine.device)
    feats = engine.model(torch.rand(1, 3, size[1], size[0], device=engine.device), LAYERS, "avg")
    for layer, m in layer_masks(mask, LAYERS).items():
        assert m.shape[-2:] == feats[layer].shape[-2:], layer
        assert float(m.min()) >= 0 and float(m.max()) <= 1
    whole = layer_masks(mask, ["conv1_1"])["conv1_1"]
    assert float(whole.mean()) == pytest.approx(float(mask.mean()))
    assert float(uncovered([mask, mask]).max()) == pytest.approx(float((1 - 2 * mask).clamp(0, 1).max()))


def test_bad_regions_are_refused_naming_the_region(tubingen64, starry64):
    params = _params(iterations=1)
    good = Region(band_mask(tubingen64.size, 0, 0.5), (starry64,))
    empty = Region(Image.new("L", (10, 10), 0), (starry64,))
    with pytest.raises(RegionError, match="region 2's mask is empty") as refused:
        check_inputs(tubingen64, [], params, [good, empty])
    assert (refused.value.number, refused.value.what) == (2, "mask")
    transparent = Region(Image.new("RGBA", (10, 10), (255, 255, 255, 0)), (starry64,))
    with pytest.raises(RegionError, match="region 1's mask is empty"):
        check_inputs(tubingen64, [], params, [transparent])
    with pytest.raises(ValueError, match="region 1 has no style image"):
        check_inputs(tubingen64, [], params, [Region(good.mask, ())])
    with pytest.raises(ValueError, match="region 1: give one blend weight per style"):
        check_inputs(tubingen64, [], params, [Region(good.mask, (starry64,), blend=(1, 2))])
    with pytest.raises(ParamError, match="region_weights: has 2 weights but 1 regions"):
        check_inputs(tubingen64, [], params.replace(region_weights=[1, 2]), [good])
    check_inputs(tubingen64, [], params, [good])  # regions stand in for the style images
