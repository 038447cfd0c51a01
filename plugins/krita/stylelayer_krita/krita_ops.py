"""Krita's own layer actions, for what libkis (Krita 5.1's Python API) cannot do: a transparency mask with pixels.

libkis 5.1 can create a transparency mask node but not give it a selection, and a layer it adds cannot be made
active (Krita's layer docker never learns about it). So a result with a selection is added the way the Layers
docker adds one (action add_new_paint_layer, above the active layer, its own undo step), painted with the
selection's shape in its alpha, and Layer > Transparency > Split Alpha into Mask moves that alpha into an
editable transparency mask (one more undo step). Each step waits for Krita to finish it; when one cannot be done
(another document or layer active) the caller keeps the shape in the layer's alpha instead.
"""

import time

from krita import Krita
from PyQt5.QtCore import QEventLoop, QTimer

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


def node_id(node):
    """A layer's identity across libkis wrappers (each call returns a new Python object)."""
    return node.uniqueId().toString() if node is not None else None


class KritaLayerOps:
    """transfer.LayerOps on Krita's actions."""

    def add_layer_above(self, doc, node):
        """A new paint layer directly above `node`, added by Krita's "Add Paint Layer"; None when it cannot be."""
        app = Krita.instance()
        active_doc = app.activeDocument()
        if active_doc is None or active_doc != doc:  # actions work on the document in the active view
            return None
        if node_id(doc.activeNode()) != node_id(node):
            doc.setActiveNode(node)
            if not _wait_for(doc, lambda: node_id(doc.activeNode()) == node_id(node)):
                return None
        parent = node.parentNode()
        before = {node_id(child) for child in parent.childNodes()}
        app.action("add_new_paint_layer").trigger()
        if not _wait_for(doc, lambda: len(parent.childNodes()) > len(before)):
            return None
        children = parent.childNodes()
        fresh = [i for i, child in enumerate(children) if node_id(child) not in before]
        new = children[fresh[0]]
        above = [node_id(child) for child in children].index(node_id(node)) + 1
        if len(fresh) != 1 or fresh[0] != above:  # not where the result belongs: leave the document as it was
            for i in fresh:
                children[i].remove()
            return None
        doc.waitForDone()
        _settle(50)  # Krita's layer docker registers the node; touching it before makes Krita lose track of it
        return new

    def split_alpha_into_mask(self, doc, layer):
        """Move `layer`'s alpha into a transparency mask (Split Alpha into Mask); False when it could not."""
        if not _wait_for(doc, lambda: node_id(doc.activeNode()) == node_id(layer)):
            return False
        Krita.instance().action("split_alpha_into_mask").trigger()
        if not _wait_for(doc, lambda: any(c.type() == "transparencymask" for c in layer.childNodes())):
            return False
        for child in layer.childNodes():
            if child.type() == "transparencymask":
                child.setName(MASK_NAME)
        return True
