"""Fixtures for the GIMP plug-in tests.

The plug-in is assembled as `stylelayer install-plugin gimp` assembles it (plugins/gimp plus plugins/common)
into a temporary folder, and its files are loaded from there by path under other module names: our pip package
is also called `stylelayer`.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from stylelayer.install import PACKAGE_DIRS, assemble


def load_by_path(module_name: str, path: Path):
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and threads look the module up while it runs
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def plugin_dir(tmp_path_factory) -> Path:
    """The assembled plug-in folder, as it lands in GIMP's plug-ins folder."""
    return assemble("gimp", tmp_path_factory.mktemp("gimp-plugin")) / PACKAGE_DIRS["gimp"]


@pytest.fixture(scope="session")
def logic(plugin_dir):
    # stylelayer_logic does `import stylelayer_plugin_logic` (GIMP has the plug-in folder on sys.path): give it
    # the assembled copy under that name, without putting the folder (and its stylelayer.py) on sys.path.
    load_by_path("stylelayer_plugin_logic", plugin_dir / "stylelayer_plugin_logic.py")
    return load_by_path("gimp_stylelayer_logic", plugin_dir / "stylelayer_logic.py")


@pytest.fixture(scope="session")
def client_mod(plugin_dir):
    return load_by_path("gimp_stylelayer_client", plugin_dir / "stylelayer_client.py")


@pytest.fixture(scope="session")
def server_url(engine):
    """A live stylelayer server on 127.0.0.1 with the real engine (tests/conftest.py: CPU, offline VGG19)."""
    from server_thread import ServerThread

    from stylelayer.api import create_app

    with ServerThread(create_app({}, engine=engine)) as server:
        yield server.url


@pytest.fixture(scope="session")
def client(server_url, client_mod):
    """The same client the plug-in uses (its assembled copy)."""
    return client_mod.StylelayerClient(base_url=server_url, timeout=60)
