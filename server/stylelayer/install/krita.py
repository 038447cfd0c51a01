"""Install the Krita plug-in (`plugins/krita`) into a user's Krita and enable it, or build its import zip.

Krita looks for Python plug-ins in `<resource folder>/pykrita/` and loads only those enabled in the
`[python]` group of its `kritarc` (`enable_<name>=true`), which lives outside the resource folder:

    Linux    ~/.local/share/krita                    ~/.config/kritarc  ($XDG_DATA_HOME / $XDG_CONFIG_HOME)
    macOS    ~/Library/Application Support/krita     ~/Library/Preferences/kritarc
    Windows  %APPDATA%\\krita                          %LOCALAPPDATA%\\kritarc
"""

from __future__ import annotations

import os
import shutil
import sys
import zipfile
from pathlib import Path

from . import plugin_source

PLUGIN_NAME = "stylelayer_krita"
DESKTOP_FILE = PLUGIN_NAME + ".desktop"
# vendored from plugins/common by scripts/sync_client.py: the plug-in cannot run without them
SHARED_FILES = ("stylelayer_client.py", "stylelayer_plugin_logic.py")
IGNORED = ("__pycache__", "*.pyc", "*.pyo")


def _platform() -> str:
    if sys.platform.startswith("win"):
        return "windows"
    if sys.platform == "darwin":
        return "macos"
    return "linux"


# platform -> (environment variable, its fallback under the home folder, name inside it)
_RESOURCE_DIRS = {
    "windows": ("APPDATA", ("AppData", "Roaming"), "krita"),
    "macos": (None, ("Library", "Application Support"), "krita"),
    "linux": ("XDG_DATA_HOME", (".local", "share"), "krita"),
}
_KRITARCS = {
    "windows": ("LOCALAPPDATA", ("AppData", "Local"), "kritarc"),
    "macos": (None, ("Library", "Preferences"), "kritarc"),
    "linux": ("XDG_CONFIG_HOME", (".config",), "kritarc"),
}


def _user_path(table: dict, platform: str | None, env: dict[str, str] | None) -> Path:
    platform = platform or _platform()
    env = os.environ if env is None else env
    home = Path(env.get("HOME") or env.get("USERPROFILE") or Path.home())
    variable, fallback, name = table.get(platform, table["linux"])
    base = env.get(variable) if variable else None
    return (Path(base) if base else home.joinpath(*fallback)) / name


def default_resource_dir(platform: str | None = None, env: dict[str, str] | None = None) -> Path:
    """Krita's user resource folder for this (or the given) platform."""
    return _user_path(_RESOURCE_DIRS, platform, env)


def default_kritarc(platform: str | None = None, env: dict[str, str] | None = None) -> Path:
    """Where Krita keeps its settings file for this (or the given) platform."""
    return _user_path(_KRITARCS, platform, env)


def kritarc_for(resource_dir: Path) -> Path:
    """The kritarc that goes with `resource_dir`: derived from the standard layouts, else next to it."""
    parts = resource_dir.parts
    if parts[-3:] == (".local", "share", "krita"):
        return resource_dir.parents[2] / ".config" / "kritarc"
    if parts[-3:] == ("Library", "Application Support", "krita"):
        return resource_dir.parents[1] / "Preferences" / "kritarc"
    if len(parts) >= 3 and parts[-1] == "krita" and parts[-2].lower() == "roaming" and parts[-3].lower() == "appdata":
        return resource_dir.parents[1] / "Local" / "kritarc"
    return resource_dir.parent / "kritarc"


def set_plugin_enabled(text: str, name: str = PLUGIN_NAME, enabled: bool = True) -> str:
    """kritarc text with `enable_<name>` set under `[python]`; every other line is kept as it was."""
    key = f"enable_{name}"
    value = "true" if enabled else "false"
    newline = "\r\n" if "\r\n" in text else "\n"
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == "[python]"), None)
    if start is None:
        if lines and lines[-1].strip():
            lines.append("")
        lines += ["[python]", f"{key}={value}"]
        return newline.join(lines) + newline
    end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines))
    for i in range(start + 1, end):
        if lines[i].split("=", 1)[0].strip() == key:
            lines[i] = f"{key}={value}"
            break
    else:
        insert = end
        while insert > start + 1 and not lines[insert - 1].strip():
            insert -= 1  # keep the blank line(s) that separate the next group
        lines.insert(insert, f"{key}={value}")
    return newline.join(lines) + newline


def _source() -> Path:
    src = plugin_source("krita")
    package = src / PLUGIN_NAME
    if not (src / DESKTOP_FILE).is_file() or not package.is_dir():
        raise FileNotFoundError(f"{src} does not hold {DESKTOP_FILE} and {PLUGIN_NAME}/")
    for name in SHARED_FILES:
        if not (package / name).is_file():
            raise FileNotFoundError(
                f"{package / name} is missing: run scripts/sync_client.py to vendor it into the plug-in"
            )
    return src


def install(resource_dir: Path | None = None, enable: bool = True, kritarc: Path | None = None) -> Path:
    """Copy the plug-in into `<resource_dir>/pykrita/` (replacing an older copy) and enable it in kritarc.

    resource_dir: Krita's resource folder (default: this platform's). kritarc: the settings file to edit
    (default: the one that goes with resource_dir, see `kritarc_for`). Returns the installed package folder.
    """
    src = _source()
    resource_dir = Path(resource_dir) if resource_dir is not None else default_resource_dir()
    if kritarc is None:
        kritarc = default_kritarc() if resource_dir == default_resource_dir() else kritarc_for(resource_dir)
    pykrita = resource_dir / "pykrita"
    pykrita.mkdir(parents=True, exist_ok=True)
    target = pykrita / PLUGIN_NAME
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(src / PLUGIN_NAME, target, ignore=shutil.ignore_patterns(*IGNORED))
    shutil.copy2(src / DESKTOP_FILE, pykrita / DESKTOP_FILE)
    if enable:
        kritarc = Path(kritarc)
        kritarc.parent.mkdir(parents=True, exist_ok=True)
        old = kritarc.read_bytes().decode("utf-8") if kritarc.exists() else ""
        new = set_plugin_enabled(old)
        if new != old:
            tmp = kritarc.with_name(kritarc.name + ".stylelayer-tmp")
            tmp.write_bytes(new.encode("utf-8"))
            os.replace(tmp, kritarc)
    return target


def build_zip(out: Path) -> Path:
    """Zip for Krita's Tools > Scripts > Import Python Plugin from File…: the .desktop file and the package
    folder at the top level. `out` may be a folder (the zip is then named stylelayer_krita.zip in it)."""
    src = _source()
    out = Path(out)
    if out.is_dir():
        out = out / f"{PLUGIN_NAME}.zip"
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(src / DESKTOP_FILE, DESKTOP_FILE)
        # Directory entries matter: Krita's importer finds the module by its "stylelayer_krita/" entry.
        zf.write(src / PLUGIN_NAME, PLUGIN_NAME + "/")
        for path in sorted((src / PLUGIN_NAME).rglob("*")):
            rel = path.relative_to(src)
            if "__pycache__" in rel.parts or path.suffix in (".pyc", ".pyo"):
                continue
            zf.write(path, rel.as_posix() + ("/" if path.is_dir() else ""))
    return out
