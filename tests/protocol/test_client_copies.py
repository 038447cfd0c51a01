"""The plug-ins vendor the client and the shared plug-in logic: their copies must be byte-identical to
plugins/common, both must stay importable by the older Pythons that Krita and GIMP embed, and the installers
must refuse a plug-in folder that lacks them."""

from __future__ import annotations

import ast
import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from protocol_helpers import REPO

COMMON = REPO / "plugins" / "common"
SOURCE = COMMON / "stylelayer_client.py"
LOGIC = COMMON / "stylelayer_plugin_logic.py"
SHARED = [SOURCE, LOGIC]
PLUGIN_DIRS = [REPO / "plugins" / "krita" / "stylelayer_krita", REPO / "plugins" / "gimp" / "stylelayer"]
COPIES = [(src, folder / src.name) for src in SHARED for folder in PLUGIN_DIRS]


@pytest.mark.parametrize(("src", "copy"), COPIES, ids=[f"{copy.parts[-3]}/{copy.name}" for _, copy in COPIES])
def test_vendored_copy_is_identical(src, copy) -> None:
    assert copy.is_file(), f"{copy} missing: run python scripts/sync_client.py"
    assert copy.read_bytes() == src.read_bytes(), f"{copy} differs: run python scripts/sync_client.py"


def test_sync_script_check_mode_agrees() -> None:
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "sync_client.py"), "--check"],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stdout


@pytest.mark.parametrize("src", SHARED, ids=lambda p: p.name)
def test_shared_modules_use_only_the_standard_library_and_python38_syntax(src) -> None:
    tree = ast.parse(src.read_text(), feature_version=(3, 8))
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


# Under Python 3.8, each shared module imports from plugins/common and does its job on a small example.
PYTHON38_CHECKS = {
    "stylelayer_client": (
        "body, ctype = m._job_form(b'png', [b'a', b'b'], 'ab', {'size': 8}, 5); "
        "assert ctype.startswith('multipart/form-data; boundary=') and body.count(b'name=\"style\"') == 2"
    ),
    "stylelayer_plugin_logic": (
        "assert m.png_size(m.encode_png(3, 2, bytes(18), channels=3)) == (3, 2); "
        "assert m.build_params(5, 2.0)['style_weight'] == 2 * m.BASE_STYLE_WEIGHT; "
        "assert m.style_layer_name(m.style_label('/a/b_c.png'), {'Style: b c'}) == 'Style: b c #2'; "
        "assert m.check_server_url('http://h:1/') == 'http://h:1'; "
        "s = {'state': 'running', 'iteration': 1, 'total': 4, 'eta_s': 2}; "
        "assert m.progress_fraction(s) == 0.25 and m.progress_text(s, 'T') == 'T: iteration 1/4, about 2 s left'"
    ),
}


@pytest.mark.parametrize("module", PYTHON38_CHECKS)
def test_shared_module_imports_and_works_under_python38(module) -> None:
    exe = _python38()
    if exe is None:
        pytest.skip("no working python3.8 on this machine")
    code = f"import sys; sys.path.insert(0, {str(COMMON)!r}); import {module} as m; {PYTHON38_CHECKS[module]}"
    done = subprocess.run([exe, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(("host", "package"), [("krita", "stylelayer_krita"), ("gimp", "stylelayer")])
@pytest.mark.parametrize("missing", [src.name for src in SHARED])
def test_installers_refuse_a_plugin_without_its_vendored_files(tmp_path, monkeypatch, host, package, missing):
    installer = importlib.import_module(f"stylelayer.install.{host}")
    src = tmp_path / "src"
    shutil.copytree(REPO / "plugins" / host, src)
    (src / package / missing).unlink()
    monkeypatch.setattr(installer, "plugin_source", lambda _host: src)
    with pytest.raises(FileNotFoundError, match=missing):
        installer.install(tmp_path / "dest")
    assert not (tmp_path / "dest").exists()
