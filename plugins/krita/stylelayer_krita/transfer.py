"""Document side of a style transfer, without Qt imports: read the source pixels, insert the result layer.

Split in three steps so the dialog can run the network part on a QThread while Krita's objects are only
touched on the GUI thread:

    source = prepare(doc, node, codec)                      # GUI thread: reads pixels, encodes the PNG
    result = run_job(client, source.content_png, style_png, ...)  # any thread: stylelayer_workflow's job
    added = insert_result(source, result.png, label, codec, ops)  # GUI thread: adds the new layer, or leaves doc

The network half, the token and the new layer's name and place are the workflow's (stylelayer_workflow.py, shared
with GIMP); this module is Krita's side of it. `run_style_transfer` chains them synchronously; the end-to-end
test and scripts call it directly.
The Krita objects are used duck-typed (Document, Node, Selection from libkis), so tests pass fakes; `ops` (Krita's
own layer actions, krita_ops.py) is what gives a selection's shape an editable transparency mask.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from stylelayer_image import clear_outside, feather_mask, open_edges, style_label
from stylelayer_messages import PluginError
from stylelayer_params import DEFAULT_SERVER_URL
from stylelayer_regions import Region, RegionStyle
from stylelayer_workflow import check_result, connect, placement, run_job

from . import logic
from .logic import Rect


class LayerOps(Protocol):
    """Krita's own layer actions, for what libkis 5.1 cannot do from Python (krita_ops.KritaLayerOps)."""

    def add_layer_above(self, doc: Any, node: Any) -> Any | None: ...

    def add_mask(self, doc: Any, layer: Any, rect: Rect, mask: bytes) -> bool: ...


class Codec(Protocol):
    """PNG in and out: Krita uses qtcodec.QtCodec (QImage); the tests pass one built on Pillow."""

    def encode(self, width: int, height: int, rgba: bytes) -> bytes: ...

    def decode(self, png: bytes) -> tuple[int, int, bytes]: ...

    def load_style(self, path: str) -> bytes: ...


@dataclass
class Source:
    """What was read from the document, and where the result goes."""

    doc: Any
    node: Any
    rect: Rect
    mask: bytes | None  # selection mask over `rect` (a hard edge feathered inwards), None without a selection
    content_png: bytes
    channel_bytes: int  # 1 for U8, 2 for U16 (of the document, which new layers inherit)


@dataclass
class TransferResult:
    node: Any
    name: str
    rect: Rect
    result_png: bytes


MASK_TYPES = ("transparencymask", "filtermask", "selectionmask", "transformmask", "colorizemask")


def _rect(qrect: Any) -> Rect:
    return Rect(int(qrect.x()), int(qrect.y()), int(qrect.width()), int(qrect.height()))


def region(doc: Any, node: Any) -> tuple[Rect, Any]:
    """(the pixels a run would send, the selection or None): the layer's extent on the canvas, cut to the
    selection's bounds; PluginError naming the problem when there is nothing to send."""
    if doc is None:
        raise PluginError("Open an image first: there is no active document.")
    if node is None:
        raise PluginError("Select a layer first: there is no active layer.")
    if node.parentNode() is None:
        raise PluginError("The active node is the image's root; select a layer.")
    if node.type() in MASK_TYPES:
        raise PluginError(f"The active node is a mask ({node.type()}); select a layer instead.")
    canvas = Rect(0, 0, int(doc.width()), int(doc.height()))
    selection = doc.selection()
    sel_rect = None
    if selection is not None and selection.width() > 0 and selection.height() > 0:
        sel_rect = Rect(int(selection.x()), int(selection.y()), int(selection.width()), int(selection.height()))
    return logic.source_region(_rect(node.bounds()), canvas, sel_rect), selection if sel_rect is not None else None


def prepare(doc: Any, node: Any, codec: Codec) -> Source:
    """Read the layer (or the selection's bounds of it) as an RGBA PNG, and the selection's mask; changes nothing."""
    rect, selection = region(doc, node)
    logic.bytes_per_channel(doc.colorModel(), doc.colorDepth(), "The image")
    channel_bytes = logic.bytes_per_channel(node.colorModel(), node.colorDepth())
    raw = bytes(node.pixelData(*rect.as_tuple()))
    expected = rect.width * rect.height * 4 * channel_bytes
    if len(raw) != expected:
        raise PluginError(f"Krita returned {len(raw)} bytes of pixels for the layer; expected {expected}.")
    rgba = logic.from_krita(raw, channel_bytes)
    mask = None
    if selection is not None:
        mask = bytes(selection.pixelData(*rect.as_tuple()))
        if mask.count(0) == len(mask):
            raise PluginError("Nothing is selected inside the layer.")
        # a hard edge fades in; a feathered one is kept
        bounds = (selection.x(), selection.y(), selection.width(), selection.height())
        edges = open_edges(rect.as_tuple(), bounds, (0, 0, int(doc.width()), int(doc.height())))
        mask = feather_mask(mask, rect.width, rect.height, open_edges=edges)
    return Source(
        doc=doc,
        node=node,
        rect=rect,
        mask=mask,
        content_png=codec.encode(rect.width, rect.height, rgba),
        channel_bytes=logic.bytes_per_channel(doc.colorModel(), doc.colorDepth(), "The image"),
    )


# ---- regions: a style per selection mask, or per layer of a group -----------------------------------------------
def selection_masks(node: Any) -> list[Any]:
    """The layer's selection masks and local selections, bottom to top: each is a region."""
    return [child for child in node.childNodes() if child.type() == "selectionmask"]


def group_layers(group: Any) -> list[Any]:
    """The layers of a group, bottom to top (not their masks): each layer's alpha is a region."""
    return [child for child in group.childNodes() if child.type() not in MASK_TYPES]


def groups(doc: Any) -> list[Any]:
    """Every group layer of the document, top level first: the groups whose layers can be regions."""
    found: list[Any] = []
    pending = list(doc.rootNode().childNodes())
    while pending:
        node = pending.pop(0)
        if node.type() == "grouplayer":
            found.append(node)
            pending.extend(node.childNodes())
    return found


def region_mask(source: Source, node: Any) -> bytes:
    """One byte a pixel over the pixels sent: a selection mask's own values, or a layer's alpha."""
    rect = source.rect
    raw = bytes(node.pixelData(*rect.as_tuple()))
    if node.type() == "selectionmask":
        if len(raw) != rect.width * rect.height:
            raise PluginError(f"Krita returned {len(raw)} bytes for the selection mask “{node.name()}”.")
        return raw
    channel_bytes = logic.bytes_per_channel(node.colorModel(), node.colorDepth(), f"The layer “{node.name()}”")
    if len(raw) != rect.width * rect.height * 4 * channel_bytes:
        raise PluginError(f"Krita returned {len(raw)} bytes of pixels for the layer “{node.name()}”.")
    return logic.from_krita(raw, channel_bytes)[3::4]


def read_regions(source: Source, nodes: list[Any], styles: dict[Any, RegionStyle]) -> list[Region]:
    """The regions of a run: each node's mask over the pixels sent, with the style chosen for it (by the
    node's key: Krita's unique id)."""
    return [Region(node.name(), region_mask(source, node), styles.get(node_key(node))) for node in nodes]


def insert_result(
    source: Source, result_png: bytes, label: str, codec: Codec, ops: LayerOps | None = None
) -> TransferResult:
    """Add the result as a new paint layer named after the style (`label`) above the source layer and the results
    of earlier runs stacked right above it (stylelayer_workflow.placement: the newest is on top, where the painter
    sees it); on failure the document is as before.

    Without a selection: one libkis insertion, one undo step. With one, the layer covers the selection's bounds
    and is transparent outside the selection; with `ops`, Krita's own actions add the layer and a transparency mask
    holding the selection's (feathered) shape, which the painter can edit (two undo steps: the mask, then the
    layer). Where they cannot (another document or layer active), the shape goes into the layer's alpha.
    """
    rect = source.rect
    check_result(result_png, rect.width, rect.height)  # PluginError unless a PNG of the region's size
    rgba = codec.decode(result_png)[2]
    doc, node = source.doc, source.node
    parent = node.parentNode()
    if parent is None:
        raise PluginError("The source layer was removed while the style transfer ran; nothing was added.")
    siblings = parent.childNodes()
    keys = [node_key(child) for child in siblings]
    place = placement(label, [child.name() for child in siblings], keys.index(node_key(node)))
    layer_name, above = place.name, siblings[place.above]
    if source.mask is not None and ops is not None:
        new = ops.add_layer_above(doc, above)
        if new is not None:
            _fill(new, layer_name, logic.to_krita(clear_outside(rgba, source.mask), source.channel_bytes), source)
            if not ops.add_mask(doc, new, rect, source.mask):  # the shape in the alpha instead
                data = logic.to_krita(logic.apply_mask(rgba, source.mask), source.channel_bytes)
                new.setPixelData(data, rect.x, rect.y, rect.width, rect.height)
            doc.refreshProjection()
            return TransferResult(new, layer_name, rect, result_png)
    data = logic.to_krita(logic.apply_mask(rgba, source.mask), source.channel_bytes)
    new = doc.createNode(layer_name, "paintlayer")
    if new is None:
        raise PluginError("Krita could not create a new paint layer.")
    try:
        if logic.bytes_per_channel(new.colorModel(), new.colorDepth(), "The new layer") != source.channel_bytes:
            raise PluginError("The new layer's colour depth differs from the image's; nothing was added.")
        if not parent.addChildNode(new, above):
            raise PluginError("Krita refused to add the new layer.")
        new.setPixelData(data, rect.x, rect.y, rect.width, rect.height)
    except BaseException:
        if new.parentNode() is not None:
            new.remove()
        raise
    doc.setActiveNode(new)
    doc.refreshProjection()
    return TransferResult(new, layer_name, rect, result_png)


def node_key(node: Any) -> Any:
    """A layer's identity across libkis wrappers (each call returns a new Python object): Krita's unique id; the
    object's for fakes without one; None for no node."""
    if node is None:
        return None
    unique = getattr(node, "uniqueId", None)
    return unique().toString() if unique is not None else id(node)


def _fill(new: Any, layer_name: str, data: bytes, source: Source) -> None:
    """Name and paint a layer Krita's action added (neither is an undo step of its own); removed on failure."""
    rect = source.rect
    try:
        if logic.bytes_per_channel(new.colorModel(), new.colorDepth(), "The new layer") != source.channel_bytes:
            raise PluginError("The new layer's colour depth differs from the image's; nothing was added.")
        new.setName(layer_name)
        new.setPixelData(data, rect.x, rect.y, rect.width, rect.height)
    except BaseException:
        new.remove()
        raise


def run_style_transfer(
    doc: Any,
    node: Any,
    style_path: str | None = None,
    params: dict | None = None,
    server_url: str = DEFAULT_SERVER_URL,
    on_progress: Callable[[dict, bytes | None], None] | None = None,
    *,
    style_id: str | None = None,
    style_name: str | None = None,
    should_cancel: Callable[[], bool] | None = None,
    client: Any = None,
    codec: Codec | None = None,
    ops: LayerOps | None = None,
) -> TransferResult:
    """Stylise `node` of `doc` with a style file (or a server library `style_id`); returns the new layer.

    Synchronous: fine for scripts and tests; the dialog runs `run_job` on a QThread instead. Raises
    PluginError (or the client's StylelayerError) with the document unchanged. `codec` defaults to Krita's
    QImage codec; `ops` (krita_ops.KritaLayerOps()) turns a selection into a transparency mask.
    """
    if codec is None:
        from .qtcodec import QtCodec  # imported here: the rest of this module runs without Qt

        codec = QtCodec()
    source = prepare(doc, node, codec)
    style_png = codec.load_style(style_path) if style_path else None
    client = client or connect(server_url)
    result = run_job(client, source.content_png, style_png, style_id, params, on_progress, should_cancel)
    label = style_label(style_path, style_name or (style_id if not style_path else None))
    return insert_result(source, result.png, label, codec, ops)
