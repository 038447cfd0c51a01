"""Workers on Ray (`stylelayer serve --workers ray`): one actor per GPU, or per N CPU cores, each holding its own
engine and Gram cache, on this machine or on a Ray cluster.

Only this module imports Ray, and only `serve.py` imports it, when Ray workers are asked for. The job queue drives a
`RayWorker` like the in-process worker: `run` sends the job to its actor, which runs it with the same
`workers.run_on_engine`, and polls the actor every `POLL_S` for the job's progress updates (previews as PNG bytes),
passing the cancel flag along. The engine's exceptions come back as themselves; an actor that dies under a job
(killed, its node lost, killed for memory) raises `WorkerLost`, and the queue has the worker `replace` its actor.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import ray
from ray.exceptions import RayError, RayTaskError

from ..core.engine import ShouldCancel
from ..core.params import StyleParams
from .workers import JobOutcome, JobSpec, ProgressUpdate, Report, WorkerLost, run_on_engine

log = logging.getLogger("stylelayer.api")

POLL_S = 0.1  # how often a running job's progress is fetched and its cancel flag passed on
CALL_TIMEOUT_S = 120.0  # an actor that answers no poll for this long is treated as lost
START_WAIT_S = 1.0  # how often a worker that waits for its actor checks whether the server is stopping
START_LOG_EVERY_S = 60.0
DEFAULT_CPUS_PER_WORKER = 4  # torch's convolutions scale to a few cores per job; more cores: more workers


class StyleActor:
    """The Ray actor: an engine loaded by `load`, running one job at a time in `run` while `poll` (another thread
    of the actor) hands out the job's progress and takes its cancel flag."""

    def __init__(self, threads: int | None):
        if threads:
            from ..core.engine import use_cpu_threads

            use_cpu_threads(threads)
        self.engine: Any = None
        self._lock = threading.Lock()
        self._updates: dict[str, list[ProgressUpdate]] = {}
        self._cancelled: set[str] = set()

    def load(self, factory: Callable[[], Any]) -> dict[str, Any]:
        self.engine = None  # let the old engine go before its successor is loaded
        self.engine = factory()
        return self.info()

    def info(self) -> dict[str, Any]:
        return {
            "engine": dict(self.engine.describe()),
            "node": ray.util.get_node_ip_address(),
            "pid": os.getpid(),
            "cache": self.engine.cache_stats(),
        }

    def run(self, spec: JobSpec) -> JobOutcome:
        def report(update: ProgressUpdate) -> None:
            with self._lock:
                self._updates.setdefault(spec.job_id, []).append(update)

        return run_on_engine(self.engine, spec, report, lambda: spec.job_id in self._cancelled)

    def poll(self, job_id: str, cancel: bool, final: bool) -> tuple[list[ProgressUpdate], dict[str, int]]:
        """The job's updates since the last poll, and the Gram cache's figures; `final`: the job has ended."""
        with self._lock:
            if cancel:
                self._cancelled.add(job_id)
            updates = self._updates.pop(job_id, [])
            if final:
                self._cancelled.discard(job_id)
        return updates, self.engine.cache_stats()

    def plan_job(self, content_size: tuple[int, int] | None, params: StyleParams) -> Any:
        return self.engine.plan_job(content_size, params)


_RemoteStyleActor = ray.remote(StyleActor)


class RayWorker:
    """One actor of the pool, seen from the server: the job queue's worker interface."""

    kind = "ray"

    def __init__(self, name: str, factory: Callable[[], Any], num_cpus: float, num_gpus: float):
        self.name = name
        self.factory = factory  # builds the engine in the actor (pickled to it)
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.engine: RemoteEngine | None = None
        self._actor: Any = None
        self._info: dict[str, Any] = {}
        self._cache: dict[str, int] = {}

    def start(self, stopping: ShouldCancel) -> None:
        """Create the actor if there is none and load the engine in it; a failed load raises its own error."""
        if self._actor is None:
            threads = int(self.num_cpus) if not self.num_gpus else None
            self._actor = _RemoteStyleActor.options(
                num_cpus=self.num_cpus, num_gpus=self.num_gpus, max_concurrency=4
            ).remote(threads)
        ref = self._actor.load.remote(self.factory)
        started = next_log = time.monotonic()
        while not ray.wait([ref], timeout=START_WAIT_S)[0]:
            if stopping():
                raise WorkerLost("the server stopped before the worker started")
            if time.monotonic() - next_log > START_LOG_EVERY_S:  # the cluster lacks the resources, for now
                next_log = time.monotonic()
                log.info(
                    "%s: still waiting for a Ray actor with %g CPU and %g GPU after %.0f s",
                    self.name,
                    self.num_cpus,
                    self.num_gpus,
                    next_log - started,
                )
        try:
            self._info = ray.get(ref)
        except RayTaskError as exc:  # the factory failed: its own exception, e.g. missing weights
            raise _cause(exc) from None
        except RayError as exc:
            raise WorkerLost(f"the Ray actor died while loading the engine: {_first_line(exc)}") from None
        self._cache = dict(self._info.get("cache", {}))
        self.engine = RemoteEngine(self)

    def run(self, spec: JobSpec, report: Report, should_cancel: ShouldCancel) -> JobOutcome:
        actor = self._actor
        ref = actor.run.remote(spec)
        try:
            while True:
                done = bool(ray.wait([ref], timeout=POLL_S)[0])
                updates, self._cache = ray.get(
                    actor.poll.remote(spec.job_id, should_cancel(), done), timeout=CALL_TIMEOUT_S
                )
                for update in updates:
                    report(update)
                if done:
                    return ray.get(ref)
        except RayTaskError as exc:  # the engine raised: Cancelled, OutOfMemory, ValueError, ... as themselves
            raise _cause(exc) from None
        except RayError as exc:  # the actor died or stopped answering
            raise WorkerLost(f"Ray worker {self.name} was lost: {_first_line(exc)}") from None

    def replace(self, stopping: ShouldCancel) -> None:
        """A fresh actor (and engine) in place of a lost one."""
        self.close()
        self.start(stopping)

    def close(self) -> None:
        actor, self._actor, self.engine = self._actor, None, None
        if actor is not None:
            try:
                ray.kill(actor)
            except RayError as exc:  # already gone with its node
                log.info("%s: %s", self.name, _first_line(exc))

    def describe(self) -> dict[str, Any]:
        engine = self._info.get("engine", {})
        return {
            "name": self.name,
            "kind": self.kind,
            "device": str(engine.get("device", "")),
            "node": self._info.get("node"),
            "pid": self._info.get("pid"),
            "cpus": self.num_cpus,
            "gpus": self.num_gpus,
        }

    def cache_stats(self) -> dict[str, int]:
        return dict(self._cache)


class RemoteEngine:
    """A worker's engine as the server sees it: what it is and its cache from the last answer, plans asked live."""

    def __init__(self, worker: RayWorker):
        self._worker = worker

    def describe(self) -> dict[str, Any]:
        return dict(self._worker._info.get("engine", {}))

    def cache_stats(self) -> dict[str, int]:
        return self._worker.cache_stats()

    def plan_job(self, content_size: tuple[int, int] | None, params: StyleParams) -> Any:
        actor = self._worker._actor
        if actor is None:
            raise RuntimeError(f"{self._worker.name} is restarting")
        try:
            return ray.get(actor.plan_job.remote(content_size, params), timeout=CALL_TIMEOUT_S)
        except RayTaskError as exc:
            raise _cause(exc) from None


class RayPool:
    """The actors of one server: sized from the cluster (one per GPU, else one per `cpus_per_worker` cores) unless
    `workers` says how many. Connects to Ray (`address`: None starts a local cluster, 'auto' joins the one
    `ray start` runs here, 'ray://host:port' a remote one) unless the caller has already."""

    def __init__(
        self,
        engine_factory: Callable[[], Any],
        address: str | None = None,
        workers: int | None = None,
        cpus_per_worker: float | None = None,
        device: str = "auto",
        runtime_env: dict[str, Any] | None = None,
    ):
        self.owns_ray = not ray.is_initialized()
        if self.owns_ray:
            ray.init(address=address, include_dashboard=False, runtime_env=runtime_env)
        started = time.monotonic()
        self.num_cpus, self.num_gpus, count = pool_shape(_alive_nodes(), device, workers, cpus_per_worker)
        self.workers = [RayWorker(f"ray-{i}", engine_factory, self.num_cpus, self.num_gpus) for i in range(count)]
        log.info(
            "Ray pool: %d workers with %g CPU and %g GPU each (%.1f s)",
            count,
            self.num_cpus,
            self.num_gpus,
            time.monotonic() - started,
        )

    def use(self, engine_factory: Callable[[], Any]) -> None:
        """Load engines from another factory at the workers' next start (the actors stay)."""
        for worker in self.workers:
            worker.factory, worker.engine = engine_factory, None

    def close(self) -> None:
        for worker in self.workers:
            worker.close()
        if self.owns_ray:
            ray.shutdown()


def pool_shape(
    nodes: list[dict[str, float]], device: str, workers: int | None, cpus_per_worker: float | None
) -> tuple[float, float, int]:
    """(CPUs per worker, GPUs per worker, workers) for a cluster whose nodes have these resources.

    GPU workers (device auto or cuda, and the cluster has GPUs): one GPU each, one CPU unless told. CPU workers:
    `cpus_per_worker` cores each (default 4, at most a node's), as many as the cluster's cores hold.
    """
    gpus = sum(int(node.get("GPU", 0)) for node in nodes)
    if device == "cuda" and not gpus:
        raise ValueError("--device cuda: the Ray cluster has no GPU")
    if device in ("auto", "cuda") and gpus:
        return float(cpus_per_worker or 1), 1.0, workers or gpus
    largest = max((node.get("CPU", 0.0) for node in nodes), default=0.0)
    if largest < 1:
        raise ValueError("the Ray cluster has no CPU to run a worker on")
    per_worker = float(cpus_per_worker or min(DEFAULT_CPUS_PER_WORKER, largest))
    if per_worker > largest:
        raise ValueError(f"--cpus-per-worker {per_worker:g}: the largest node of the Ray cluster has {largest:g}")
    fits = sum(int(node.get("CPU", 0.0) // per_worker) for node in nodes)
    return per_worker, 0.0, workers or max(1, fits)


def _alive_nodes() -> list[dict[str, float]]:
    return [node["Resources"] for node in ray.nodes() if node.get("Alive")]


def _cause(exc: RayTaskError) -> BaseException:
    """The exception an actor method raised, as itself (Ray wraps it with the remote traceback)."""
    return exc.cause if isinstance(exc.cause, BaseException) else RuntimeError(_first_line(exc))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def style_engine_factory(weights: str, device: str, max_memory: int | None) -> Callable[[], Any]:
    """What each actor loads: the same engine `stylelayer serve` would load in-process."""
    from ..core.engine import StyleEngine

    return functools.partial(StyleEngine, weights=weights, device=device, max_memory=max_memory)
