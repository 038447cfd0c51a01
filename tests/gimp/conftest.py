"""Fixtures for the GIMP plug-in tests.

The plug-in is assembled as `stylelayer install-plugin gimp` assembles it (plugins/gimp plus plugins/common)
into a temporary folder, which goes on sys.path as GIMP puts it there: the tests import exactly what GIMP loads,
by the modules' own names (none is called `stylelayer`, our server's package).
"""

from __future__ import annotations

import atexit
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from stylelayer.install import PACKAGE_DIRS, assemble

ASSEMBLED = assemble("gimp", Path(tempfile.mkdtemp(prefix="stylelayer-gimp-plugin-"))) / PACKAGE_DIRS["gimp"]
atexit.register(shutil.rmtree, ASSEMBLED.parent, True)
sys.path.insert(0, str(ASSEMBLED))


@pytest.fixture(scope="session")
def plugin_dir() -> Path:
    """The assembled plug-in folder, as it lands in GIMP's plug-ins folder."""
    return ASSEMBLED


@pytest.fixture(scope="session")
def client_mod():
    import stylelayer_client

    return stylelayer_client


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
