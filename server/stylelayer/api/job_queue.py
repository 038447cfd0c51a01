"""The job queue: one worker thread owns the engine (one GPU, one job at a time), fed by a bounded FIFO.

Requests only enqueue and read snapshots, so a long optimisation never blocks the HTTP threads. Finished jobs
are kept for a bounded time and count so a plug-in that polls late still gets its result, without the server
growing forever.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from PIL import Image

from ..engine import Cancelled, OutOfMemory, Progress, StyleResult
from ..imaging import encode_png
from ..params import StyleParams

log = logging.getLogger("stylelayer.api")

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
TERMINAL = frozenset({DONE, FAILED, CANCELLED})


class Engine(Protocol):
    """What the queue needs from `stylelayer.engine.StyleEngine` (tests pass a fast fake)."""

    def stylize(
        self,
        content: Image.Image | None,
        styles: list[Image.Image],
        params: StyleParams,
        progress: Callable[[Progress], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
        preview_every: int = 0,
    ) -> StyleResult: ...

    def describe(self) -> dict[str, Any]: ...

    def cache_stats(self) -> dict[str, int]: ...


class QueueFull(Exception):
    """More jobs are waiting than the server accepts; the client should retry later (HTTP 429)."""


class EngineUnavailable(Exception):
    """The engine could not be loaded; every job would fail (HTTP 503)."""


@dataclass
class Job:
    content: Image.Image | None
    styles: list[Image.Image]
    params: StyleParams
    preview_every: int
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    state: str = QUEUED
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    iteration: int = 0
    total: int = 0
    elapsed: float = 0.0
    losses: dict[str, float | None] = field(default_factory=dict)
    error: dict[str, str] | None = None
    seed: int | None = None
    preview_png: bytes | None = None
    preview_iteration: int | None = None
    level: int = 0  # coarse-to-fine level being optimised (1-based), of `levels`
    levels: int = 0
    tile: int = 0  # tiles done in the current iteration of a tiled level, of `tiles` (0 when not tiled)
    tiles: int = 0
    plan: str = ""  # how the current level runs: size, whole image or tiles, optimiser, memory
    result_png: bytes | None = None
    cancel_requested: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)


class JobQueue:
    """Bounded FIFO of jobs run one at a time by a single worker thread that owns the engine."""

    def __init__(
        self,
        engine: Engine | None = None,
        engine_factory: Callable[[], Engine] | None = None,
        max_queue: int = 8,
        keep_results: int = 32,
        result_ttl: float = 3600.0,
    ):
        if (engine is None) == (engine_factory is None):
            raise ValueError("give exactly one of engine or engine_factory")
        self.engine = engine
        self.engine_error: str | None = None
        self.max_queue = max_queue
        self.keep_results = keep_results
        self.result_ttl = result_ttl
        self._factory = engine_factory
        self._jobs: OrderedDict[str, Job] = OrderedDict()  # every known job, oldest first
        self._waiting: deque[Job] = deque()
        self._lock = threading.Condition()
        self._stopping = False
        self._ready = threading.Event()
        if engine is not None:
            self._ready.set()
        self._worker = threading.Thread(target=self._run, name="stylelayer-worker", daemon=True)
        self._worker.start()

    # ---- called from request threads -----------------------------------------------------------------------
    @property
    def engine_state(self) -> str:
        """'ready', 'loading' or 'failed' (the model loads in the worker so the server answers at once)."""
        if self.engine_error is not None:
            return "failed"
        return "ready" if self._ready.is_set() else "loading"

    def submit(
        self,
        content: Image.Image | None,
        styles: list[Image.Image],
        params: StyleParams,
        preview_every: int = 0,
    ) -> Job:
        if self.engine_error is not None:
            raise EngineUnavailable(self.engine_error)
        with self._lock:
            if self._stopping:  # the worker is gone: a job queued now would never run
                raise EngineUnavailable("the server is shutting down")
            self._prune()
            if len(self._waiting) >= self.max_queue:
                raise QueueFull(f"{len(self._waiting)} jobs are already waiting (limit {self.max_queue})")
            job = Job(content=content, styles=styles, params=params, preview_every=preview_every)
            self._jobs[job.id] = job
            self._waiting.append(job)
            self._lock.notify_all()
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            self._prune()
            return self._jobs.get(job_id)

    def cancel(self, job_id: str) -> Job | None:
        """Queued jobs end at once; a running job stops at its next iteration; finished jobs are unchanged."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return None
            job.cancel_requested.set()
            if job.state == QUEUED:
                self._waiting.remove(job)
                self._finish(job, CANCELLED)
            return job

    def queue_position(self, job: Job) -> int | None:
        """1 for the next job to run; None once the job has left the queue."""
        with self._lock:
            try:
                return self._waiting.index(job) + 1
            except ValueError:
                return None

    def counts(self) -> dict[str, int]:
        with self._lock:
            counts = {state: 0 for state in (QUEUED, RUNNING, DONE, FAILED, CANCELLED)}
            for job in self._jobs.values():
                counts[job.state] += 1
            return counts

    def wait_ready(self, timeout: float | None = None) -> bool:
        return self._ready.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel what is queued or running and end the worker (server shutdown)."""
        with self._lock:
            self._stopping = True
            for job in list(self._waiting):
                job.cancel_requested.set()
                self._finish(job, CANCELLED)
            self._waiting.clear()
            for job in self._jobs.values():
                job.cancel_requested.set()
            self._lock.notify_all()
        self._worker.join(timeout)

    # ---- worker thread -------------------------------------------------------------------------------------
    def _run(self) -> None:
        if self._factory is not None:
            try:
                self.engine = self._factory()
            except Exception as exc:  # reported by /v1/health and on every submission
                log.exception("could not load the style engine")
                self.engine_error = f"the style engine failed to load: {exc}"
            self._ready.set()
        while True:
            with self._lock:
                while not self._waiting and not self._stopping:
                    self._lock.wait()
                if self._stopping:
                    return
                job = self._waiting.popleft()
                job.state = RUNNING
                job.started = time.time()
            self._execute(job)

    def _execute(self, job: Job) -> None:
        if self.engine is None:
            self._fail(job, "engine_unavailable", self.engine_error or "the style engine is not loaded")
            return

        def on_progress(p: Progress) -> None:
            preview = encode_png(p.preview) if p.preview is not None else None
            with self._lock:
                job.iteration, job.total, job.elapsed = p.iteration, p.total, p.elapsed
                job.level, job.levels, job.tile, job.tiles, job.plan = p.level, p.levels, p.tile, p.tiles, p.plan
                job.losses = _finite(p.losses)
                if preview is not None:
                    job.preview_png, job.preview_iteration = preview, p.iteration

        try:
            result = self.engine.stylize(
                job.content,
                job.styles,
                job.params,
                progress=on_progress,
                should_cancel=job.cancel_requested.is_set,
                preview_every=job.preview_every,
            )
            png = encode_png(result.image, result.params, result.seed)
        except Cancelled:
            with self._lock:
                self._finish(job, CANCELLED)
            return
        except OutOfMemory as exc:  # the engine has freed the device's memory; its message says what to lower
            self._fail(job, "out_of_memory", str(exc))
            return
        except ValueError as exc:  # the engine's input checks (e.g. an image too thin to stylise)
            self._fail(job, "bad_request", str(exc))
            return
        except Exception as exc:
            log.exception("job %s failed", job.id)
            self._fail(job, "engine_error", f"the style engine failed: {type(exc).__name__}: {exc}")
            return
        with self._lock:
            job.result_png, job.seed = png, result.seed
            job.iteration = job.total = result.iterations
            job.losses = _finite(result.losses)
            job.elapsed = result.elapsed
            self._finish(job, DONE)

    def _fail(self, job: Job, code: str, message: str) -> None:
        with self._lock:
            job.error = {"code": code, "message": message}
            self._finish(job, FAILED)

    def _finish(self, job: Job, state: str) -> None:
        """Caller holds the lock. Inputs are dropped at once: only the result PNG is worth keeping."""
        job.state = state
        job.finished = time.time()
        job.content, job.styles = None, []
        if state == DONE:
            job.preview_png = None  # the result supersedes it (the preview route then serves the result)
        job.ended.set()

    def _prune(self) -> None:
        """Caller holds the lock. Forget finished jobs past their time-to-live or beyond the count limit."""
        now = time.time()
        finished = [j for j in self._jobs.values() if j.state in TERMINAL]
        excess = len(finished) - self.keep_results
        for i, job in enumerate(finished):
            if i < excess or now - (job.finished or now) > self.result_ttl:
                del self._jobs[job.id]


def _finite(losses: dict[str, float]) -> dict[str, float | None]:
    """JSON has no NaN or infinity; a diverged loss is reported as null."""
    return {k: (float(v) if math.isfinite(float(v)) else None) for k, v in losses.items()}

