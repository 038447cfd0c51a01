"""Pure logic of the Krita plug-in (no Krita, no Qt)."""

from __future__ import annotations

import io
import random

import pytest
from PIL import Image
from stylelayer_image import LAYER_NAME_MAX, encode_png, png_size, style_label, style_layer_name
from stylelayer_krita import logic
from stylelayer_krita.logic import Rect
from stylelayer_messages import PluginError
from stylelayer_params import BASE_STYLE_WEIGHT, PRESETS, build_params, check_server_url, preset_values
from stylelayer_status import progress_fraction, progress_text

from stylelayer.core.params import StyleParams


def test_bgra_rgba_swap_roundtrip():
    bgra = bytes([1, 2, 3, 4, 10, 20, 30, 40])
    rgba = logic.swap_red_blue(bgra)
    assert rgba == bytes([3, 2, 1, 4, 30, 20, 10, 40])
    assert logic.swap_red_blue(rgba) == bgra
    with pytest.raises(ValueError):
        logic.swap_red_blue(b"\x00" * 5)


def test_bgra_matches_pillow_raw_mode():
    rng = random.Random(1)
    raw = bytes(rng.randrange(256) for _ in range(7 * 5 * 4))
    expected = Image.frombytes("RGBA", (7, 5), raw, "raw", "BGRA").tobytes()
    assert logic.swap_red_blue(raw) == expected


def test_16_bit_conversion():
    assert logic.u8_to_u16(bytes([0, 255, 128])) == bytes([0, 0, 255, 255, 128, 128])
    assert logic.u16_to_u8(logic.u8_to_u16(bytes(range(256)))) == bytes(range(256))
    # Krita U16 BGRA little endian -> RGBA 8 bit (high bytes)
    raw16 = bytes([0x00, 0x10, 0x00, 0x20, 0x00, 0x30, 0xFF, 0xFF])
    assert logic.from_krita(raw16, 2) == bytes([0x30, 0x20, 0x10, 0xFF])
    assert logic.to_krita(bytes([0x30, 0x20, 0x10, 0xFF]), 2) == bytes([0x10, 0x10, 0x20, 0x20, 0x30, 0x30, 255, 255])


@pytest.mark.parametrize(
    ("model", "depth", "ok"),
    [
        ("RGBA", "U8", 1),
        ("RGBA", "U16", 2),
        ("RGBA", "F16", None),
        ("RGBA", "F32", None),
        ("GRAYA", "U8", None),
        ("CMYKA", "U8", None),
        ("LABA", "U16", None),
    ],
)
def test_colour_spaces(model, depth, ok):
    if ok:
        assert logic.bytes_per_channel(model, depth) == ok
    else:
        with pytest.raises(PluginError, match=f"{model}/{depth}.*Convert"):
            logic.bytes_per_channel(model, depth)


def test_png_roundtrip_with_pillow():
    rng = random.Random(2)
    w, h = 9, 4
    rgba = bytes(rng.randrange(256) for _ in range(w * h * 4))
    png = encode_png(w, h, rgba)
    assert Image.open(io.BytesIO(png)).convert("RGBA").tobytes() == rgba
    assert png_size(png) == (w, h)


def test_png_errors():
    with pytest.raises(PluginError, match="PNG"):
        png_size(b"GIF89a....")
    with pytest.raises(ValueError):
        encode_png(2, 2, b"\x00" * 15)


def test_source_region_layer_canvas_selection():
    canvas = Rect(0, 0, 100, 80)
    assert logic.source_region(Rect(10, 5, 30, 20), canvas, None) == Rect(10, 5, 30, 20)
    # a layer sticking out of the canvas is cut to it
    assert logic.source_region(Rect(-10, 70, 50, 50), canvas, None) == Rect(0, 70, 40, 10)
    # selection bounds narrow it further
    assert logic.source_region(Rect(10, 5, 30, 20), canvas, Rect(0, 0, 20, 10)) == Rect(10, 5, 10, 5)
    with pytest.raises(PluginError, match="empty"):
        logic.source_region(Rect(0, 0, 0, 0), canvas, None)
    with pytest.raises(PluginError, match="empty"):
        logic.source_region(Rect(200, 200, 5, 5), canvas, None)
    with pytest.raises(PluginError, match="selection"):
        logic.source_region(Rect(10, 5, 30, 20), canvas, Rect(50, 50, 5, 5))


def test_apply_mask():
    rgba = bytes([1, 2, 3, 255, 4, 5, 6, 200, 7, 8, 9, 100])
    assert logic.apply_mask(rgba, None) == rgba
    assert logic.apply_mask(rgba, b"\xff\xff\xff") == rgba
    out = logic.apply_mask(rgba, bytes([0, 128, 255]))
    assert out == bytes([1, 2, 3, 0, 4, 5, 6, (200 * 128 + 127) // 255, 7, 8, 9, 100])
    with pytest.raises(ValueError):
        logic.apply_mask(rgba, b"\x00")


def test_presets_and_params_validate_on_the_server_side():
    assert set(PRESETS) == {"preview", "normal", "high", "full"}
    assert PRESETS["full"][0] == 0  # the layer's own size, coarse to fine
    sizes = [PRESETS[p][0] for p in ("preview", "normal", "high")]
    iterations = [PRESETS[p][1] for p in ("preview", "normal", "high")]
    assert sizes == sorted(sizes) and iterations == sorted(iterations)
    for preset in PRESETS:
        size, iterations = preset_values(preset)  # what the dialog's spin boxes are set to
        params = build_params(iterations, strength=2.0, preserve_colors=True, size=size, seed=7)
        sp = StyleParams.from_dict(params)  # the server accepts exactly this dict
        assert (sp.size, sp.iterations) == PRESETS[preset]
        assert sp.style_weight == pytest.approx(2 * StyleParams().style_weight)
        assert sp.preserve_colors is True and sp.seed == 7
    assert StyleParams().style_weight == BASE_STYLE_WEIGHT
    with pytest.raises(PluginError, match="preset"):
        preset_values("ultra")
    for bad in (
        {"iterations": 0},
        {"iterations": True},
        {"strength": 0.0},
        {"strength": float("nan")},
        {"size": -1},
        {"size": 9000},
    ):
        kwargs = {"iterations": 10, "strength": 1.0, "size": 64, **bad}
        with pytest.raises(PluginError):
            build_params(**kwargs)
    assert "seed" not in build_params(10, seed=-1)


def test_layer_names():
    assert style_label("/x/y/starry_night.jpg") == "starry night"
    assert style_label(None, "  The  Scream ") == "The Scream"
    assert style_label(None, None) == "style"
    assert style_layer_name("starry night") == "Style: starry night"
    existing = {"Style: starry night", "Style: starry night #2"}
    assert style_layer_name("starry night", existing) == "Style: starry night #3"
    long = style_layer_name("x" * 200)
    assert len(long) == LAYER_NAME_MAX and long.endswith("…")


def test_server_url():
    assert check_server_url(" http://127.0.0.1:8765/ ") == "http://127.0.0.1:8765"
    assert check_server_url("http://a") == "http://a"  # a one-letter host is a host
    for bad in ("", "127.0.0.1:8765", "ftp://x", "http://", "https://"):
        with pytest.raises(PluginError):
            check_server_url(bad)


def test_progress():
    assert progress_fraction(None) is None
    assert progress_fraction({"state": "running", "iteration": 5, "total": 20}) == 0.25
    assert progress_fraction({"iteration": 50, "iterations": 20}) == 1.0
    assert progress_fraction({"progress": 40}) == 0.4
    assert progress_text({"state": "queued"}) == "Queued on the server…"
    text = progress_text({"state": "running", "iteration": 3, "total": 10, "eta_s": 4.2})
    assert text == "Iteration 3/10, about 5 s left"


def test_loss_polyline_is_log_scaled_and_skips_what_cannot_be_drawn():
    assert logic.loss_polyline([1000.0, 100.0, 10.0], 100, 50, margin=0) == [(0, 0), (50, 25), (100, 50)]
    # missing, zero and non-finite points are left out; x still counts every iteration
    assert logic.loss_polyline([100.0, None, 0.0, float("nan"), 1.0], 40, 20, margin=0) == [(0, 0), (40, 20)]
    line = logic.loss_polyline([5.0, 5.0], 30, 10, margin=2)  # a flat curve stays inside the box
    assert line == [(2, 2), (28, 2)]
    assert logic.loss_polyline([], 10, 10) == [] and logic.loss_polyline([None, float("inf")], 10, 10) == []


@pytest.mark.parametrize(
    ("target", "active", "created", "expected"),
    [
        ("photo", "photo", None, ("photo", None)),  # nothing changed
        ("photo", "sketch", None, ("sketch", None)),  # the painter picked another layer
        ("photo", "result", "result", ("photo", "result")),  # Krita activated our result: keep the original
        ("photo", "sketch", "result", ("sketch", None)),  # a layer of their own: follow, and forget the result
        ("sketch", "result", None, ("result", None)),  # ...so picking the result later targets it
        ("photo", None, "result", ("photo", "result")),  # no active layer: keep the target
        (None, "photo", None, ("photo", None)),
    ],
)
def test_the_target_follows_the_painter_not_the_result(target, active, created, expected):
    assert logic.follow_target(target, active, created) == expected
