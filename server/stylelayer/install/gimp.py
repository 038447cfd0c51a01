"""Install the GIMP 3 plug-in into a user's GIMP 3.0 plug-ins folder.

GIMP 3 only runs a Python plug-in that sits in a folder named like its (executable) main file:
`<plug-ins>/stylelayer/stylelayer.py`. Its helper modules travel in the same folder.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
from pathlib import Path

from . import plugin_source

PLUGIN_NAME = "stylelayer"
GIMP_VERSION_DIR = "3.0"
# vendored from plugins/common by scripts/sync_client.py: the plug-in cannot run without them
SHARED_FILES = ("stylelayer_client.py", "stylelayer_plugin_logic.py")
_SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo")


def default_plugin_dir(platform: str | None = None, home: Path | None = None, env: dict | None = None) -> Path:
    """The per-user GIMP 3.0 plug-ins folder for this (or the given) platform.

    Linux and other Unixes: $XDG_CONFIG_HOME/GIMP/3.0/plug-ins (default ~/.config/...); macOS:
    ~/Library/Application Support/GIMP/3.0/plug-ins; Windows: %APPDATA%\\GIMP\\3.0\\plug-ins.
    $GIMP3_DIRECTORY, when set, replaces the whole GIMP/3.0 part, as it does for GIMP itself.
    """
    platform = platform or sys.platform
    env = os.environ if env is None else env
    home = home or Path.home()
    if env.get("GIMP3_DIRECTORY"):
        return Path(env["GIMP3_DIRECTORY"]) / "plug-ins"
    if platform.startswith("win"):
        appdata = env.get("APPDATA")
        base = Path(appdata) if appdata else home / "AppData" / "Roaming"
    elif platform == "darwin":
        base = home / "Library" / "Application Support"
    else:
        xdg = env.get("XDG_CONFIG_HOME")
        base = Path(xdg) if xdg and os.path.isabs(xdg) else home / ".config"
    return base / "GIMP" / GIMP_VERSION_DIR / "plug-ins"


def install(plugin_dir: Path | None = None) -> Path:
    """Copy plugins/gimp/stylelayer into `plugin_dir` (default: default_plugin_dir()).

    Replaces an earlier install, marks the main file executable and returns the installed folder
    (`<plugin_dir>/stylelayer`).
    """
    source = plugin_source("gimp") / PLUGIN_NAME
    main_file = source / f"{PLUGIN_NAME}.py"
    if not main_file.is_file():
        raise FileNotFoundError(f"the GIMP plug-in is incomplete: {main_file} is missing")
    for name in SHARED_FILES:
        if not (source / name).is_file():
            raise FileNotFoundError(
                f"the GIMP plug-in is incomplete: {source / name} is missing (run scripts/sync_client.py in a checkout)"
            )
    plugin_dir = Path(plugin_dir) if plugin_dir is not None else default_plugin_dir()
    target = plugin_dir / PLUGIN_NAME
    plugin_dir.mkdir(parents=True, exist_ok=True)
    staging = plugin_dir / f".{PLUGIN_NAME}.installing"
    if staging.exists():
        shutil.rmtree(staging)
    shutil.copytree(source, staging, ignore=_SKIP)
    installed_main = staging / f"{PLUGIN_NAME}.py"
    mode = installed_main.stat().st_mode
    installed_main.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH | stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    return target
