"""Regions for a run, without a host: a style per selection mask, layer or channel (Gatys et al. 2017's spatial
control), checked and encoded for the job form, so both plug-ins send the same fields and say the same words.

    regions = [Region("Sky", sky_mask, RegionStyle(path="starry.jpg")), Region("Ground", ground_mask, ...)]
    form = region_form(regions, width, height, load_style)   # PluginError for what the painter should fix
    run_job(client, content_png, params=params, regions=form)  # region1_mask, region1_style, ... in the form

Each mask is one byte a pixel over the pixels sent (255: wholly in the region); it goes as a grey PNG of the same
size, which the server reads as the region's weight.

Standard library only, Python 3.8: it runs in Krita's and GIMP's own Python. `stylelayer install-plugin`
copies it from plugins/common into each plug-in's folder.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

from stylelayer_image import encode_png, style_label
from stylelayer_messages import PluginError

MAX_REGIONS = 8  # = stylelayer.limits.MAX_REGIONS (a test checks)


class RegionStyle(NamedTuple):
    """A region's style: an image file, or a style of the server's library (its id and name)."""

    path: str | None = None
    style_id: str | None = None
    name: str | None = None

    @property
    def label(self) -> str:
        return style_label(self.path, self.name or (self.style_id if not self.path else None))


class Region(NamedTuple):
    name: str  # the selection mask's, layer's or channel's name, as the painter sees it
    mask: bytes  # one byte a pixel over the pixels sent, rows top to bottom
    style: RegionStyle | None  # None: not chosen yet


def region_form(
    regions: Sequence[Region], width: int, height: int, load_style: Callable[[str], bytes]
) -> list[tuple[bytes, bytes | None, str | None]]:
    """The regions as the client's form takes them, (mask PNG, style PNG or None, library id or None) each;
    PluginError naming the region for one the painter must fix: no style, or a mask that covers nothing."""
    if len(regions) > MAX_REGIONS:
        raise PluginError(f"At most {MAX_REGIONS} regions per run; there are {len(regions)}.")
    form = []
    for region in regions:
        if len(region.mask) != width * height:
            raise ValueError(f"the mask of {region.name!r} has {len(region.mask)} bytes for {width}x{height}")
        if not region.mask.strip(b"\x00"):
            raise PluginError(
                f"The region “{region.name}” covers nothing of the pixels sent: select or paint something in it, "
                "or leave it out."
            )
        style = region.style
        if style is None or not (style.path or style.style_id):
            raise PluginError(f"Choose a style for the region “{region.name}”.")
        png = load_style(style.path) if style.path else None
        form.append((encode_png(width, height, region.mask, channels=1), png, None if png else style.style_id))
    return form


def regions_label(regions: Sequence[Region]) -> str:
    """The new layer's label: the regions' styles, each once, in order ("starry night + the scream")."""
    labels: list[str] = []
    for region in regions:
        label = region.style.label if region.style is not None else "style"
        if label not in labels:
            labels.append(label)
    return " + ".join(labels)


def parse_region_spec(text: str) -> list[tuple[str, str]]:
    """(channel or layer name, style file) pairs from "Sky=/art/starry.jpg; Ground=/art/scream.jpg" (one pair a line
    or separated by ';'), as a script or GIMP's dialog gives them; PluginError for a pair without both halves."""
    pairs = []
    for part in text.replace("\n", ";").split(";"):
        if not part.strip():
            continue
        name, sep, path = part.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise PluginError(f"Regions: “{part.strip()}” is not “channel name=style image file”.")
        pairs.append((name.strip(), path.strip()))
    names = [name for name, _ in pairs]
    for name in names:
        if names.count(name) > 1:
            raise PluginError(f"Regions: “{name}” is named twice; give each channel one style.")
    return pairs


def with_region_style(text: str, name: str, path: str | None) -> str:
    """The region spec `text` with `name`'s style file set to `path` (None: the region taken out), the other pairs
    kept in their order: what GIMP's per-channel file choosers write into the `regions` argument."""
    if ";" in name or "=" in name:
        raise PluginError(f"Regions: rename “{name}”: a channel name with ';' or '=' cannot take a style here.")
    if path and ";" in path:
        raise PluginError(f"Regions: rename “{path}”: a style file whose path holds ';' cannot be given here.")
    pairs = [(other, style) for other, style in parse_region_spec(text) if other != name]
    if path:
        pairs.append((name, path))
    return "; ".join(f"{other}={style}" for other, style in pairs)
