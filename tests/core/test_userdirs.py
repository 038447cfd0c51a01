"""The per-user folders, worked out once (stylelayer.userdirs) for the server's style library and both installers."""

from __future__ import annotations

from pathlib import Path

import pytest

from stylelayer.api.serve import default_styles_dir
from stylelayer.install import gimp, krita
from stylelayer.userdirs import platform_family, user_config_dir, user_data_dir

HOME = Path("/home/ann")


@pytest.mark.parametrize(
    ("platform", "family"),
    [
        ("linux", "linux"),
        ("freebsd14", "linux"),
        ("darwin", "macos"),
        ("macos", "macos"),
        ("win32", "windows"),
        ("windows", "windows"),
    ],
)
def test_platform_family(platform, family):
    assert platform_family(platform) == family


def test_linux_follows_xdg_and_ignores_relative_values():
    assert user_data_dir("linux", {}, HOME) == HOME / ".local/share"
    assert user_config_dir("linux", {}, HOME) == HOME / ".config"
    env = {"XDG_DATA_HOME": "/data", "XDG_CONFIG_HOME": "/config"}
    assert user_data_dir("linux", env, HOME) == Path("/data")
    assert user_config_dir("linux", env, HOME) == Path("/config")
    relative = {"XDG_DATA_HOME": "data", "XDG_CONFIG_HOME": "config"}  # the XDG spec says: ignore these
    assert user_data_dir("linux", relative, HOME) == HOME / ".local/share"
    assert user_config_dir("linux", relative, HOME) == HOME / ".config"


def test_macos_and_windows():
    assert (
        user_data_dir("darwin", {}, HOME)
        == user_config_dir("darwin", {}, HOME)
        == (HOME / "Library/Application Support")
    )
    assert user_data_dir("win32", {"APPDATA": "C:/Users/ann/AppData/Roaming"}, HOME) == Path(
        "C:/Users/ann/AppData/Roaming"
    )
    assert user_config_dir("win32", {}, HOME) == HOME / "AppData/Roaming"


def test_home_comes_from_the_environment_when_not_given():
    assert user_data_dir("linux", {"HOME": "/h"}) == Path("/h/.local/share")
    assert user_data_dir("win32", {"USERPROFILE": "C:/Users/bo"}) == Path("C:/Users/bo/AppData/Roaming")


def test_the_server_and_the_installers_use_the_same_folders(monkeypatch, tmp_path):
    monkeypatch.setattr("sys.platform", "linux")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("GIMP3_DIRECTORY", raising=False)
    assert default_styles_dir() == tmp_path / "data/stylelayer/styles"
    assert krita.default_resource_dir() == tmp_path / "data/krita"
    assert krita.default_kritarc() == tmp_path / "config/kritarc"
    assert gimp.default_plugin_dir() == tmp_path / "config/GIMP/3.0/plug-ins"
