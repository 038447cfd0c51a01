"""Fixtures for the Krita plug-in tests: the plug-in package on sys.path, a mock `krita` module and a fake
document (krita_fakes.py) that behaves like libkis (Document/Node/Selection) for what the plug-in uses.

The package is assembled as `stylelayer install-plugin` assembles it (plugins/krita plus plugins/common) into a
temporary folder, so the tests import exactly what Krita loads.
"""

from __future__ import annotations

import atexit
import shutil
import sys
import tempfile
import types
from pathlib import Path

import pytest
from krita_fakes import FakeDoc

from stylelayer.install import assemble

ASSEMBLED = assemble("krita", Path(tempfile.mkdtemp(prefix="stylelayer-krita-plugin-")))
atexit.register(shutil.rmtree, ASSEMBLED, True)
sys.path.insert(0, str(ASSEMBLED))
# The shared modules (plugins/common) sit in the package's shared/, which its __init__ adds to sys.path in Krita;
# a test that imports them before the package (test_transfer.py alone) needs the path here.
sys.path.insert(0, str(ASSEMBLED / "stylelayer_krita" / "shared"))


def _pattern(x: int, y: int) -> bytes:
    """BGRA with distinct B, G, R and a varying alpha."""
    return bytes(((x * 20) % 256, (y * 30) % 256, (x * 7 + y * 11) % 256, 255 if (x + y) % 3 else 128))


@pytest.fixture
def fake_doc():
    doc = FakeDoc(12, 9)
    doc.add_layer("Background").fill((0, 0, 12, 9), _pattern)
    top = doc.add_layer("Sketch")
    top.fill((2, 1, 8, 6), _pattern)
    doc.add_layer("Lines").fill((0, 0, 3, 3), lambda x, y: b"\x00\x00\x00\xff")
    doc.active = top
    return doc


@pytest.fixture
def mock_krita_module(monkeypatch, fake_doc):
    """A stand-in `krita` module: Krita.instance() with the fake document active (no Extension class)."""
    module = types.ModuleType("krita")

    class _App:
        def activeDocument(self):
            return fake_doc

    module.Krita = type("Krita", (), {"instance": staticmethod(lambda: _App())})
    monkeypatch.setitem(sys.modules, "krita", module)
    return module
