"""Krita's own layer actions, for what libkis (Krita 5.1's Python API) cannot do: a transparency mask with pixels.

libkis 5.1 cannot create a transparency mask with a selection, and a layer it adds cannot be made active (Krita's
layer docker never learns about it). So a result with a selection is added the way the Layers docker adds one
(action add_new_paint_layer, above the active layer, its own undo step), transparent outside the selection, and
Krita's "Add Transparency Mask" gives it a mask (one more undo step) whose pixels are then set to the selection's
shape. (Split Alpha into Mask, used before, left the layer opaque black outside the selection, under the mask.)
Each step waits for Krita to finish it; when one cannot be done (another document or layer active) the caller
keeps the shape in the layer's alpha instead.
"""

import time

from krita import Krita
from PyQt5.QtCore import QEventLoop, QTimer

from .transfer import node_key

WAIT_S = 3.0  # for Krita to carry out an action (they finish in well under a second)
MASK_NAME = "Selection"


def _settle(ms):
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec_()


def _wait_for(doc, condition, timeout=WAIT_S):
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            return False
        doc.waitForDone()
        _settle(20)
    return True


class KritaLayerOps:
    """transfer.LayerOps on Krita's actions."""

    def add_layer_above(self, doc, node):
        """A new paint layer directly above `node`, added by Krita's "Add Paint Layer"; None when it cannot be."""
        app = Krita.instance()
        active_doc = app.activeDocument()
        if active_doc is None or active_doc != doc:  # actions work on the document in the active view
            return None
        if node_key(doc.activeNode()) != node_key(node):
            doc.setActiveNode(node)
            if not _wait_for(doc, lambda: node_key(doc.activeNode()) == node_key(node)):
                return None
        parent = node.parentNode()
        before = {node_key(child) for child in parent.childNodes()}
        app.action("add_new_paint_layer").trigger()
        if not _wait_for(doc, lambda: len(parent.childNodes()) > len(before)):
            return None
        children = parent.childNodes()
        fresh = [i for i, child in enumerate(children) if node_key(child) not in before]
        new = children[fresh[0]]
        above = [node_key(child) for child in children].index(node_key(node)) + 1
        if len(fresh) != 1 or fresh[0] != above:  # not where the result belongs: leave the document as it was
            for i in fresh:
                children[i].remove()
            return None
        doc.waitForDone()
        _settle(50)  # Krita's layer docker registers the node; touching it before makes Krita lose track of it
        return new

    def add_mask(self, doc, layer, rect, mask):
        """Give `layer` a transparency mask holding `mask` (one byte a pixel over `rect`, unselected elsewhere):
        Krita's "Add Transparency Mask" (an undo step), then its pixels. False when it could not be added."""
        if not _wait_for(doc, lambda: node_key(doc.activeNode()) == node_key(layer)):
            return False
        selection = doc.selection()
        kept = selection.duplicate() if selection is not None else None
        Krita.instance().action("add_new_transparency_mask").trigger()
        added = _wait_for(doc, lambda: any(c.type() == "transparencymask" for c in layer.childNodes()))
        if kept is not None and doc.selection() is None:  # the action took the painter's selection: give it back
            doc.setSelection(kept)
        if not added:
            return False
        node = next(c for c in layer.childNodes() if c.type() == "transparencymask")
        node.setName(MASK_NAME)
        width, height = int(doc.width()), int(doc.height())
        whole = bytearray(width * height)  # the rect lies within the canvas (transfer.region)
        for row in range(rect.height):
            start = (rect.y + row) * width + rect.x
            whole[start : start + rect.width] = mask[row * rect.width : (row + 1) * rect.width]
        node.setPixelData(bytes(whole), 0, 0, width, height)
        return True
