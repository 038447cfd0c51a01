"""What a plug-in's source files import, read with ast: plug-ins run inside Krita's or GIMP's own Python, where
only the standard library and the host's modules exist."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable
from pathlib import Path

STDLIB = frozenset(sys.stdlib_module_names)


def foreign_imports(files: Iterable[Path], allowed: set[str]) -> list[str]:
    """'file: module' for every absolute import whose top-level package is neither stdlib nor in `allowed`."""
    found = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            found += [f"{path.name}: {name}" for name in names if name.split(".")[0] not in STDLIB | allowed]
    return found
