"""PyGObject, as the GIMP plug-in uses it: gi.require_version, then the GObject-introspected namespaces in
gi.repository (typed Any: their API is generated from GIMP's own typelibs at run time)."""

def require_version(namespace: str, version: str) -> None: ...
