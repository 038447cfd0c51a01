"""Install the GIMP 3 plug-in into a user's GIMP 3.0 plug-ins folder.

GIMP 3 only runs a Python plug-in that sits in a folder named like its (executable) main file:
`<plug-ins>/stylelayer_gimp/stylelayer_gimp.py`. Its helper modules travel in the same folder. Earlier versions
named both `stylelayer`, like the server's package; installing removes such a folder when it is ours, or GIMP
would register the filter twice.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
from collections.abc import Mapping
from pathlib import Path

from ..userdirs import user_config_dir
from . import PACKAGE_DIRS, InstallError, plugin_files, write_files

PLUGIN_NAME = PACKAGE_DIRS["gimp"]
GIMP_VERSION_DIR = "3.0"
LEGACY_NAME = "stylelayer"  # the folder and main file of earlier versions
LEGACY_MARK = 'PROC_NAME = "plug-in-stylelayer"'  # in their main file: the filter this plug-in registers


def default_plugin_dir(
    platform: str | None = None, home: Path | None = None, env: Mapping[str, str] | None = None
) -> Path:
    """The per-user GIMP 3.0 plug-ins folder for this (or the given) platform.

    Linux and other Unixes: $XDG_CONFIG_HOME/GIMP/3.0/plug-ins (default ~/.config/...); macOS:
    ~/Library/Application Support/GIMP/3.0/plug-ins; Windows: %APPDATA%\\GIMP\\3.0\\plug-ins.
    $GIMP3_DIRECTORY, when set, replaces the whole GIMP/3.0 part, as it does for GIMP itself.
    """
    env = os.environ if env is None else env
    if env.get("GIMP3_DIRECTORY"):
        return Path(env["GIMP3_DIRECTORY"]) / "plug-ins"
    return user_config_dir(platform, env, home) / "GIMP" / GIMP_VERSION_DIR / "plug-ins"


def configured_plugin_dirs(gimprc: Path | None = None) -> list[Path]:
    """Folders the user added to GIMP's plug-in path (Edit > Preferences > Folders > Plug-ins, kept in gimprc)."""
    gimprc = gimprc if gimprc is not None else default_plugin_dir().parent / "gimprc"
    try:
        text = gimprc.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    found = []
    for match in re.finditer(r'\(plug-in-path\s+"([^"]*)"\)', text):
        for entry in match.group(1).split(os.pathsep):
            entry = entry.replace("${gimp_dir}", str(gimprc.parent))
            if entry and "${" not in entry:
                found.append(Path(entry).expanduser())
    return found


def plugin_dir_for(dest: Path, gimprc: Path | None = None) -> Path:
    """The plug-ins folder to install into for `stylelayer install-plugin gimp --dest DEST`.

    GIMP runs plug-ins only from its plug-ins folders: DEST itself when it is one (named plug-ins, or listed in
    gimprc's plug-in-path), the plug-ins folder inside DEST when DEST is a GIMP settings folder (…/GIMP/3.0), or
    DEST's parent when DEST is an earlier install (…/plug-ins/stylelayer_gimp, or …/plug-ins/stylelayer of
    earlier versions). Anything else is refused (InstallError):
    GIMP would never see the plug-in there.
    """
    dest = Path(dest).expanduser()
    if dest.name == "plug-ins" or any(_same(dest, known) for known in configured_plugin_dirs(gimprc)):
        return dest
    if dest.name in (PLUGIN_NAME, LEGACY_NAME) and dest.parent.name == "plug-ins":
        return dest.parent
    if (dest / "gimprc").is_file() or (dest / "plug-ins").is_dir() or dest.name == GIMP_VERSION_DIR:
        return dest / "plug-ins"
    raise InstallError(
        f"GIMP would not load a plug-in from {dest}: it runs plug-ins from its plug-ins folder ({default_plugin_dir()}"
        " for you) and from the folders in Edit > Preferences > Folders > Plug-ins. Leave out --dest, give such a "
        "folder, or add this one there first."
    )


def _same(a: Path, b: Path) -> bool:
    return os.path.normcase(os.path.abspath(a)) == os.path.normcase(os.path.abspath(b))


def install(plugin_dir: Path | None = None) -> Path:
    """Assemble the plug-in (plugins/gimp/stylelayer_gimp plus the shared modules) into `plugin_dir`.

    `plugin_dir` defaults to default_plugin_dir(). Replaces an earlier install (under the old name too, see
    legacy_install), marks the main file executable and returns the installed folder
    (`<plugin_dir>/stylelayer_gimp`).
    """
    files = plugin_files("gimp")
    main_file = f"{PLUGIN_NAME}/{PLUGIN_NAME}.py"
    if main_file not in files:
        raise FileNotFoundError(f"the GIMP plug-in is incomplete: {main_file} is missing")
    plugin_dir = Path(plugin_dir) if plugin_dir is not None else default_plugin_dir()
    target = plugin_dir / PLUGIN_NAME
    plugin_dir.mkdir(parents=True, exist_ok=True)
    staging = plugin_dir / f".{PLUGIN_NAME}.installing"
    if staging.exists():
        shutil.rmtree(staging)
    write_files(files, staging)
    installed_main = staging / main_file
    mode = installed_main.stat().st_mode
    installed_main.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH | stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    if target.exists():
        shutil.rmtree(target)
    (staging / PLUGIN_NAME).rename(target)
    shutil.rmtree(staging)
    legacy = legacy_install(plugin_dir)
    if legacy is not None:
        shutil.rmtree(legacy)
    return target


def legacy_install(plugin_dir: Path) -> Path | None:
    """`<plugin_dir>/stylelayer` when it holds this plug-in as earlier versions installed it (its main file
    registers our filter), else None: a folder of that name that is not ours is left alone."""
    folder = Path(plugin_dir) / LEGACY_NAME
    try:
        main = (folder / f"{LEGACY_NAME}.py").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return folder if LEGACY_MARK in main and (folder / "stylelayer_client.py").is_file() else None
