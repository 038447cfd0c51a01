"""Document side of the plug-in against a fake libkis document: what is read, what is inserted where,
and that every failure leaves the document exactly as it was."""

from __future__ import annotations

import functools
import socket
import sys

import pytest
from krita_fakes import FakeDoc, FakeNode, FakeSelection, PillowCodec
from stylelayer_client import JobCancelled, JobFailed, ServerUnavailable
from stylelayer_image import EDGE_FEATHER, encode_png, feather_mask, png_size
from stylelayer_krita import logic, transfer
from stylelayer_messages import PluginError
from stylelayer_regions import RegionStyle
from stylelayer_workflow import run_job

CODEC = PillowCodec()
run_style_transfer = functools.partial(transfer.run_style_transfer, codec=CODEC)  # Krita's default codec needs Qt


class FakeClient:
    """Stands in for StylelayerClient.run_job: inverts RGB, keeps alpha (like the server keeps alpha)."""

    def __init__(self, error: Exception | None = None, reply: bytes | None = None):
        self.error, self.reply, self.calls, self.probes = error, reply, [], 0

    def probe(self):
        """The check before a job (StylelayerClient.probe): a compatible server."""
        self.probes += 1
        return {"api": 1, "version": "0.1.0", "device": "cpu", "auth_required": False}

    def run_job(
        self, content_png, style_png=None, style_id=None, params=None, on_progress=None, should_cancel=None, **kw
    ):
        self.calls.append({"content": content_png, "style_png": style_png, "style_id": style_id, "params": params})
        if on_progress:
            on_progress({"state": "running", "iteration": 1, "total": 2}, None)
        if self.error:
            raise self.error
        if self.reply is not None:
            return self.reply
        w, h, rgba = CODEC.decode(content_png)
        out = bytearray(rgba)
        for i in range(0, len(out), 4):
            out[i], out[i + 1], out[i + 2] = 255 - out[i], 255 - out[i + 1], 255 - out[i + 2]
        return encode_png(w, h, bytes(out))


def invert_bgra(px: bytes) -> bytes:
    return bytes([255 - px[0], 255 - px[1], 255 - px[2], px[3]])


@pytest.fixture
def style_file(tmp_path):
    path = tmp_path / "starry_night.png"
    path.write_bytes(encode_png(2, 2, b"\x10\x20\x30\xff" * 4))
    return str(path)


def names(doc: FakeDoc) -> list[str]:
    return [n.name() for n in doc.root.children]


def test_reads_active_layer_sends_rgba_and_inserts_directly_above(fake_doc, style_file):
    sketch = fake_doc.active
    before = dict(sketch.pixels)
    client = FakeClient()
    progress = []
    result = run_style_transfer(
        fake_doc, sketch, style_file, {"iterations": 2}, on_progress=lambda s, p: progress.append(s), client=client
    )
    assert names(fake_doc) == ["Background", "Sketch", "Style: starry night", "Lines"]
    new = fake_doc.root.children[2]
    assert result.node is new and result.name == "Style: starry night"
    assert result.rect.as_tuple() == (2, 1, 8, 6)  # the layer's bounds, not the canvas
    # what was sent: the layer's pixels as RGBA
    w, h, sent = CODEC.decode(client.calls[0]["content"])
    assert (w, h) == (8, 6)
    assert sent == logic.swap_red_blue(sketch.pixelData(2, 1, 8, 6))
    with open(style_file, "rb") as fh:
        assert client.calls[0]["style_png"] == fh.read()
    assert client.calls[0]["params"] == {"iterations": 2}
    # what was inserted: same position, server result (inverted), BGRA
    assert new.bounds()._r == (2, 1, 8, 6)
    for pos, px in sketch.pixels.items():
        assert new.pixels[pos] == invert_bgra(px)
    assert sketch.pixels == before  # source untouched
    assert fake_doc.active is new and fake_doc.refreshed == 1
    assert progress and progress[0]["iteration"] == 1


def test_selection_limits_region_and_masks_alpha(fake_doc, style_file):
    sketch = fake_doc.active
    # ellipse-ish soft selection over part of the layer; bounds (0,0,6,5) overlap the layer at (2,1,4,4)
    fake_doc.sel = FakeSelection((0, 0, 6, 5), lambda x, y: 255 if (x + y) % 2 else 64)
    client = FakeClient()
    result = run_style_transfer(fake_doc, sketch, style_file, {}, client=client)
    assert result.rect.as_tuple() == (2, 1, 4, 4)
    assert CODEC.decode(client.calls[0]["content"])[:2] == (4, 4)
    new = result.node
    assert set(new.pixels) == {(x, y) for x in range(2, 6) for y in range(1, 5)}
    for (x, y), px in new.pixels.items():
        src = sketch.pixels[(x, y)]
        m = 255 if (x + y) % 2 else 64
        assert px[:3] == invert_bgra(src)[:3]
        assert px[3] == (src[3] * m + 127) // 255


def test_no_selection_object_but_empty_mask_is_refused(fake_doc, style_file):
    fake_doc.sel = FakeSelection((2, 1, 3, 3), lambda x, y: 0)
    before = fake_doc.snapshot()
    with pytest.raises(PluginError, match="Nothing is selected"):
        run_style_transfer(fake_doc, fake_doc.active, style_file, {}, client=FakeClient())
    assert fake_doc.snapshot() == before


def test_unique_name_when_run_twice_and_the_newest_on_top(fake_doc, style_file):
    """A second run paints the original again; its result goes above the first (the painter sees it), still
    under the layers that were above the original."""
    sketch = fake_doc.active
    run_style_transfer(fake_doc, sketch, style_file, {}, client=FakeClient())
    run_style_transfer(fake_doc, sketch, style_file, {}, client=FakeClient())
    assert names(fake_doc) == ["Background", "Sketch", "Style: starry night", "Style: starry night #2", "Lines"]
    run_style_transfer(fake_doc, sketch, style_file, {}, client=FakeClient())
    assert names(fake_doc)[-2:] == ["Style: starry night #3", "Lines"]


def test_library_style_id_names_the_layer(fake_doc):
    client = FakeClient()
    result = run_style_transfer(
        fake_doc, fake_doc.active, None, {}, style_id="abc123", style_name="The Scream", client=client
    )
    assert result.name == "Style: The Scream"
    assert client.calls[0]["style_id"] == "abc123" and client.calls[0]["style_png"] is None


def test_16_bit_document_roundtrip(style_file):
    doc = FakeDoc(4, 3, depth="U16")
    layer = doc.add_layer("Paint")
    layer.fill((0, 0, 4, 3), lambda x, y: bytes([0, x * 40, 0, y * 60, 0, 200, 255, 255]))
    client = FakeClient()
    result = run_style_transfer(doc, layer, style_file, {}, client=client)
    _, _, sent = CODEC.decode(client.calls[0]["content"])
    assert sent[:4] == bytes([200, 0, 0, 255])  # R from the high byte of channel 2
    assert result.node.pixels[(1, 2)] == logic.u8_to_u16(bytes([255 - 40, 255 - 120, 255 - 200, 255]))


@pytest.mark.parametrize(
    "error",
    [
        ServerUnavailable("cannot reach the stylelayer server", code="server_unavailable"),
        JobFailed("GPU out of memory", code="out_of_memory"),
        JobCancelled("the job was cancelled", code="job_cancelled"),
        PluginError("bad"),
    ],
)
def test_server_errors_leave_document_unchanged(fake_doc, style_file, error):
    before = fake_doc.snapshot()
    with pytest.raises(type(error)):
        run_style_transfer(fake_doc, fake_doc.active, style_file, {}, client=FakeClient(error=error))
    assert fake_doc.snapshot() == before


@pytest.mark.parametrize(
    ("reply", "match"),
    [
        (b"not a png", "PNG"),
        (encode_png(3, 3, b"\x00" * 36), "3x3 image for a 8x6"),
    ],
)
def test_bad_replies_leave_document_unchanged(fake_doc, style_file, reply, match):
    before = fake_doc.snapshot()
    with pytest.raises(PluginError, match=match):
        run_style_transfer(fake_doc, fake_doc.active, style_file, {}, client=FakeClient(reply=reply))
    assert fake_doc.snapshot() == before


def test_failure_while_writing_removes_the_new_layer(fake_doc, style_file, monkeypatch):
    from krita_fakes import FakeNode

    def boom(self, *a):
        raise RuntimeError("disk full")

    monkeypatch.setattr(FakeNode, "setPixelData", boom)
    before = fake_doc.snapshot()
    with pytest.raises(RuntimeError):
        run_style_transfer(fake_doc, fake_doc.active, style_file, {}, client=FakeClient())
    assert fake_doc.snapshot() == before


def test_real_client_server_down_leaves_document_unchanged(fake_doc, style_file):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens there
    before = fake_doc.snapshot()
    with pytest.raises(ServerUnavailable, match="cannot reach"):
        run_style_transfer(fake_doc, fake_doc.active, style_file, {}, server_url=f"http://127.0.0.1:{port}")
    assert fake_doc.snapshot() == before


@pytest.mark.parametrize(
    ("setup", "match"),
    [
        (lambda d: setattr(d, "active", None), "no active layer"),
        (lambda d: setattr(d, "depth", "F32"), "image uses the colour space RGBA/F32"),
        (lambda d: setattr(d.active, "model", "GRAYA"), "active layer uses the colour space GRAYA/U8"),
        (lambda d: setattr(d.active, "_type", "transparencymask"), "mask"),
        (lambda d: d.active.pixels.clear(), "empty"),
        (lambda d: setattr(d, "sel", FakeSelection((11, 8, 1, 1))), "selection does not overlap"),
    ],
)
def test_refusals_before_contacting_the_server(fake_doc, style_file, setup, match):
    setup(fake_doc)
    before = fake_doc.snapshot()
    client = FakeClient()
    with pytest.raises(PluginError, match=match):
        run_style_transfer(fake_doc, fake_doc.active, style_file, {}, client=client)
    assert client.calls == [] and fake_doc.snapshot() == before


def test_no_style_chosen(fake_doc):
    with pytest.raises(PluginError, match="Choose a style"):
        run_style_transfer(fake_doc, fake_doc.active, None, {}, client=FakeClient())


def test_package_imports_without_krita_or_qt(mock_krita_module):
    import importlib

    import stylelayer_krita

    importlib.reload(stylelayer_krita)  # with a `krita` module that has no Extension: nothing registers
    assert "stylelayer_krita.extension" not in sys.modules
    assert "PyQt5" not in sys.modules
    assert mock_krita_module.Krita.instance().activeDocument().activeNode().name() == "Sketch"


class LossClient(FakeClient):
    """A job polled while queued, then at iterations 1, 3 and 4; serves its loss points page by page like the
    server's GET /v1/jobs/{id}/losses?since=N (or fails it, like a server without that route)."""

    def __init__(self, losses_error: Exception | None = None):
        super().__init__()
        self.losses_error, self.iteration, self.since_asked = losses_error, 0, []

    def run_job(self, content_png, on_progress=None, **kw):
        for state, iteration in (("queued", 0), ("running", 1), ("running", 3), ("done", 4)):
            self.iteration = iteration
            on_progress({"id": "f" * 32, "state": state, "iteration": iteration, "total": 4}, None)
        return super().run_job(content_png, **kw)

    def losses(self, job_id, since=0):
        self.since_asked.append(since)
        if self.losses_error is not None:
            raise self.losses_error
        points = [{"iteration": i, "total": 10.0 / i} for i in range(since + 1, self.iteration + 1)]
        return {"id": job_id, "since": since, "next": points[-1]["iteration"] if points else since, "points": points}


def test_loss_points_follow_the_job_page_by_page(fake_doc, style_file):
    client, batches = LossClient(), []
    source = transfer.prepare(fake_doc, fake_doc.active, CODEC)
    with open(style_file, "rb") as fh:
        png = run_job(client, source.content_png, fh.read(), on_losses=batches.append).png
    assert png_size(png) == (8, 6)
    assert client.since_asked == [0, 1, 3]  # not while queued; each time after the last point it has
    assert [[p["iteration"] for p in batch] for batch in batches] == [[1], [2, 3], [4]]


def test_no_loss_curve_from_the_server_does_not_stop_the_job(fake_doc, style_file):
    from stylelayer_client import StylelayerError

    client, batches = LossClient(StylelayerError("no route", code="not_found", status=404)), []
    source = transfer.prepare(fake_doc, fake_doc.active, CODEC)
    with open(style_file, "rb") as fh:
        png = run_job(client, source.content_png, fh.read(), on_losses=batches.append).png
    assert png_size(png) == (8, 6) and batches == []
    assert client.since_asked == [0]  # tried once, then left alone


class FakeOps:
    """transfer.LayerOps as Krita's actions behave: a layer added right above, its alpha split into a mask."""

    def __init__(self, can_add: bool = True, can_mask: bool = True):
        self.can_add, self.can_mask, self.split, self.masks = can_add, can_mask, [], []

    def add_layer_above(self, doc, node):
        if not self.can_add:
            return None
        from krita_fakes import FakeNode

        new = FakeNode(doc, "Paint Layer 1", "paintlayer", doc.model, doc.depth)
        node.parentNode().addChildNode(new, node)
        return new

    def add_mask(self, doc, layer, rect, mask):
        self.split.append(layer.name())
        self.masks.append((rect.as_tuple(), mask))
        return self.can_mask


def test_a_hard_selection_edge_is_feathered_inwards(fake_doc, style_file):
    """A hard rectangle inside a bigger layer fades in over a few pixels inside its edge, where it is a selection
    edge; at the layer's own edge (the region's border) it does not."""
    doc = FakeDoc(40, 30)
    layer = doc.add_layer("Photo")
    layer.fill((0, 0, 40, 30), lambda x, y: b"\x10\x20\x30\xff")
    doc.active = layer
    doc.sel = FakeSelection((0, 5, 30, 20), lambda x, y: 255)  # touches the canvas's left edge
    result = run_style_transfer(doc, layer, style_file, {}, client=FakeClient())
    assert result.rect.as_tuple() == (0, 5, 30, 20)
    alpha = {xy: px[3] for xy, px in result.node.pixels.items()}
    row = [alpha[(x, 15)] for x in range(30)]
    assert row[0] == 255  # the canvas's edge is not the selection's
    assert row[-EDGE_FEATHER:] == sorted(row[-EDGE_FEATHER:], reverse=True)  # fading out to the edge
    assert 0 < row[-1] < 255 and row[-EDGE_FEATHER - 1] == 255
    column = [alpha[(10, y)] for y in range(5, 25)]
    assert 0 < column[0] < column[3] < 255 and column[10] == 255 and 0 < column[-1] < 255


def test_feathering_fades_in_inside_the_edge_and_keeps_soft_masks():
    hard = bytes(255 if 4 <= x < 16 and 4 <= y < 12 else 0 for y in range(16) for x in range(20))
    out = feather_mask(hard, 20, 16, radius=3)
    row = list(out[8 * 20 : 9 * 20])
    assert row[:4] == [0, 0, 0, 0] and row[16:] == [0, 0, 0, 0]  # outside stays unselected
    assert row[4:8] == [85, 170, 255, 255]  # a ramp of three pixels inside the edge
    assert row[8:12] == [255] * 4
    assert all(o == 0 for o, h in zip(out, hard, strict=True) if h == 0)
    soft = bytes((x * 13) % 256 for x in range(20 * 16))  # a selection with its own feather is used as it is
    assert feather_mask(soft, 20, 16) == soft


def test_with_krita_actions_a_selection_becomes_a_transparency_mask(fake_doc, style_file):
    sketch = fake_doc.active
    fake_doc.sel = FakeSelection((2, 1, 6, 5), lambda x, y: 255 if (x + y) % 2 else 64)
    ops = FakeOps()
    result = run_style_transfer(fake_doc, sketch, style_file, {}, client=FakeClient(), ops=ops)
    assert names(fake_doc) == ["Background", "Sketch", "Style: starry night", "Lines"]
    assert ops.split == ["Style: starry night"]  # named and painted before the mask was added
    rect, mask = ops.masks[0]
    assert rect == (2, 1, 6, 5) and mask[(3 - 2) + 0 * 6] == 64  # the selection's own (soft) shape, in the mask
    # the layer keeps its own alpha inside the selection (the mask fades it) and is transparent outside
    assert result.node.pixels[(3, 1)][3] == sketch.pixels[(3, 1)][3]


def test_the_result_is_transparent_outside_the_selection_with_its_mask_off(style_file):
    """An ellipse-like hard selection: the layer's own pixels (what shows with the mask disabled) have alpha 0
    outside it, and the layer covers only the selection's bounds."""
    doc = FakeDoc(30, 20)
    layer = doc.add_layer("Photo")
    layer.fill((0, 0, 30, 20), lambda x, y: b"\x10\x20\x30\xff")
    doc.active = layer

    def inside(x, y):
        return ((x + 0.5 - 15) / 10) ** 2 + ((y + 0.5 - 10) / 6) ** 2 <= 1

    doc.sel = FakeSelection((5, 4, 20, 12), lambda x, y: 255 if inside(x, y) else 0)
    ops = FakeOps()
    result = run_style_transfer(doc, layer, style_file, {}, client=FakeClient(), ops=ops)
    pixels = result.node.pixels
    assert {xy for xy in pixels} <= {(x, y) for x in range(5, 25) for y in range(4, 16)}
    assert all(px[3] == 0 for (x, y), px in pixels.items() if not inside(x, y))
    assert all(px[3] == 255 for (x, y), px in pixels.items() if inside(x, y))
    assert layer.pixels[(0, 0)] == b"\x10\x20\x30\xff"  # the original untouched


@pytest.mark.parametrize("ops", [FakeOps(can_add=False), FakeOps(can_mask=False), None])
def test_without_krita_actions_the_selection_stays_in_the_alpha(fake_doc, style_file, ops):
    sketch = fake_doc.active
    fake_doc.sel = FakeSelection((2, 1, 6, 5), lambda x, y: 255 if (x + y) % 2 else 64)
    result = run_style_transfer(fake_doc, sketch, style_file, {}, client=FakeClient(), ops=ops)
    assert names(fake_doc) == ["Background", "Sketch", "Style: starry night", "Lines"]
    assert result.node.pixels[(3, 1)][3] == (sketch.pixels[(3, 1)][3] * 64 + 127) // 255


def test_no_selection_needs_no_krita_actions(fake_doc, style_file):
    ops = FakeOps()
    run_style_transfer(fake_doc, fake_doc.active, style_file, {}, client=FakeClient(), ops=ops)
    assert ops.split == [] and names(fake_doc) == ["Background", "Sketch", "Style: starry night", "Lines"]


def test_the_server_is_checked_before_the_layer_is_sent(fake_doc, style_file):
    from stylelayer_client import NotStylelayer

    class OtherServer(FakeClient):
        def probe(self):
            raise NotStylelayer("answered HTTP 404", url="http://h:1")

    client = OtherServer()
    before = fake_doc.snapshot()
    with pytest.raises(NotStylelayer):
        run_style_transfer(fake_doc, fake_doc.active, style_file, {}, client=client)
    assert client.calls == [] and fake_doc.snapshot() == before
    ok = FakeClient()
    run_style_transfer(fake_doc, fake_doc.active, style_file, {}, client=ok)
    assert ok.probes == 1 and len(ok.calls) == 1


# ---- regions -------------------------------------------------------------------------------------------------
def test_regions_come_from_the_layers_selection_masks_or_a_groups_layers(fake_doc) -> None:
    """A selection mask gives its own values, a layer of a group its alpha (16-bit: the high byte), over the pixels
    sent; each with the style chosen for it by the node's key, None where none was chosen."""
    sketch = fake_doc.active
    mask = FakeNode(fake_doc, "Sky", "selectionmask")
    mask.fill((0, 0, 12, 4), lambda x, y: bytes([200 if x < 6 else 255]))
    sketch.addChildNode(mask, None)
    group = FakeNode(fake_doc, "Regions", "grouplayer")
    fake_doc.root.addChildNode(group, None)
    ground = FakeNode(fake_doc, "Ground", depth="U16")
    ground.fill((0, 4, 12, 5), lambda x, y: b"\x00\x00" * 3 + bytes([0x34, 100]))
    group.addChildNode(ground, None)
    group.addChildNode(FakeNode(fake_doc, "Mask", "transparencymask"), ground)

    source = transfer.prepare(fake_doc, sketch, CODEC)
    x, y, w, h = source.rect.as_tuple()
    assert transfer.selection_masks(sketch) == [mask]
    assert transfer.groups(fake_doc) == [group]
    assert [n.name() for n in transfer.group_layers(group)] == ["Ground"]
    styles = {transfer.node_key(mask): RegionStyle(path="/art/starry.png")}
    regions = transfer.read_regions(source, [mask, ground], styles)
    assert [(r.name, r.style) for r in regions] == [("Sky", styles[transfer.node_key(mask)]), ("Ground", None)]
    sky_mask = bytes((200 if i < 6 else 255) if j < 4 else 0 for j in range(y, y + h) for i in range(x, x + w))
    ground_mask = bytes(100 if j >= 4 else 0 for j in range(y, y + h) for _ in range(x, x + w))
    assert regions[0].mask == sky_mask
    assert regions[1].mask == ground_mask
