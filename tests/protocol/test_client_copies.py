"""The plug-ins vendor the client: their copies must be byte-identical to plugins/common, and it must stay
importable by the older Pythons that Krita and GIMP embed."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from protocol_helpers import REPO

SOURCE = REPO / "plugins" / "common" / "stylelayer_client.py"
COPIES = [
    REPO / "plugins" / "krita" / "stylelayer_krita" / "stylelayer_client.py",
    REPO / "plugins" / "gimp" / "stylelayer" / "stylelayer_client.py",
]


@pytest.mark.parametrize("copy", COPIES, ids=lambda p: p.parts[-3])
def test_vendored_copy_is_identical(copy) -> None:
    assert copy.is_file(), f"{copy} missing: run python scripts/sync_client.py"
    assert copy.read_bytes() == SOURCE.read_bytes(), f"{copy} differs: run python scripts/sync_client.py"


def test_sync_script_check_mode_agrees() -> None:
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "sync_client.py"), "--check"],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stdout


def test_client_uses_only_the_standard_library_and_python38_syntax() -> None:
    tree = ast.parse(SOURCE.read_text(), feature_version=(3, 8))
    modules = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    modules |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert modules <= set(sys.stdlib_module_names), modules - set(sys.stdlib_module_names)


def _python38() -> str | None:
    """A working Python 3.8 (the oldest that Krita/GIMP builds still embed), if this machine has one."""
    candidates = [shutil.which("python3.8"), *map(str, Path.home().glob(".pyenv/versions/3.8*/bin/python3.8"))]
    for exe in filter(None, candidates):
        if subprocess.run([exe, "-c", "pass"], capture_output=True).returncode == 0:
            return exe
    return None


def test_client_imports_and_encodes_under_python38() -> None:
    exe = _python38()
    if exe is None:
        pytest.skip("no working python3.8 on this machine")
    code = (
        f"import sys; sys.path.insert(0, {str(SOURCE.parent)!r}); import stylelayer_client as c; "
        "body, ctype = c._job_form(b'png', [b'a', b'b'], 'ab', {'size': 8}, 5); "
        "assert ctype.startswith('multipart/form-data; boundary=') and body.count(b'name=\"style\"') == 2"
    )
    done = subprocess.run([exe, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
