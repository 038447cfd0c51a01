"""stylelayer_krita: Krita plug-in for neural style transfer through a local stylelayer server.

Only registers the extension when imported by a real Krita (with PyQt5); the pure logic in `logic.py` and
the document code in `transfer.py` import without Krita or Qt, which is how the tests use them.
"""


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
