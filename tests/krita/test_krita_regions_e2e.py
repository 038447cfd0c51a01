"""A style per region in a REAL Krita 5 (under xvfb-run), through the dialog, against a live server with the real
engine: two local selections on the photo's layer, The Starry Night for the top one and The Scream for the bottom
one, chosen as a painter does (the style in the chooser, then "Use the style above for this region"). One layer
comes back above the photo, the photo is untouched, and in each region the returned layer's guided Gram matrices
are nearer its own style's than the other's (tests/region_measure.py, the engine test's measure)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from region_measure import region_misses
from test_krita_e2e import _image, cpu_engine, kra_stack, krita_home, layers, run_krita, server  # noqa: F401
from testimages import real_image

pytestmark = [pytest.mark.krita, pytest.mark.slow]

SIDE = 96
PARAMS = {"size": SIDE, "iterations": 40, "seed": 1}


def _rect_mask(size: tuple[int, int], rect: list[int]) -> Image.Image:
    mask = Image.new("L", size, 0)
    x, y, w, h = rect
    mask.paste(255, (x, y, x + w, y + h))
    return mask


def _run(home: Path, srv, tmp_path: Path, **extra) -> tuple[dict, Path, tuple[int, int], list, list]:
    """Krita's dialog with two regions over the photo's halves, Sky (The Starry Night) above Ground (The Scream)."""
    tmp = tmp_path / "inputs"
    tmp.mkdir()
    content = _image("tubingen", tmp, SIDE)
    styles = {"starry": _image("starry_night", tmp, 128), "scream": _image("the_scream", tmp, 128)}
    width, height = Image.open(content).size
    top, bottom = [0, 0, width, height // 2], [0, height // 2, width, height - height // 2]
    regions = [["Sky", top, str(styles["starry"])], ["Ground", bottom, str(styles["scream"])]]
    config = {
        "mode": "dialog",
        "image": str(content),
        "style": str(styles["starry"]),
        "server_url": srv.url,
        "params": PARAMS,
        "regions": regions,
        "dialog_timeout_s": 150,
        **extra,
    }
    out = tmp_path / "run"
    result = run_krita(home, out, config, timeout=200)
    assert result["ok"], result.get("traceback") or result.get("error_message") or result.get("dialog")
    assert result["texts"]["regions"] == ["Sky: starry night", "Ground: the scream"]
    assert result["layer_name"] == "Style: starry night + the scream"
    assert result["original_unchanged"] is True
    return result, out, (width, height), top, bottom


def _check_regions(result: dict, out: Path, size: tuple[int, int], top: list, bottom: list, engine) -> None:
    """The new layer covers the photo, and each half is its own style by the guided-Gram measure."""
    width, height = size
    name = result["layer_name"]
    rect = next(entry[2] for entry in layers(result) if entry[0] == name)
    assert rect == [0, 0, width, height]
    layer = Image.frombytes("RGBA", (width, height), (out / "new_layer.bgra").read_bytes(), "raw", "BGRA")
    assert layer.getchannel("A").getextrema() == (255, 255)  # the whole layer, no selection cut it
    starry, scream = real_image("starry_night", 128), real_image("the_scream", 128)
    pairs = [(_rect_mask((width, height), top), starry, scream), (_rect_mask((width, height), bottom), scream, starry)]
    assert region_misses(engine, layer.convert("RGB"), pairs) == []
    assert region_misses(engine, real_image("tubingen", SIDE), pairs)  # the photo alone fails the measure


def test_two_selection_masks_two_styles_one_layer(krita_home, server, cpu_engine, tmp_path):  # noqa: F811
    result, out, size, top, bottom = _run(krita_home, server, tmp_path)
    original, name = result["original"]["name"], result["layer_name"]
    assert [entry[0] for entry in layers(result)] == [original, name]  # one new layer, right above the photo
    assert result["original_children"] == [["Sky", "selectionmask"], ["Ground", "selectionmask"]]
    assert [layer["name"] for layer in kra_stack(out / "doc.kra")] == [original, name]
    _check_regions(result, out, size, top, bottom, cpu_engine)


def test_the_layers_of_a_group_two_styles_one_layer(krita_home, server, cpu_engine, tmp_path):  # noqa: F811
    """The same two regions as the layers of a hidden group (each layer's alpha): one layer between photo and group."""
    result, out, size, top, bottom = _run(krita_home, server, tmp_path, regions_from="group")
    original, name = result["original"]["name"], result["layer_name"]
    assert [entry[0] for entry in layers(result)] == [original, name, "Regions"]
    assert result["original_children"] == []
    _check_regions(result, out, size, top, bottom, cpu_engine)
