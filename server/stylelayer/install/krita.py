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
import zipfile
from collections.abc import Mapping
from pathlib import Path

from ..userdirs import home_dir, platform_family, user_config_dir, user_data_dir
from . import InstallError, plugin_files, write_files

PLUGIN_NAME = "stylelayer_krita"
DESKTOP_FILE = PLUGIN_NAME + ".desktop"


def default_resource_dir(platform: str | None = None, env: Mapping[str, str] | None = None) -> Path:
    """Krita's user resource folder for this (or the given) platform."""
    return user_data_dir(platform, env) / "krita"


def default_kritarc(platform: str | None = None, env: Mapping[str, str] | None = None) -> Path:
    """Where Krita keeps its settings file for this (or the given) platform."""
    env = os.environ if env is None else env
    family = platform_family(platform)
    if family == "windows":
        local = env.get("LOCALAPPDATA")
        return (Path(local) if local else home_dir(env) / "AppData" / "Local") / "kritarc"
    if family == "macos":
        return home_dir(env) / "Library" / "Preferences" / "kritarc"
    return user_config_dir(platform, env) / "kritarc"


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


def kritarc_used(resource_dir: Path | None) -> Path:
    """The kritarc `install` enables the plug-in in when none is given: Krita's own for its default resource folder,
    else the one that goes with `resource_dir` (see `kritarc_for`)."""
    if resource_dir is None or Path(resource_dir) == default_resource_dir():
        return default_kritarc()
    return kritarc_for(Path(resource_dir))


def configured_resource_dir(kritarc: Path | None = None) -> Path | None:
    """The resource folder chosen in Krita's settings (Settings > Configure Krita > General > Resource folder:
    `ResourceDirectory=` in kritarc), None when it is Krita's default."""
    kritarc = kritarc if kritarc is not None else default_kritarc()
    try:
        lines = kritarc.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        key, sep, value = line.partition("=")
        if sep and key.strip() == "ResourceDirectory" and value.strip():
            return Path(value.strip()).expanduser()
    return None


def resource_dir_for(dest: Path, kritarc: Path | None = None) -> tuple[Path, Path | None]:
    """(resource folder, the kritarc to enable it in, None: the one `install` derives) for `stylelayer
    install-plugin krita --dest DEST`.

    Krita loads Python plug-ins from <resource folder>/pykrita: DEST is that resource folder (named krita, as Krita's
    default ones are, already holding pykrita/, or the one chosen in Krita's settings) or its pykrita folder.
    Anything else is refused (InstallError): Krita would never see the plug-in there.
    """
    dest = Path(dest).expanduser()
    if dest.name == "pykrita":
        dest = dest.parent
    configured = configured_resource_dir(kritarc)
    if configured is not None and os.path.abspath(configured) == os.path.abspath(dest):
        return dest, kritarc if kritarc is not None else default_kritarc()  # Krita reads its own kritarc
    if dest.name == "krita" or (dest / "pykrita").is_dir():
        return dest, kritarc
    raise InstallError(
        f"Krita would not load a plug-in from {dest}: it reads Python plug-ins from the pykrita folder of its "
        f"resource folder ({configured or default_resource_dir()} for you; Settings > Manage Resources > Open "
        "Resource Folder shows it). Leave out --dest, or give that folder."
    )


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


def _assembled() -> dict[str, Path]:
    files = plugin_files("krita")
    if DESKTOP_FILE not in files or f"{PLUGIN_NAME}/__init__.py" not in files:
        raise FileNotFoundError(f"the Krita plug-in is incomplete: it needs {DESKTOP_FILE} and {PLUGIN_NAME}/")
    return files


def install(resource_dir: Path | None = None, enable: bool = True, kritarc: Path | None = None) -> Path:
    """Copy the plug-in into `<resource_dir>/pykrita/` (replacing an older copy) and enable it in kritarc.

    resource_dir: Krita's resource folder (default: this platform's). kritarc: the settings file to edit
    (default: the one that goes with resource_dir, see `kritarc_for`). Returns the installed package folder.
    """
    files = _assembled()  # an incomplete plug-in is refused before anything is written
    resource_dir = Path(resource_dir) if resource_dir is not None else default_resource_dir()
    if kritarc is None:
        kritarc = kritarc_used(resource_dir)
    pykrita = resource_dir / "pykrita"
    pykrita.mkdir(parents=True, exist_ok=True)
    target = pykrita / PLUGIN_NAME
    if target.exists():
        shutil.rmtree(target)
    write_files(files, pykrita)
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
    files = _assembled()
    out = Path(out)
    if out.is_dir():
        out = out / f"{PLUGIN_NAME}.zip"
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        # Directory entries matter: Krita's importer finds the module by its "stylelayer_krita/" entry.
        folders = {"/".join(rel.split("/")[:depth]) + "/" for rel in files for depth in range(1, rel.count("/") + 1)}
        for folder in sorted(folders):
            entry = zipfile.ZipInfo(folder)
            entry.external_attr = (0o40755 << 16) | 0x10  # a directory, as ZipFile.write writes one
            zf.writestr(entry, b"")
        for rel, source in sorted(files.items()):
            zf.write(source, rel)
    return out
