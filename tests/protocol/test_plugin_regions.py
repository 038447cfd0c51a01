"""The plug-ins' regions (plugins/common/stylelayer_regions.py) through the real server: the masks they read from
selection masks, layers or channels arrive at the engine as the regions painted, each with its own style (a file
or a library id); what the painter must fix (a region without a style, one that covers nothing) is a PluginError
naming the region, before anything is sent."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from protocol_helpers import gradient, png_bytes
from stylelayer_messages import PluginError
from stylelayer_regions import (
    MAX_REGIONS,
    Region,
    RegionStyle,
    parse_region_spec,
    region_form,
    regions_label,
    with_region_style,
)
from stylelayer_workflow import run_job

from stylelayer import limits

W, H = 20, 12
STYLES = {"/art/starry.png": png_bytes(gradient(16, 16)), "/art/scream.png": png_bytes(gradient(10, 14))}


def _half(top: bool) -> bytes:
    """255 in the top (or bottom) half of a W x H mask, with one soft row at the border."""
    rows = [255 if (y < H // 2) == top else 0 for y in range(H)]
    rows[H // 2 - (0 if top else 1)] = 128
    return b"".join(bytes([v]) * W for v in rows)


def test_regions_reach_the_engine_with_their_masks_and_styles(server, fake_engine) -> None:
    """Two regions, one styled by a file and one by a library style: the engine gets both masks byte for byte and
    each region's style, and no style of its own for the job (what no region covers keeps the layer)."""
    _, client = server
    library = client.add_style("scream", STYLES["/art/scream.png"])
    regions = [
        Region("Sky", _half(True), RegionStyle(path="/art/starry.png")),
        Region("Ground", _half(False), RegionStyle(style_id=library["id"], name="scream")),
    ]
    form = region_form(regions, W, H, STYLES.__getitem__)
    result = run_job(client, png_bytes(gradient(W, H)), params={"iterations": 1, "seed": 1}, regions=form)
    assert Image.open(io.BytesIO(result.png)).size == (W, H)
    sent = fake_engine.regions[-1]
    assert [region.mask.convert("L").tobytes() for region in sent] == [_half(True), _half(False)]
    assert [[style.size for style in region.styles] for region in sent] == [[(16, 16)], [(10, 14)]]
    assert fake_engine.calls[-1][1] == []
    assert regions_label(regions) == "starry + scream"


@pytest.mark.parametrize(
    ("region", "message"),
    [
        (
            Region("Sky", bytes(W * H), RegionStyle(path="/art/starry.png")),
            "The region “Sky” covers nothing of the pixels sent: select or paint something in it, or leave it out.",
        ),
        (Region("Ground", _half(False), None), "Choose a style for the region “Ground”."),
        (Region("Ground", _half(False), RegionStyle()), "Choose a style for the region “Ground”."),
    ],
)
def test_a_region_the_painter_must_fix_is_named_before_anything_is_sent(region, message) -> None:
    loaded = []
    with pytest.raises(PluginError) as caught:
        region_form([Region("Fine", _half(True), RegionStyle(path="/art/starry.png")), region], W, H, loaded.append)
    assert str(caught.value) == message


def test_too_many_regions_are_refused_and_the_limit_is_the_servers() -> None:
    assert MAX_REGIONS == limits.MAX_REGIONS
    many = [Region(str(i), _half(True), RegionStyle(path="/art/starry.png")) for i in range(MAX_REGIONS + 1)]
    with pytest.raises(PluginError, match=f"At most {MAX_REGIONS} regions per run; there are {MAX_REGIONS + 1}"):
        region_form(many, W, H, STYLES.__getitem__)


def test_region_specs_pair_channels_with_style_files() -> None:
    assert parse_region_spec(" Sky = /art/a b.jpg ;\nGround=/art/c.png\n") == [
        ("Sky", "/art/a b.jpg"),
        ("Ground", "/art/c.png"),
    ]
    assert parse_region_spec("  ") == []
    with pytest.raises(PluginError, match="“Sky” is not “channel name=style image file”"):
        parse_region_spec("Sky")
    with pytest.raises(PluginError, match="“Sky” is named twice"):
        parse_region_spec("Sky=/a.png; Sky=/b.png")


def test_a_channels_file_chooser_sets_its_pair_and_keeps_the_others() -> None:
    spec = with_region_style("", "Sky", "/art/starry.png")
    assert spec == "Sky=/art/starry.png"
    spec = with_region_style(spec + "; Typed=/art/x.png", "Ground", "/art/scream.png")
    assert parse_region_spec(spec) == [
        ("Sky", "/art/starry.png"),
        ("Typed", "/art/x.png"),
        ("Ground", "/art/scream.png"),
    ]
    spec = with_region_style(spec, "Sky", "/art/other.png")  # chosen again: replaced, not twice
    assert parse_region_spec(spec)[-1] == ("Sky", "/art/other.png") and len(parse_region_spec(spec)) == 3
    assert parse_region_spec(with_region_style(spec, "Typed", None)) == [
        ("Ground", "/art/scream.png"),
        ("Sky", "/art/other.png"),
    ]
    with pytest.raises(PluginError, match="rename “/art/a;b.png”"):
        with_region_style(spec, "Sky", "/art/a;b.png")
    with pytest.raises(PluginError, match="rename “A=B”"):
        with_region_style(spec, "A=B", "/art/a.png")
