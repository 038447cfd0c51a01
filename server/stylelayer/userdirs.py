"""The per-user folders of this platform, worked out in one place for the server and the plug-in installers.

    platform   data folder                         config folder
    Linux      $XDG_DATA_HOME or ~/.local/share    $XDG_CONFIG_HOME or ~/.config
    macOS      ~/Library/Application Support       ~/Library/Application Support
    Windows    %APPDATA% or ~/AppData/Roaming      %APPDATA% or ~/AppData/Roaming

Every function takes the platform (`sys.platform` style, or linux/macos/windows), the environment and the home
folder as optional arguments, so the tests can ask for any platform's answer on any machine.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path


def platform_family(platform: str | None = None) -> str:
    """'windows', 'macos' or 'linux' (every other Unix counts as linux) for a `sys.platform`-style name."""
    platform = (platform or sys.platform).lower()
    if platform.startswith("win"):
        return "windows"
    if platform in ("darwin", "macos"):
        return "macos"
    return "linux"


def home_dir(env: Mapping[str, str] | None = None, home: Path | None = None) -> Path:
    """`home` when given, else $HOME, else %USERPROFILE%, else what Python thinks."""
    env = os.environ if env is None else env
    if home is not None:
        return Path(home)
    return Path(env.get("HOME") or env.get("USERPROFILE") or Path.home())


def _xdg(env: Mapping[str, str], variable: str, fallback: Path) -> Path:
    value = env.get(variable)
    return Path(value) if value and os.path.isabs(value) else fallback  # the XDG spec ignores relative paths


def user_data_dir(platform: str | None = None, env: Mapping[str, str] | None = None, home: Path | None = None) -> Path:
    """Where programs keep a user's data: the server's style library, Krita's resource folder."""
    env = os.environ if env is None else env
    home = home_dir(env, home)
    family = platform_family(platform)
    if family == "windows":
        return Path(env["APPDATA"]) if env.get("APPDATA") else home / "AppData" / "Roaming"
    if family == "macos":
        return home / "Library" / "Application Support"
    return _xdg(env, "XDG_DATA_HOME", home / ".local" / "share")


def user_config_dir(
    platform: str | None = None, env: Mapping[str, str] | None = None, home: Path | None = None
) -> Path:
    """Where programs keep a user's settings: GIMP's profile, Krita's kritarc on Linux."""
    env = os.environ if env is None else env
    family = platform_family(platform)
    if family != "linux":
        return user_data_dir(platform, env, home)
    return _xdg(env, "XDG_CONFIG_HOME", home_dir(env, home) / ".config")
