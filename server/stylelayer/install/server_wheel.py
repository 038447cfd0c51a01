"""The stylelayer server as a wheel, for the plug-ins to carry: their "Local (managed)" server installs exactly the
version of the plug-in it came with, with no checkout and no download of stylelayer itself.

The wheel is written from the running `stylelayer` package (a checkout's or an installed wheel's: the same files)
with the standard library: a pure-Python wheel is a zip of the package plus a .dist-info folder. It leaves out
`_plugins` (the server does not need the plug-ins' sources) and is byte-for-byte the same for the same sources
(fixed timestamps, sorted entries), so a test can compare it.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import tempfile
import zipfile
from pathlib import Path

from .. import __version__

_PACKAGE = Path(__file__).resolve().parents[1]  # .../stylelayer
_EPOCH = (1980, 1, 1, 0, 0, 0)  # zip's earliest date: the same bytes on every build
_built: dict[str, Path] = {}


def wheel_name() -> str:
    return f"stylelayer-{__version__}-py3-none-any.whl"


def _package_files() -> dict[str, bytes]:
    files = {}
    for path in sorted(_PACKAGE.rglob("*")):
        rel = path.relative_to(_PACKAGE.parent)
        if not path.is_file() or "__pycache__" in rel.parts or rel.parts[1:2] == ("_plugins",):
            continue
        if path.suffix in (".pyc", ".pyo"):
            continue
        files[rel.as_posix()] = path.read_bytes()
    return files


def _requirements() -> list[str]:
    """The server's runtime requirements, from the installed metadata (setup.cfg's install_requires)."""
    try:
        requires = importlib.metadata.requires("stylelayer") or []
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError("stylelayer's metadata is missing: install it (pip install -e .) first") from None
    return [r for r in requires if "extra ==" not in r]


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build_wheel(dest: Path) -> Path:
    """Write the wheel into the folder `dest` and return its path."""
    info = f"stylelayer-{__version__}.dist-info"
    metadata = "\n".join(
        [
            "Metadata-Version: 2.1",
            "Name: stylelayer",
            f"Version: {__version__}",
            "Summary: Neural style transfer (Gatys et al.) for Krita and GIMP, with a local HTTP server",
            "Requires-Python: >=3.10",
            *(f"Requires-Dist: {r}" for r in _requirements()),
            "",
        ]
    )
    files = _package_files()
    files[f"{info}/METADATA"] = metadata.encode()
    files[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: stylelayer\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    files[f"{info}/entry_points.txt"] = b"[console_scripts]\nstylelayer = stylelayer.cli:main\n"
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in files.items())
    files[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    out = dest / wheel_name()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            entry = zipfile.ZipInfo(name, _EPOCH)
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(entry, data)
    return out


def cached_wheel() -> Path:
    """The wheel, built once per process into a temporary folder (assembling a plug-in asks for it often)."""
    if __version__ not in _built or not _built[__version__].is_file():
        _built[__version__] = build_wheel(Path(tempfile.mkdtemp(prefix="stylelayer-wheel-")))
    return _built[__version__]
