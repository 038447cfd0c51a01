"""A fake libkis document (Document/Node/Selection) for what the Krita plug-in uses, and a PNG codec on Pillow
in place of Krita's QImage one. A module of its own, not conftest.py, so tests can import it by a name no other
test folder's conftest shadows."""

from __future__ import annotations

import io

from PIL import Image


class PillowCodec:
    """transfer.Codec on Pillow: RGBA bytes <-> PNG, and a style file's bytes as they are."""

    def encode(self, width: int, height: int, rgba: bytes) -> bytes:
        out = io.BytesIO()
        Image.frombytes("RGBA", (width, height), bytes(rgba)).save(out, "PNG")
        return out.getvalue()

    def decode(self, png: bytes) -> tuple[int, int, bytes]:
        with Image.open(io.BytesIO(png)) as image:
            return image.width, image.height, image.convert("RGBA").tobytes()

    def load_style(self, path: str) -> bytes:
        with open(path, "rb") as fh:
            return fh.read()


class QRect:
    def __init__(self, x: int, y: int, w: int, h: int):
        self._r = (x, y, w, h)

    def x(self) -> int:
        return self._r[0]

    def y(self) -> int:
        return self._r[1]

    def width(self) -> int:
        return self._r[2]

    def height(self) -> int:
        return self._r[3]


class FakeNode:
    """A layer with a sparse pixel store (image coordinates); pixelData/setPixelData are BGRA like Krita."""

    def __init__(self, doc: FakeDoc, name: str, kind: str = "paintlayer", model: str = "RGBA", depth: str = "U8"):
        self.doc, self._name, self._type = doc, name, kind
        self.model, self.depth = model, depth
        self.parent: FakeNode | None = None
        self.children: list[FakeNode] = []
        self.pixels: dict[tuple[int, int], bytes] = {}
        self.writes = 0

    # libkis-like API
    def name(self) -> str:
        return self._name

    def setName(self, name: str) -> None:
        self._name = name

    def type(self) -> str:
        return self._type

    def colorModel(self) -> str:
        return self.model

    def colorDepth(self) -> str:
        return self.depth

    def parentNode(self) -> FakeNode | None:
        return self.parent

    def childNodes(self) -> list[FakeNode]:
        return list(self.children)

    def pixel_size(self) -> int:
        if self._type == "selectionmask":  # one byte a pixel, as Krita's selections
            return 1
        return 4 * (2 if self.depth == "U16" else 1)

    def bounds(self) -> QRect:
        if not self.pixels:
            return QRect(0, 0, 0, 0)
        xs = [p[0] for p in self.pixels]
        ys = [p[1] for p in self.pixels]
        return QRect(min(xs), min(ys), max(xs) - min(xs) + 1, max(ys) - min(ys) + 1)

    def pixelData(self, x: int, y: int, w: int, h: int) -> bytes:
        blank = bytes(self.pixel_size())
        return b"".join(self.pixels.get((x + i, y + j), blank) for j in range(h) for i in range(w))

    def setPixelData(self, data: bytes, x: int, y: int, w: int, h: int) -> None:
        n = self.pixel_size()
        assert len(data) == w * h * n, (len(data), w, h, n)
        self.writes += 1
        for j in range(h):
            for i in range(w):
                k = (j * w + i) * n
                self.pixels[(x + i, y + j)] = bytes(data[k : k + n])

    def addChildNode(self, child: FakeNode, above: FakeNode | None) -> bool:
        index = self.children.index(above) + 1 if above is not None else len(self.children)
        self.children.insert(index, child)
        child.parent = self
        return True

    def remove(self) -> bool:
        if self.parent is None:
            return False
        self.parent.children.remove(self)
        self.parent = None
        return True

    def fill(self, rect: tuple[int, int, int, int], pixel_fn) -> None:
        x0, y0, w, h = rect
        for j in range(h):
            for i in range(w):
                self.pixels[(x0 + i, y0 + j)] = pixel_fn(x0 + i, y0 + j)


class FakeSelection:
    def __init__(self, rect: tuple[int, int, int, int], mask_fn=None):
        self.rect = rect
        self.mask_fn = mask_fn or (lambda x, y: 255)

    def x(self) -> int:
        return self.rect[0]

    def y(self) -> int:
        return self.rect[1]

    def width(self) -> int:
        return self.rect[2]

    def height(self) -> int:
        return self.rect[3]

    def pixelData(self, x: int, y: int, w: int, h: int) -> bytes:
        x0, y0, sw, sh = self.rect
        return bytes(
            self.mask_fn(x + i, y + j) if x0 <= x + i < x0 + sw and y0 <= y + j < y0 + sh else 0
            for j in range(h)
            for i in range(w)
        )


class FakeDoc:
    def __init__(self, width: int = 12, height: int = 9, model: str = "RGBA", depth: str = "U8"):
        self._w, self._h, self.model, self.depth = width, height, model, depth
        self.root = FakeNode(self, "root", "grouplayer", model, depth)
        self.sel: FakeSelection | None = None
        self.active: FakeNode | None = None
        self.refreshed = 0

    def width(self) -> int:
        return self._w

    def height(self) -> int:
        return self._h

    def colorModel(self) -> str:
        return self.model

    def colorDepth(self) -> str:
        return self.depth

    def selection(self) -> FakeSelection | None:
        return self.sel

    def rootNode(self) -> FakeNode:
        return self.root

    def activeNode(self) -> FakeNode | None:
        return self.active

    def setActiveNode(self, node: FakeNode) -> None:
        self.active = node

    def createNode(self, name: str, kind: str) -> FakeNode:
        return FakeNode(self, name, kind, self.model, self.depth)

    def refreshProjection(self) -> None:
        self.refreshed += 1

    def add_layer(self, name: str, **kw) -> FakeNode:
        node = FakeNode(self, name, **{"model": self.model, "depth": self.depth, **kw})
        self.root.addChildNode(node, self.root.children[-1] if self.root.children else None)
        self.active = node
        return node

    def snapshot(self) -> list:
        """Everything observable: stack, names, pixels, selection, active node."""

        def walk(node: FakeNode):
            return (node.name(), node.type(), dict(node.pixels), [walk(c) for c in node.children])

        return [walk(self.root), self.active.name() if self.active else None]
