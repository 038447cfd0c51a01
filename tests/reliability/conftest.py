"""Fixtures for the reliability suite: the protocol suite's servers and fake engine (shared, not copied), and a
`cases` counter that tests bump once per input they try, so scripts/reliability_report.py can say how many."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "protocol"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # testimages
from protocol_helpers import client, fake_engine, make_server, server, server_workers  # noqa: F401  (fixtures)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "category(name): the RELIABILITY.md section a test's row goes in")


class Cases:
    """How many inputs (requests, images, hypothesis examples) one test tried."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, n: int = 1) -> None:
        self.n += n


@pytest.fixture
def cases(request: pytest.FixtureRequest) -> Iterator[Cases]:
    counter = Cases()
    yield counter
    request.node.user_properties.append(("cases", counter.n))


class StorageCounts:
    """What a storage-fault test did: faults injected, jobs whose state the client and the store were checked to
    agree on, and results lost (a job the client saw done whose result is gone or changed): RELIABILITY.md's
    "Storage faults" section adds them up."""

    def __init__(self) -> None:
        self.faults = 0
        self.jobs = 0
        self.lost = 0


@pytest.fixture
def storage(request: pytest.FixtureRequest) -> Iterator[StorageCounts]:
    counts = StorageCounts()
    yield counts
    request.node.user_properties.append(("storage", (counts.faults, counts.jobs, counts.lost)))
