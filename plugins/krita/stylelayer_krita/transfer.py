"""Document side of a style transfer, without Qt imports: read the source pixels, insert the result layer.

Split in three steps so the dialog can run the network part on a QThread while Krita's objects are only
touched on the GUI thread:

    source = prepare(doc, node, codec)             # GUI thread: reads pixels, encodes the PNG
    png = request(source, client, style_png, ...)  # any thread: the HTTP job (blocking), with loss points
    node = insert_result(source, png, name, codec) # GUI thread: adds the new layer, or leaves doc as it was

`run_style_transfer` chains them synchronously; the end-to-end test and scripts call it directly.
The Krita objects are used duck-typed (Document, Node, Selection from libkis), so tests pass fakes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from . import logic
from .logic import PluginError, Rect
from .stylelayer_client import StylelayerError


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
    mask: bytes | None  # selection mask over `rect`, None when there is no selection
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


def prepare(doc: Any, node: Any, codec: Codec) -> Source:
    """Read the active layer (or the selection's bounds of it) as an RGBA PNG; changes nothing."""
    if doc is None:
        raise PluginError("Open an image first: there is no active document.")
    if node is None:
        raise PluginError("Select a layer first: there is no active layer.")
    if node.parentNode() is None:
        raise PluginError("The active node is the image's root; select a layer.")
    if node.type() in ("transparencymask", "filtermask", "selectionmask", "transformmask", "colorizemask"):
        raise PluginError(f"The active node is a mask ({node.type()}); select a layer instead.")
    logic.bytes_per_channel(doc.colorModel(), doc.colorDepth(), "The image")
    channel_bytes = logic.bytes_per_channel(node.colorModel(), node.colorDepth())
    canvas = Rect(0, 0, int(doc.width()), int(doc.height()))
    selection = doc.selection()
    sel_rect = None
    if selection is not None and selection.width() > 0 and selection.height() > 0:
        sel_rect = Rect(int(selection.x()), int(selection.y()), int(selection.width()), int(selection.height()))
    rect = logic.source_region(_rect(node.bounds()), canvas, sel_rect)
    raw = bytes(node.pixelData(*rect.as_tuple()))
    expected = rect.width * rect.height * 4 * channel_bytes
    if len(raw) != expected:
        raise PluginError(f"Krita returned {len(raw)} bytes of pixels for the layer; expected {expected}.")
    rgba = logic.from_krita(raw, channel_bytes)
    mask = bytes(selection.pixelData(*rect.as_tuple())) if sel_rect is not None else None
    if mask is not None and mask.count(0) == len(mask):
        raise PluginError("Nothing is selected inside the active layer.")
    return Source(
        doc=doc,
        node=node,
        rect=rect,
        mask=mask,
        content_png=codec.encode(rect.width, rect.height, rgba),
        channel_bytes=logic.bytes_per_channel(doc.colorModel(), doc.colorDepth(), "The image"),
    )


def make_client(server_url: str, timeout: float = 30) -> Any:
    from .stylelayer_client import StylelayerClient

    return StylelayerClient(logic.check_server_url(server_url), timeout=timeout)


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

    on_losses(points) gets each batch of new loss points ({"iteration", "content", "style", "tv", "total"}).
    """
    if style_png is None and not style_id:
        raise PluginError("Choose a style image (a file, or one from the server's library).")
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
    )


def insert_result(source: Source, result_png: bytes, layer_name: str, codec: Codec) -> Any:
    """Add the result as a new paint layer directly above the source layer; on failure the document is as before."""
    rect = source.rect
    width, height = logic.png_size(result_png)  # PluginError unless it is a PNG
    if (width, height) != (rect.width, rect.height):
        raise PluginError(f"The server sent back a {width}x{height} image for a {rect.width}x{rect.height} input.")
    rgba = codec.decode(result_png)[2]
    rgba = logic.apply_mask(rgba, source.mask)
    data = logic.to_krita(rgba, source.channel_bytes)
    doc, node = source.doc, source.node
    parent = node.parentNode()
    if parent is None:
        raise PluginError("The source layer was removed while the style transfer ran; nothing was added.")
    new = doc.createNode(layer_name, "paintlayer")
    if new is None:
        raise PluginError("Krita could not create a new paint layer.")
    try:
        if logic.bytes_per_channel(new.colorModel(), new.colorDepth(), "The new layer") != source.channel_bytes:
            raise PluginError("The new layer's colour depth differs from the image's; nothing was added.")
        if not parent.addChildNode(new, node):
            raise PluginError("Krita refused to add the new layer.")
        new.setPixelData(data, rect.x, rect.y, rect.width, rect.height)
    except BaseException:
        if new.parentNode() is not None:
            new.remove()
        raise
    doc.setActiveNode(new)
    doc.refreshProjection()
    return new


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
) -> TransferResult:
    """Stylise `node` of `doc` with a style file (or a server library `style_id`); returns the new layer.

    Synchronous: fine for scripts and tests; the dialog runs `request` on a QThread instead. Raises
    PluginError (or the client's StylelayerError) with the document unchanged. `codec` defaults to Krita's
    QImage codec.
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
    new = insert_result(source, png, name, codec)
    return TransferResult(node=new, name=name, rect=source.rect, result_png=png)
