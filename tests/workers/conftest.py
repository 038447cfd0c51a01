"""Fixtures for the worker tests: servers with several in-process workers or the session's Ray pool, around the
protocol suite's fake engine (protocol_helpers) and client."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "protocol"))
from protocol_helpers import stylelayer_client
from ray_helpers import engine_factory
from server_thread import ServerThread

from stylelayer.api import create_app

Started = tuple[ServerThread, stylelayer_client.StylelayerClient]


@pytest.fixture
def serve_workers(tmp_path: Path) -> Iterator[Callable[..., Started]]:
    """Factory: a server whose jobs run on the given workers (the queue's worker interface); stopped at teardown."""
    servers: list[ServerThread] = []

    def start(workers: list, **config: object) -> Started:
        config.setdefault("styles_dir", str(tmp_path / f"styles{len(servers)}"))
        config.setdefault("data_dir", str(tmp_path / f"data{len(servers)}"))
        app = create_app(config, workers=workers)
        assert app.extensions["stylelayer"].queue.wait_ready(60)
        srv = ServerThread(app).start()
        servers.append(srv)
        return srv, stylelayer_client.StylelayerClient(srv.url, timeout=10)

    yield start
    for srv in servers:
        srv.stop()


@pytest.fixture
def serve_pool(ray_pool, serve_workers) -> Callable[..., Started]:
    """Factory: a server on the session's two Ray actors, each with a copy of `engine` (steered from the test)."""

    def start(engine: object, workers: int = 2, **config: object) -> Started:
        ray_pool.use(engine_factory(engine, {}))
        return serve_workers(ray_pool.workers[:workers], **config)

    return start
