"""Document side of a style transfer, without Qt imports: read the source pixels, insert the result layer.

Split in three steps so the dialog can run the network part on a QThread while Krita's objects are only
touched on the GUI thread:

    source = prepare(doc, node, codec)             # GUI thread: reads pixels, encodes the PNG
    png = request(source, client, style_png, ...)  # any thread: the HTTP job (blocking), with loss points
    node = insert_result(source, png, name, codec, ops)  # GUI thread: adds the new layer, or leaves doc as it was

`run_style_transfer` chains them synchronously; the end-to-end test and scripts call it directly.
The Krita objects are used duck-typed (Document, Node, Selection from libkis), so tests pass fakes; `ops` (Krita's
own layer actions, krita_ops.py) is what gives a selection's shape an editable transparency mask.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from . import logic
from .logic import PluginError, Rect
from .stylelayer_client import StylelayerError


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
    if node.type() in ("transparencymask", "filtermask", "selectionmask", "transformmask", "colorizemask"):
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
    mask = bytes(selection.pixelData(*rect.as_tuple())) if selection is not None else None
    if mask is not None and mask.count(0) == len(mask):
        raise PluginError("Nothing is selected inside the layer.")
    if mask is not None:  # a hard edge fades in; a feathered one is kept
        bounds = (selection.x(), selection.y(), selection.width(), selection.height())
        edges = logic.open_edges(rect.as_tuple(), bounds, (0, 0, int(doc.width()), int(doc.height())))
        mask = logic.feather_mask(mask, rect.width, rect.height, open_edges=edges)
    return Source(
        doc=doc,
        node=node,
        rect=rect,
        mask=mask,
        content_png=codec.encode(rect.width, rect.height, rgba),
        channel_bytes=logic.bytes_per_channel(doc.colorModel(), doc.colorDepth(), "The image"),
    )


def make_client(server_url: str, token: str | None = None, timeout: float = 30) -> Any:
    from .stylelayer_client import StylelayerClient

    return StylelayerClient(logic.check_server_url(server_url), token=(token or "").strip() or None, timeout=timeout)


class LossFollower:
    """After each poll, fetches the job's new loss points (GET .../losses?since=N) for the dialog's live curve.

    The curve is an extra: if the server cannot give it (an older server without the route), following stops
    and the job goes on.
    """

    def __init__(self, client: Any, on_losses: Callable[[list[dict]], None]):
        self.client, self.on_losses = client, on_losses
        self.since = 0
        self.stopped = False

    def __call__(self, status: dict) -> None:
        if self.stopped or status.get("state") == "queued" or not status.get("id"):
            return
        try:
            page = self.client.losses(status["id"], self.since)
        except StylelayerError:
            self.stopped = True
            return
        if page["points"]:
            self.since = page["next"]
            self.on_losses(page["points"])


def request(
    source: Source,
    client: Any,
    style_png: bytes | None = None,
    style_id: str | None = None,
    params: dict | None = None,
    on_progress: Callable[[dict, bytes | None], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    on_losses: Callable[[list[dict]], None] | None = None,
) -> bytes:
    """The server job; blocking, touches no Krita object, so it may run on a worker thread.

    The server is checked first (client.probe: another web server, a wrong token or version are told as such
    before the layer is uploaded). on_losses(points) gets each batch of new loss points ({"iteration",
    "content", "style", "tv", "total"}).
    """
    if style_png is None and not style_id:
        raise PluginError("Choose a style image (a file, or one from the server's library).")
    client.probe()
    follow = LossFollower(client, on_losses) if on_losses is not None else None

    def progress(status: dict, preview: bytes | None) -> None:
        if follow is not None:
            follow(status)
        if on_progress is not None:
            on_progress(status, preview)

    return client.run_job(
        source.content_png,
        style_png=style_png,
        style_id=style_id,
        params=params,
        on_progress=progress,
        should_cancel=should_cancel,
        abandon_after=logic.abandon_after_s(),  # Krita closed or crashed mid-job: the server stops by itself
    )


def insert_result(source: Source, result_png: bytes, layer_name: str, codec: Codec, ops: LayerOps | None = None) -> Any:
    """Add the result as a new paint layer above the source layer and the results of earlier runs stacked right
    above it (logic.insert_above: the newest is on top, where the painter sees it); on failure the document is as
    before.

    Without a selection: one libkis insertion, one undo step. With one, the layer covers the selection's bounds
    and is transparent outside the selection; with `ops`, Krita's own actions add the layer and a transparency mask
    holding the selection's (feathered) shape, which the painter can edit (two undo steps: the mask, then the
    layer). Where they cannot (another document or layer active), the shape goes into the layer's alpha.
    """
    rect = source.rect
    width, height = logic.png_size(result_png)  # PluginError unless it is a PNG
    if (width, height) != (rect.width, rect.height):
        raise PluginError(f"The server sent back a {width}x{height} image for a {rect.width}x{rect.height} input.")
    rgba = codec.decode(result_png)[2]
    doc, node = source.doc, source.node
    parent = node.parentNode()
    if parent is None:
        raise PluginError("The source layer was removed while the style transfer ran; nothing was added.")
    siblings = parent.childNodes()
    keys = [_key(child) for child in siblings]
    above = siblings[logic.insert_above([child.name() for child in siblings], keys.index(_key(node)))]
    if source.mask is not None and ops is not None:
        new = ops.add_layer_above(doc, above)
        if new is not None:
            _fill(new, layer_name, logic.to_krita(logic.clear_outside(rgba, source.mask), source.channel_bytes), source)
            if not ops.add_mask(doc, new, rect, source.mask):  # the shape in the alpha instead
                data = logic.to_krita(logic.apply_mask(rgba, source.mask), source.channel_bytes)
                new.setPixelData(data, rect.x, rect.y, rect.width, rect.height)
            doc.refreshProjection()
            return new
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
    return new


def _key(node: Any) -> Any:
    """A layer's identity: Krita's unique id (libkis returns a new wrapper on each call); the object for fakes."""
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


def sibling_names(node: Any) -> set[str]:
    parent = node.parentNode()
    return {child.name() for child in parent.childNodes()} if parent is not None else set()


def run_style_transfer(
    doc: Any,
    node: Any,
    style_path: str | None = None,
    params: dict | None = None,
    server_url: str = logic.DEFAULT_SERVER_URL,
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

    Synchronous: fine for scripts and tests; the dialog runs `request` on a QThread instead. Raises
    PluginError (or the client's StylelayerError) with the document unchanged. `codec` defaults to Krita's
    QImage codec; `ops` (krita_ops.KritaLayerOps()) turns a selection into a transparency mask.
    """
    if codec is None:
        from .qtcodec import QtCodec  # imported here: the rest of this module runs without Qt

        codec = QtCodec()
    source = prepare(doc, node, codec)
    style_png = codec.load_style(style_path) if style_path else None
    client = client or make_client(server_url)
    png = request(source, client, style_png, style_id, params, on_progress, should_cancel)
    label = logic.style_label(style_path, style_name or (style_id if not style_path else None))
    name = logic.style_layer_name(label, sibling_names(node))
    new = insert_result(source, png, name, codec, ops)
    return TransferResult(node=new, name=name, rect=source.rect, result_png=png)
