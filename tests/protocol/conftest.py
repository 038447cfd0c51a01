"""Fixtures for the protocol tests: real servers on 127.0.0.1 port 0 around a fake (or real) engine, and
the plug-ins' stdlib client pointed at them.

The fake engine (protocol_helpers.FakeEngine) honours the engine contract the server relies on (progress every
iteration, cancellation checked every iteration, previews every `preview_every`, output the size of the content
with its alpha) and returns the content pixels unchanged, so a round trip through HTTP can be compared exactly.
The fixtures live in protocol_helpers so tests/reliability can use the same ones.

Every test that starts a server runs twice: with the engine in the server's process ([in-process]) and in one actor
of a Ray pool ([ray], `stylelayer serve --workers ray`), whose fake engine the test steers across the process
boundary (fake_link.py): the same suite shows the pool behaves exactly as the in-process worker.
"""

from __future__ import annotations

import pytest
from protocol_helpers import client, fake_engine, make_server, server  # noqa: F401  (fixtures)


@pytest.fixture(params=["in-process", "ray"])
def server_workers(request: pytest.FixtureRequest) -> object:
    """None (the engine in the server's process) or the session's Ray pool."""
    return None if request.param == "in-process" else request.getfixturevalue("ray_pool")
