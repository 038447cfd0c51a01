"""Fixtures for the GIMP plug-in tests.

The plug-in's files are loaded by path under other module names: our pip package is also called `stylelayer`.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PLUGIN_DIR = REPO / "plugins" / "gimp" / "stylelayer"
SHARED_IMAGES = REPO.parent / "shared" / "images"
ASSETS = REPO / "server" / "stylelayer" / "assets"


def image_path(name: str) -> Path:
    """A real test image (tubingen, starry_night, ...): ../shared/images, else the copy bundled in the package."""
    path = SHARED_IMAGES / f"{name}.jpg"
    return path if path.is_file() else ASSETS / f"{name}.jpg"


def load_by_path(module_name: str, path: Path):
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and threads look the module up while it runs
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def logic():
    # stylelayer_logic does `import stylelayer_plugin_logic` (GIMP has the plug-in folder on sys.path): give it
    # this folder's vendored copy under that name, without putting the folder (and its stylelayer.py) on sys.path.
    load_by_path("stylelayer_plugin_logic", PLUGIN_DIR / "stylelayer_plugin_logic.py")
    return load_by_path("gimp_stylelayer_logic", PLUGIN_DIR / "stylelayer_logic.py")


@pytest.fixture(scope="session")
def client_mod():
    path = PLUGIN_DIR / "stylelayer_client.py"
    if not path.is_file():
        pytest.fail(f"{path} is missing: run scripts/sync_client.py")
    return load_by_path("gimp_stylelayer_client", path)


@pytest.fixture(scope="session")
def server_url(engine):
    """A live stylelayer server on 127.0.0.1 with the real engine (tests/conftest.py: CPU, offline VGG19)."""
    from server_thread import ServerThread

    from stylelayer.api import create_app

    with ServerThread(create_app({}, engine=engine)) as server:
        yield server.url


@pytest.fixture(scope="session")
def client(server_url, client_mod):
    """The same client the plug-in uses (its vendored copy)."""
    return client_mod.StylelayerClient(base_url=server_url, timeout=60)
