"""GIMP's, GEGL's, GLib's and GTK's introspected namespaces: Any (generated from typelibs at run time; tests/gimp's
end-to-end tests run the plug-in in a real GIMP 3)."""

from typing import Any

def __getattr__(name: str) -> Any: ...
