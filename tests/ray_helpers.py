"""A local Ray cluster for the tests: one per session (starting Ray takes about 10 s on a 2-core machine, an actor
a few more), with a pool of two one-CPU actors whose engines each server chooses (`RayPool.use`).

Nothing here imports Ray until the `ray_pool` fixture runs, and it skips (saying why) where Ray is not installed:
`pip install -e '.[ray]'`, which scripts/test.sh and so CI do.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parent
# What the actors import besides stylelayer: the fake engines (and the test modules that subclass them).
ACTOR_PATH = [TESTS / "protocol", TESTS, TESTS.parent / "plugins" / "common"]
RAY_CPUS = 3  # two for the pool's actors, one for a `stylelayer serve --workers ray` test to join with
POOL_WORKERS = 2


def engine_factory(engine: Any, config: dict[str, Any]) -> Callable[[], Any]:
    """What an actor loads for `make_server(engine, **config)`: a copy of the given (fake) engine, or the real engine
    that the given one or the config describes (it is rebuilt there, not pickled)."""
    from stylelayer.core.engine import StyleEngine

    if engine is None:
        return functools.partial(
            StyleEngine,
            weights=config.get("weights", "caffe"),
            device=config.get("device", "auto"),
            max_memory=config.get("max_memory"),
        )
    if isinstance(engine, StyleEngine):
        return functools.partial(
            StyleEngine,
            weights=engine.weights_name,
            device=str(engine.device),
            max_memory=engine.max_memory,
            tile_size=engine.tile_size,
        )
    return functools.partial(_given, engine)


def _given(engine: Any) -> Any:
    return engine


def _no_engine() -> Any:
    raise RuntimeError("choose the actors' engine with RayPool.use before starting a server")


@pytest.fixture(scope="session")
def ray_pool() -> Iterator[Any]:
    """A `RayPool` of two one-CPU actors on a local Ray cluster of three (logical) CPUs."""
    reason = "Ray is not installed: pip install -e '.[ray]' (scripts/test.sh does)"
    ray = pytest.importorskip("ray", reason=reason)
    from stylelayer.api.ray_workers import RayPool

    pythonpath = os.pathsep.join(str(path) for path in ACTOR_PATH)
    ray.init(num_cpus=RAY_CPUS, include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": pythonpath}})
    pool = RayPool(_no_engine, workers=POOL_WORKERS, cpus_per_worker=1)
    yield pool
    pool.close()
    ray.shutdown()
