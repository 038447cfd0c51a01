"""PyQt5.QtWidgets as the Krita plug-in uses it: Any. Krita bundles PyQt5; its own stubs come only with the 60 MB PyQt5
wheel, which the tests do not need (tests/krita's end-to-end tests run the dialog in a real Krita)."""

from typing import Any

def __getattr__(name: str) -> Any: ...
