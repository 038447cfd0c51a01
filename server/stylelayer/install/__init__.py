"""Assemble the Krita and GIMP plug-ins and install them into a user's host program.

A plug-in's sources are `plugins/<host>/` plus the modules both plug-ins share, which live once in
`plugins/common/`. Krita and GIMP each load a plug-in from its own folder, so assembling copies the shared
modules into it (SHARED_DIRS: GIMP's plug-in folder, a `shared/` folder in Krita's package; both are on sys.path
when the plug-in runs): `plugin_files` lists the result, and the installers and the Krita zip
write exactly that, with the stylelayer server as a wheel (server_wheel.py) that the plug-in's managed server
installs. A wheel carries the sources as `stylelayer/_plugins/` (setup.py copies plugins/ there when
it builds); a source checkout, editable install included, reads `plugins/` itself.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .server_wheel import cached_wheel


class InstallError(ValueError):
    """`--dest` names a folder the host program would never load the plug-in from; the message says which it reads."""


HOSTS = ("krita", "gimp")
SHARED_MODULES = (  # plugins/common
    "stylelayer_client.py",
    "stylelayer_image.py",
    "stylelayer_managed.py",
    "stylelayer_messages.py",
    "stylelayer_params.py",
    "stylelayer_regions.py",
    "stylelayer_settings.py",
    "stylelayer_status.py",
    "stylelayer_workflow.py",
)
SERVER_DIR = "server"  # in the plug-in's package folder: the stylelayer wheel its managed server installs
PACKAGE_DIRS = {"krita": "stylelayer_krita", "gimp": "stylelayer_gimp"}  # the plug-in's own folder, per host
SHARED_DIRS = {"krita": "stylelayer_krita/shared", "gimp": "stylelayer_gimp"}  # where the shared modules go
_PACKAGE = Path(__file__).resolve().parents[1]  # .../stylelayer
BUNDLED = _PACKAGE / "_plugins"  # in an installed wheel
CHECKOUT = _PACKAGE.parents[1] / "plugins"  # server/stylelayer -> the repository's plugins/


def _ignored(path: Path) -> bool:
    return "__pycache__" in path.parts or path.suffix in (".pyc", ".pyo")


def plugins_root() -> Path:
    """The folder holding common/, krita/ and gimp/: the copy bundled into the wheel, else the checkout's."""
    for root in (BUNDLED, CHECKOUT):
        if (root / "common").is_dir():
            return root
    raise FileNotFoundError(f"the plug-ins are not part of this installation (looked in {BUNDLED} and {CHECKOUT})")


def plugin_files(host: str) -> dict[str, Path]:
    """The assembled plug-in for `host`: its path inside the host's plug-in folder (POSIX) -> the source file.

    Raises FileNotFoundError when a shared module is missing: the plug-in cannot run without them.
    """
    if host not in HOSTS:
        raise ValueError(f"unknown host {host!r}; choose one of {', '.join(HOSTS)}")
    root = plugins_root()
    source = root / host
    files = {
        path.relative_to(source).as_posix(): path
        for path in sorted(source.rglob("*"))
        if path.is_file() and not _ignored(path.relative_to(source))
    }
    for name in SHARED_MODULES:
        shared = root / "common" / name
        if not shared.is_file():
            raise FileNotFoundError(f"the {host} plug-in is incomplete: {shared} is missing")
        files[f"{SHARED_DIRS[host]}/{name}"] = shared
    wheel = cached_wheel()
    files[f"{PACKAGE_DIRS[host]}/{SERVER_DIR}/{wheel.name}"] = wheel
    return files


def write_files(files: dict[str, Path], dest: Path) -> Path:
    """Copy `files` (as from `plugin_files`) into the folder `dest`, created if needed; returns `dest`."""
    dest = Path(dest)
    for rel, source in files.items():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    return dest


def assemble(host: str, dest: Path) -> Path:
    """Write the assembled plug-in for `host` into the folder `dest` (created if needed) and return `dest`."""
    return write_files(plugin_files(host), dest)
