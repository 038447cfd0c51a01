"""stylelayer_krita: Krita plug-in for neural style transfer through a local stylelayer server.

The modules it shares with the GIMP plug-in (stylelayer_*.py, from plugins/common) are assembled into `shared/`
beside this file, which goes on sys.path: both hosts then import them by the same names (in GIMP they sit in
the plug-in's folder, which GIMP puts on sys.path), and the type checker finds them in plugins/common.

Only registers the extension when imported by a real Krita (with PyQt5); the pure logic in `logic.py` and
the document code in `transfer.py` import without Krita or Qt, which is how the tests use them.
"""

import os
import sys

SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "shared")
if SHARED not in sys.path:
    sys.path.insert(0, SHARED)


def _in_krita() -> bool:
    try:
        import krita
        from PyQt5 import QtWidgets  # noqa: F401
    except ImportError:
        return False
    return hasattr(krita, "Extension") and hasattr(krita, "Krita")


if _in_krita():
    from .extension import register

    register()
