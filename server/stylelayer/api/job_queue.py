"""The job queue: one worker thread owns the engine (one GPU, one job at a time), fed by a bounded FIFO.

Requests only enqueue and read snapshots, so a long optimisation never blocks the HTTP threads. Every job is
written through to the durable `job_store.JobStore`; finished jobs are kept for a bounded time, count and disk
budget so a plug-in that polls late (even after a restart) still gets its result, without the server growing
forever.
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
from ..imaging import ImageError, decode_image, encode_png
from ..limits import MAX_PIXELS
from ..memory import BudgetError
from ..params import ParamError, StyleParams
from .estimate import JobCost, SpeedMeter, job_cost
from .job_store import JobStore

log = logging.getLogger("stylelayer.api")

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
TERMINAL = frozenset({DONE, FAILED, CANCELLED})
DEFAULT_RETRY_AFTER = 5  # seconds, for a 429 while the running job has not reported progress yet
MAX_RETRY_AFTER = 600
PRUNE_EVERY = 60.0  # seconds between clean-ups of expired results while the queue is idle

LossPoint = tuple[int, dict[str, float | None]]  # (iteration, {"content": ..., "style": ..., "tv": ..., "total": ...})


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
    params: StyleParams
    preview_every: int
    content: Image.Image | None = None
    styles: list[Image.Image] = field(default_factory=list)
    sync: bool = False  # a POST /v1/stylize job: its caller waits on the connection, so it dies with it
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
    restarts: int = 0  # times the job started over because the server stopped while it ran
    preview_png: bytes | None = None
    preview_iteration: int | None = None
    level: int = 0  # coarse-to-fine level being optimised (1-based), of `levels`
    levels: int = 0
    tile: int = 0  # tiles done in the current iteration of a tiled level, of `tiles` (0 when not tiled)
    tiles: int = 0
    plan: str = ""  # how the current level runs: size, whole image or tiles, optimiser, memory
    result_bytes: int = 0  # size of the stored result PNG once done
    cost: JobCost | None = None  # the engine's plan for the job, once it starts: for progress, time left and speed
    abandon_after: float = 0.0  # seconds without a look at the job after which it is cancelled (0: never)
    last_seen: float = field(default_factory=time.monotonic)  # when a client last asked about the job
    history: list[LossPoint] = field(default_factory=list)  # while queued or running; the store has it after
    cancel_requested: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)


class JobQueue:
    """Bounded FIFO of jobs run one at a time by a single worker thread that owns the engine.

    Every job is also in the durable `JobStore`: at start the queue takes back what the store holds, re-queueing
    jobs that were queued or running (running ones start over) and serving the results of finished ones.
    """

    def __init__(
        self,
        engine: Engine | None = None,
        engine_factory: Callable[[], Engine] | None = None,
        store: JobStore | None = None,
        max_queue: int = 8,
        keep_results: int = 100,
        result_ttl: float = 86400.0,
        result_bytes: int = 2 * 1024**3,
        max_pixels: int = MAX_PIXELS,
    ):
        if (engine is None) == (engine_factory is None):
            raise ValueError("give exactly one of engine or engine_factory")
        self.engine = engine
        self.engine_error: str | None = None
        self.max_queue = max_queue
        self.keep_results = keep_results
        self.result_ttl = result_ttl
        self.result_bytes = result_bytes
        self.store = store if store is not None else JobStore(None)
        self._factory = engine_factory
        self._jobs: OrderedDict[str, Job] = OrderedDict()  # every known job, oldest first
        self._waiting: deque[Job] = deque()
        self._lock = threading.Condition()
        self._stopping = False
        self._ready = threading.Event()
        if engine is not None:
            self._ready.set()
        self.speed = SpeedMeter()  # seconds per unit of work on this device, from finished jobs (estimate.py)
        self._restore(max_pixels)
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
        inputs: list[tuple[str, bytes]] | None = None,
        sync: bool = False,
        abandon_after: float = 0.0,
    ) -> Job:
        """Queue a job. `inputs` are the image files as received ('content', 'style0', ...): the store keeps them
        until the job ends, so a restart can run it again."""
        if self.engine_error is not None:
            raise EngineUnavailable(self.engine_error)
        job = Job(params=params, preview_every=preview_every, content=content, styles=styles, sync=sync,
                  abandon_after=abandon_after)  # fmt: skip
        self.store.save_inputs(job.id, inputs or [])  # outside the lock: uploads can be large
        try:
            with self._lock:
                if self._stopping:  # the worker is gone: a job queued now would never run
                    raise EngineUnavailable("the server is shutting down")
                self._prune()
                if len(self._waiting) >= self.max_queue:
                    raise QueueFull(f"{len(self._waiting)} jobs are already waiting (limit {self.max_queue})")
                self.store.add(job, sync, inputs or [])
                self._jobs[job.id] = job
                self._waiting.append(job)
                self._lock.notify_all()
        except (EngineUnavailable, QueueFull):
            self.store.discard(job.id)
            raise
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            self._prune()
            return self._jobs.get(job_id)

    def touch(self, job: Job) -> None:
        """A client asked about the job: it is not abandoned."""
        job.last_seen = time.monotonic()

    def _abandoned(self, job: Job) -> bool:
        """True once a job that asked for it has gone `abandon_after` seconds without a look (its client died)."""
        if job.abandon_after <= 0 or time.monotonic() - job.last_seen <= job.abandon_after:
            return False
        if not job.cancel_requested.is_set():
            log.info("job %s cancelled: nobody asked about it for %.0f s", job.id, job.abandon_after)
            job.error = {"code": "abandoned", "message": f"cancelled: its client stopped asking about it for "
                         f"{job.abandon_after:g} s"}  # fmt: skip
            job.cancel_requested.set()
        return True

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

    def result_png(self, job: Job) -> bytes | None:
        """The stored result of a done job, byte for byte as first served (None before it is done)."""
        return self.store.result(job.id) if job.state == DONE else None

    def losses(self, job: Job, since: int = 0) -> list[LossPoint]:
        """Loss points (iteration, losses) after iteration `since`: from memory while the job runs, else stored."""
        with self._lock:
            if job.state not in TERMINAL:
                return [point for point in job.history if point[0] > since]
        return self.store.losses(job.id, since)

    def queue_position(self, job: Job) -> int | None:
        """1 for the next job to run; None once the job has left the queue."""
        with self._lock:
            try:
                return self._waiting.index(job) + 1
            except ValueError:
                return None

    def retry_after(self) -> int:
        """Seconds until a queue slot is likely to free: what the running job has left, 1 to MAX_RETRY_AFTER."""
        with self._lock:
            running = [j for j in self._jobs.values() if j.state == RUNNING and j.iteration > 0 and j.total]
            if not running:
                return DEFAULT_RETRY_AFTER
            job = running[0]
            left = job.elapsed / job.iteration * (job.total - job.iteration)
        return int(min(MAX_RETRY_AFTER, max(1, math.ceil(left))))

    def counts(self) -> dict[str, int]:
        with self._lock:
            counts = {state: 0 for state in (QUEUED, RUNNING, DONE, FAILED, CANCELLED)}
            for job in self._jobs.values():
                counts[job.state] += 1
            return counts

    def wait_ready(self, timeout: float | None = None) -> bool:
        return self._ready.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """End the worker (server shutdown). Jobs stay queued in the store and run again at the next start, except
        /v1/stylize jobs: their callers' connections end with the server, so they are cancelled."""
        with self._lock:
            self._stopping = True
            for job in list(self._waiting):
                if job.sync:
                    job.cancel_requested.set()
                    self._waiting.remove(job)
                    self._finish(job, CANCELLED)
            for job in self._jobs.values():
                if job.sync and job.state == RUNNING:
                    job.cancel_requested.set()
            self._lock.notify_all()
        self._worker.join(timeout)
        if self._worker.is_alive():  # an engine that ignores cancellation: leave the store to the process exit
            log.warning("the job worker did not stop within %.0f s", timeout)
            return
        self.store.close()

    # ---- start-up ------------------------------------------------------------------------------------------
    def _restore(self, max_pixels: int) -> None:
        """Take back the store's jobs: finished ones as they are, queued and running ones queued again."""
        for stored in self.store.load():
            params_error = None
            try:
                params = StyleParams.from_dict(stored.params)
            except ParamError as exc:  # written by another version: the job is reported failed below
                params, params_error = StyleParams(), exc
            job = Job(params=params, preview_every=stored.preview_every, sync=stored.sync, id=stored.id,
                      state=stored.state, created=stored.created, started=stored.started, finished=stored.finished,
                      iteration=stored.iteration, total=stored.total, elapsed=stored.elapsed, losses=stored.losses,
                      error=stored.error, seed=stored.seed, restarts=stored.restarts,
                      result_bytes=stored.result_bytes)  # fmt: skip
            self._jobs[job.id] = job
            if job.state in TERMINAL:
                job.ended.set()
                continue
            if job.sync:  # its caller's connection died with the old server: nobody could fetch the result
                self._finish(job, CANCELLED)
                continue
            try:
                if params_error is not None:
                    raise params_error
                content, styles = self.store.inputs(job.id, stored.inputs)
                job.content = decode_image(content, "content", max_pixels) if content is not None else None
                job.styles = [decode_image(data, "style", max_pixels) for data in styles]
            except (ParamError, OSError, ImageError) as exc:
                job.error = {"code": "restart_failed", "message": f"the job could not be restarted: {exc}"}
                self._finish(job, FAILED)
                continue
            self._requeue(job)
            self._waiting.append(job)
        self._prune()

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
                    self._lock.wait(PRUNE_EVERY)
                    self._prune()  # expired results go even when nobody asks
                if self._stopping:
                    return
                job = self._waiting.popleft()
                if self._abandoned(job):
                    self._finish(job, CANCELLED)
                    continue
                job.state = RUNNING
                job.started = time.time()
                self.store.update(job)
            self._execute(job)

    def _execute(self, job: Job) -> None:
        if self.engine is None:
            self._fail(job, "engine_unavailable", self.engine_error or "the style engine is not loaded")
            return
        try:
            job.cost = job_cost(self.engine, job.content.size if job.content is not None else None, job.params)
        except Exception:  # noqa: BLE001 - only progress and estimates need it; the engine reports real problems
            job.cost = None

        def on_progress(p: Progress) -> None:
            preview = encode_png(p.preview) if p.preview is not None else None
            with self._lock:
                job.iteration, job.total, job.elapsed = p.iteration, p.total, p.elapsed
                job.level, job.levels, job.tile, job.tiles, job.plan = p.level, p.levels, p.tile, p.tiles, p.plan
                job.losses = _finite(p.losses)
                # A tiled level reports every tile with the iteration before it: one point per iteration.
                if p.tile == 0 and p.iteration > (job.history[-1][0] if job.history else 0):
                    job.history.append((p.iteration, job.losses))
                if preview is not None:
                    job.preview_png, job.preview_iteration = preview, p.iteration

        try:
            result = self.engine.stylize(
                job.content,
                job.styles,
                job.params,
                progress=on_progress,
                should_cancel=lambda: job.cancel_requested.is_set() or self._stopping or self._abandoned(job),
                preview_every=job.preview_every,
            )
            png = encode_png(result.image, result.params, result.seed)
        except Cancelled:
            with self._lock:
                if self._stopping and not job.cancel_requested.is_set():
                    self._requeue(job)  # the server is stopping: the job runs again from the start at the next start
                else:
                    self._finish(job, CANCELLED)
            return
        except OutOfMemory as exc:  # the engine has freed the device's memory; its message says what to lower
            self._fail(job, "out_of_memory", str(exc))
            return
        except BudgetError as exc:  # no plan fits the memory budget (a ValueError: caught before the next clause)
            self._fail(job, "out_of_memory", f"the job does not fit the server's memory: {exc}")
            return
        except ValueError as exc:  # the engine's input checks (e.g. an image too thin to stylise)
            self._fail(job, "bad_request", str(exc))
            return
        except Exception as exc:
            log.exception("job %s failed", job.id)
            self._fail(job, "engine_error", f"the style engine failed: {type(exc).__name__}: {exc}")
            return
        try:
            size = self.store.write_result(job.id, png)
        except OSError as exc:  # a full or read-only disk
            log.exception("job %s: could not store its result", job.id)
            self._fail(job, "internal", f"the result could not be stored: {exc}")
            return
        with self._lock:
            job.seed, job.result_bytes = result.seed, size
            job.iteration = job.total = result.iterations
            job.losses = _finite(result.losses)
            job.elapsed = result.elapsed
            self._finish(job, DONE)
        if job.cost is not None:
            self.speed.record(job.cost.units, result.elapsed)

    def _fail(self, job: Job, code: str, message: str) -> None:
        with self._lock:
            job.error = {"code": code, "message": message}
            self._finish(job, FAILED)

    def _finish(self, job: Job, state: str) -> None:
        """Caller holds the lock. Inputs are dropped at once: only the result PNG is worth keeping."""
        job.state = state
        job.finished = time.time()
        if state != DONE and job.started is not None:
            job.elapsed = job.finished - job.started  # also when it ended before its first progress report
        job.content, job.styles = None, []
        if state == DONE:
            job.preview_png = None  # the result supersedes it (the preview route then serves the result)
        self.store.finish(job, job.history)
        job.history = []
        job.ended.set()

    def _requeue(self, job: Job) -> None:
        """Caller holds the lock (or is starting up). Back to queued, from the first iteration."""
        if job.started is not None:
            job.restarts += 1
        job.state, job.started, job.finished = QUEUED, None, None
        job.iteration, job.total, job.elapsed, job.losses, job.history = 0, 0, 0.0, {}, []
        job.preview_png = job.preview_iteration = None
        self.store.restart(job)

    def _prune(self) -> None:
        """Caller holds the lock. Forget finished jobs past their time-to-live, beyond the count limit or, oldest
        first, beyond the disk budget for results (the newest result is always kept), and delete their files."""
        now = time.time()
        finished = [j for j in self._jobs.values() if j.state in TERMINAL]
        excess = len(finished) - self.keep_results
        disk = sum(j.result_bytes for j in finished)
        for i, job in enumerate(finished):
            over_budget = disk > self.result_bytes and i < len(finished) - 1
            if i < excess or now - (job.finished or now) > self.result_ttl or over_budget:
                disk -= job.result_bytes
                del self._jobs[job.id]
                self.store.delete(job.id)


def _finite(losses: dict[str, float]) -> dict[str, float | None]:
    """JSON has no NaN or infinity; a diverged loss is reported as null."""
    return {k: (float(v) if math.isfinite(float(v)) else None) for k, v in losses.items()}
