"""The optimisation on real images at 64 px: it must actually do what the paper describes."""

import pytest
import torch
from PIL import Image
from testimages import real_image

from stylelayer.core import imaging
from stylelayer.core.engine import Cancelled, Progress, _level_iterations, _level_sizes
from stylelayer.core.params import ParamError, StyleParams


def params(**kw) -> StyleParams:
    base = {"size": 64, "iterations": 15, "seed": 0, "precision": "fp32"}
    return StyleParams.from_dict({**base, **kw})


def test_losses_decrease_on_real_images(engine, tubingen64, starry64):
    seen: list[Progress] = []
    result = engine.stylize(tubingen64, [starry64], params(iterations=25), progress=seen.append)
    assert [p.iteration for p in seen] == list(range(1, 26))
    assert all(p.total == 25 for p in seen)
    first, last = seen[0].losses, result.losses
    assert last["total"] < 0.2 * first["total"]
    assert last["style"] < 0.1 * first["style"]
    assert result.image.size == tubingen64.size and result.image.mode == "RGB"
    # It is no longer the content image, but still resembles it more than the style does.
    diff = torch.mean((imaging.to_tensor(result.image) - imaging.to_tensor(tubingen64)).abs()).item()
    assert diff > 0.03


def test_feature_inversion_gets_closer_to_content(engine, tubingen64):
    result = engine.stylize(tubingen64, [], params(mode="inversion", iterations=40))
    content = imaging.to_tensor(tubingen64)
    noise = torch.rand(content.shape, generator=torch.Generator().manual_seed(0))
    err_start = torch.mean((noise - content) ** 2).item()
    err_end = torch.mean((imaging.to_tensor(result.image) - content) ** 2).item()
    assert err_end < 0.5 * err_start
    assert result.history[-1]["content"] < 0.1 * result.history[0]["content"]
    assert all("style" not in h for h in result.history)  # a term the job does not have is not reported


def test_texture_synthesis_without_content(engine, starry64):
    result = engine.stylize(None, [starry64], params(mode="texture", output_size=[48, 32], iterations=20))
    assert result.image.size == (48, 32)
    assert result.history[-1]["style"] < 0.2 * result.history[0]["style"]
    assert all(list(h) == ["style", "tv", "total"] for h in result.history)  # no content term


def test_same_seed_same_output_other_seed_differs(engine, tubingen64, starry64):
    a = engine.stylize(tubingen64, [starry64], params(init="noise", iterations=5, seed=7))
    b = engine.stylize(tubingen64, [starry64], params(init="noise", iterations=5, seed=7))
    c = engine.stylize(tubingen64, [starry64], params(init="noise", iterations=5, seed=8))
    assert a.image.tobytes() == b.image.tobytes()
    assert a.image.tobytes() != c.image.tobytes()
    assert a.seed == 7


def test_varied_init_is_a_variation_per_seed_and_the_content_init_is_not(engine, tubingen64, starry64):
    """init "varied" (what the plug-ins send): another seed paints another variation, the same seed the same
    image; with init "content" the seed changes nothing, which made a second Apply bit-identical."""
    runs = {
        (init, seed): engine.stylize(tubingen64, [starry64], params(init=init, iterations=5, seed=seed)).image
        for init in ("varied", "content")
        for seed in (7, 8)
    }
    again = engine.stylize(tubingen64, [starry64], params(init="varied", iterations=5, seed=7)).image
    assert runs["varied", 7].tobytes() == again.tobytes()
    assert runs["varied", 7].tobytes() != runs["varied", 8].tobytes()
    assert runs["content", 7].tobytes() == runs["content", 8].tobytes()
    diff = sum(abs(a - b) for a, b in zip(runs["varied", 7].tobytes(), runs["varied", 8].tobytes(), strict=True))
    assert diff / len(runs["varied", 7].tobytes()) > 1  # a visible difference, not a rounding one


def test_random_seed_is_reported_and_reproduces(engine, tubingen64, starry64):
    first = engine.stylize(tubingen64, [starry64], params(init="noise", iterations=3, seed=None))
    again = engine.stylize(tubingen64, [starry64], params(init="noise", iterations=3, seed=first.seed))
    assert first.image.tobytes() == again.image.tobytes()


def test_alpha_is_reattached_exactly(engine, tubingen64, starry64):
    rgba = tubingen64.convert("RGBA")
    alpha = Image.linear_gradient("L").resize(rgba.size)
    rgba.putalpha(alpha)
    result = engine.stylize(rgba, [starry64], params(iterations=3))
    assert result.image.mode == "RGBA"
    assert result.image.getchannel("A").tobytes() == alpha.tobytes()


def test_result_has_the_content_size_when_working_smaller(engine, starry64):
    big = real_image("tubingen", 100)
    result = engine.stylize(big, [starry64], params(size=40, iterations=2))
    assert result.image.size == big.size


def _chroma(img: Image.Image) -> torch.Tensor:
    return imaging.rgb_to_yiq(imaging.to_tensor(img))[:, 1:]


def test_preserve_colors_keeps_content_chroma(engine, tubingen64, starry64):
    kept = engine.stylize(tubingen64, [starry64], params(preserve_colors=True, iterations=15))
    plain = engine.stylize(tubingen64, [starry64], params(iterations=15))
    reference = _chroma(tubingen64)
    err_kept = (_chroma(kept.image) - reference).abs().mean().item()
    err_plain = (_chroma(plain.image) - reference).abs().mean().item()
    assert err_kept < 0.02
    assert err_kept < 0.3 * err_plain
    # The luminance did change: style was transferred.
    y = imaging.rgb_to_yiq(imaging.to_tensor(kept.image))[:, :1]
    y0 = imaging.rgb_to_yiq(imaging.to_tensor(tubingen64))[:, :1]
    assert (y - y0).abs().mean().item() > 0.02


def test_style_of_other_size_and_aspect(engine, tubingen64):
    scream = real_image("the_scream", 90)  # portrait, content is landscape
    result = engine.stylize(tubingen64, [scream], params(iterations=10, style_scale=0.5))
    assert result.history[-1]["style"] < result.history[0]["style"]


def test_blend_weights(engine, tubingen64, starry64):
    scream = real_image("the_scream", 64)
    single = engine.stylize(tubingen64, [starry64], params(iterations=4))
    blended_out = engine.stylize(tubingen64, [starry64, scream], params(iterations=4, style_blend=[1, 0]))
    mixed = engine.stylize(tubingen64, [starry64, scream], params(iterations=4, style_blend=[1, 1]))
    assert single.image.tobytes() == blended_out.image.tobytes()
    assert mixed.image.tobytes() != single.image.tobytes()
    with pytest.raises(ParamError, match="style_blend"):
        engine.stylize(tubingen64, [starry64], params(style_blend=[1, 2]))


def test_style_grams_are_cached(engine, tubingen64, starry64):
    before = engine.cache_stats()
    engine.stylize(tubingen64, [starry64], params(iterations=1, style_scale=0.77))
    engine.stylize(tubingen64, [starry64], params(iterations=1, style_scale=0.77))
    after = engine.cache_stats()
    assert after["misses"] == before["misses"] + 1
    assert after["hits"] == before["hits"] + 1


def test_cancel_between_iterations(engine, tubingen64, starry64):
    seen: list[int] = []
    with pytest.raises(Cancelled):
        engine.stylize(
            tubingen64,
            [starry64],
            params(iterations=50),
            progress=lambda p: seen.append(p.iteration),
            should_cancel=lambda: len(seen) >= 3,
        )
    assert seen == [1, 2, 3]


def test_previews_every_n_iterations(engine, tubingen64, starry64):
    previews: dict[int, Image.Image] = {}

    def on_progress(p: Progress) -> None:
        if p.preview is not None:
            previews[p.iteration] = p.preview

    engine.stylize(tubingen64, [starry64], params(iterations=7), progress=on_progress, preview_every=3)
    assert sorted(previews) == [3, 6, 7]
    assert all(p.mode == "RGB" and p.size == tubingen64.size for p in previews.values())


def test_multiscale_runs_coarse_to_fine(engine, tubingen64, starry64):
    seen: list[Progress] = []
    result = engine.stylize(tubingen64, [starry64], params(scales=2, iterations=4), progress=seen.append)
    # The coarse level runs 4 iterations, the fine one (which only refines it) half as many.
    assert [p.iteration for p in seen] == list(range(1, 7)) and {p.total for p in seen} == {6}
    assert [p.level for p in seen] == [1, 1, 1, 1, 2, 2] and {p.levels for p in seen} == {2}
    assert result.iterations == 6 and result.image.size == tubingen64.size
    assert [plan.split(":")[0] for plan in result.plans] == ["32x24", "64x48"]
    assert _level_sizes((64, 48), 2) == [(32, 24), (64, 48)]
    assert _level_sizes((40, 20), 3) == [(40, 20)]  # levels under 16 px on the short side are skipped
    # Automatic levels (scales 0): from about 512 px up to the working size.
    assert _level_sizes((512, 384), 0) == [(512, 384)]
    assert _level_sizes((4000, 3000), 0) == [(500, 375), (1000, 750), (2000, 1500), (4000, 3000)]
    assert _level_iterations(300, 4) == [300, 150, 75, 37] and _level_iterations(1, 3) == [1, 1, 1]


def test_adam_and_style_init(engine, tubingen64, starry64):
    result = engine.stylize(tubingen64, [starry64], params(optimizer="adam", init="style", iterations=20))
    assert result.history[-1]["total"] < result.history[0]["total"]


def test_bf16_close_to_fp32(engine, tubingen64, starry64):
    if engine.precision(params(precision="auto")) != "bf16":
        pytest.skip("this device has no fast bf16")
    fp32 = engine.stylize(tubingen64, [starry64], params(iterations=20, precision="fp32"))
    bf16 = engine.stylize(tubingen64, [starry64], params(iterations=20, precision="bf16"))
    # Trajectories differ in detail; both must remove about the same share of the starting loss.
    start = fp32.history[0]["total"]
    assert abs(bf16.losses["total"] - fp32.losses["total"]) < 0.03 * start
    assert bf16.losses["total"] < 0.2 * start


def test_bad_inputs(engine, tubingen64, starry64):
    with pytest.raises(ValueError, match="at least one style image"):
        engine.stylize(tubingen64, [], params())
    with pytest.raises(ValueError, match="content image is required"):
        engine.stylize(None, [starry64], params())
    with pytest.raises(ValueError, match="init 'style' needs a style image"):
        engine.stylize(tubingen64, [], params(mode="inversion", init="style"))


def test_tiny_and_thin_images(engine, starry64):
    """A 1x1 layer or a 3x40 strip still works (worked on upscaled, returned at its own size)."""
    for size in ((1, 1), (3, 40)):
        tiny = Image.new("RGBA", size, (200, 30, 30, 128))
        result = engine.stylize(tiny, [Image.new("RGB", (2, 2), "blue")], params(iterations=2))
        assert result.image.size == size
        assert result.image.getchannel("A").tobytes() == tiny.getchannel("A").tobytes()
    with pytest.raises(ValueError, match="too thin"):
        engine.stylize(Image.new("RGB", (1, 3000)), [starry64], params(size=0, iterations=1))


def test_the_plan_works_at_the_size_the_job_runs(engine, starry64):
    """An estimate plans the levels the job will run: for a thin strip (upscaled to 16 px on its short side) too,
    and a strip too thin to run cannot be planned either."""
    for content_size, size in (((3, 40), 512), ((200, 90), 64), ((90, 5), 32)):
        p = params(size=size, iterations=2, scales=2)
        ran = engine.stylize(Image.new("RGB", content_size), [starry64], p).plans
        planned = [plan.describe() for plan, _ in engine.plan_job(content_size, p)]
        assert planned == ran, content_size  # sizes, whole or tiled, optimiser and memory of every level
    with pytest.raises(ValueError, match="too thin"):
        engine.plan_job((1, 3000), params(size=0))


def test_calibrate_times_this_machine_and_leaves_the_style_cache_as_it_was(engine) -> None:
    """The figures estimates use before a server's first job, one per precision the device runs: positive, within
    what a CPU can do, and the painter's Gram cache and its counts untouched by the calibration's own noise style."""
    before = engine.cache_stats()
    rates = engine.calibrate()
    assert engine.seconds_per_unit == rates
    assert list(rates) == list(engine.precisions()) and engine.precisions()[0] == engine.auto_precision
    for rate in rates.values():
        assert 1e-8 < rate < 1e-2  # seconds per pixel of a forward and backward pass on any CPU that runs the tests
    assert engine.cache_stats() == before
