"""Fixtures for the protocol tests: real servers on 127.0.0.1 port 0 around a fake (or real) engine, and
the plug-ins' stdlib client pointed at them.

The fake engine (protocol_helpers.FakeEngine) honours the engine contract the server relies on (progress every
iteration, cancellation checked every iteration, previews every `preview_every`, output the size of the content
with its alpha) and returns the content pixels unchanged, so a round trip through HTTP can be compared exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from protocol_helpers import FakeEngine, stylelayer_client

from stylelayer.api import ServerThread, create_app


@pytest.fixture
def fake_engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., tuple[ServerThread, stylelayer_client.StylelayerClient]]]:
    """Factory: start a server with a given engine and config; every one is stopped at teardown."""
    servers: list[ServerThread] = []

    def start(engine: object = None, token: str | None = None, **config: object):
        config.setdefault("styles_dir", str(tmp_path / f"styles{len(servers)}"))
        srv = ServerThread(create_app({"token": token, **config}, engine=engine)).start()
        servers.append(srv)
        return srv, stylelayer_client.StylelayerClient(srv.url, token=token, timeout=10)

    yield start
    for srv in servers:
        srv.stop()


@pytest.fixture
def server(make_server, fake_engine):
    """(ServerThread, client) around the default fake engine."""
    return make_server(fake_engine)


@pytest.fixture
def client(server) -> stylelayer_client.StylelayerClient:
    return server[1]
