"""The job queue: a bounded queue of jobs handed to workers (workers.py), each running one job at a time.

By default there is one worker, in this process, that owns the engine (one GPU); `stylelayer serve --workers ray`
gives several Ray actors (ray_workers.py). Each worker has a thread here that runs its jobs. Waiting jobs start in
arrival order, round robin between clients so that one client's many jobs do not starve another's, each on an idle
worker that ran its style last when there is one (its Gram cache holds the style's targets).
Requests only enqueue and read snapshots, so a long optimisation never blocks the HTTP threads. Every job is
written through to the durable `job_store.JobStore`; finished jobs are kept for a bounded time, count and disk
budget so a plug-in that polls late (even after a restart) still gets its result, without the server growing
forever.

A write to the store that fails (a full disk, an I/O error) never stops a worker: the job it was about ends
`failed` with code `storage_full` or `storage_error` when its result could not be stored, and a row that could not
be written is written again as soon as the disk allows (`_sync`), so the store ends up saying what clients were
told.
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

from ..core.engine import Cancelled, OutOfMemory, Progress, StyleResult
from ..core.imaging import ImageError, decode_image
from ..core.memory import BudgetError
from ..core.params import ParamError, StyleParams
from ..limits import MAX_PIXELS
from .estimate import JobCost, SpeedMeter, device_type, job_cost
from .job_store import JobStore, StorageError, storage_error
from .workers import InProcessWorker, JobSpec, Preview, ProgressUpdate, Worker, WorkerLost, style_key

log = logging.getLogger("stylelayer.api")

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
TERMINAL = frozenset({DONE, FAILED, CANCELLED})
DEFAULT_RETRY_AFTER = 5  # seconds, for a 429 while the running job has not reported progress yet
MAX_RETRY_AFTER = 600
PRUNE_EVERY = 60.0  # seconds between clean-ups of expired results while the queue is idle
SYNC_EVERY = 1.0  # seconds between attempts to write rows the store could not take (a full disk)
WORKER_STARTING, WORKER_IDLE, WORKER_RUNNING, WORKER_FAILED = "starting", "idle", "running", "failed"
MAX_WORKER_LOSSES = 1  # a job whose worker dies runs again once; losing a second one fails it (it may be the cause)
RESTART_DELAY = 5.0  # seconds between attempts to replace a lost worker that could not be started
STYLES_REMEMBERED = 8  # style keys remembered per worker, for style affinity (the engine caches more Gram targets)

LossPoint = tuple[int, dict[str, float | None]]  # (iteration, {"content": ..., "style": ..., "tv": ..., "total": ...})


class Engine(Protocol):
    """What the queue needs from `stylelayer.core.engine.StyleEngine` (tests pass a fast fake)."""

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
    preview: Preview | None = None
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
    client: str = ""  # who sent it (remote address; '' for jobs restored at start): the unit of fairness
    owner: str = ""  # digest of the key its client gave (job_routes.owner_of): who may see it listed in /v1/info
    style_key: str = ""  # digest of its style images (workers.style_key): the unit of style affinity
    lost_workers: int = 0  # workers that died while running it
    history: list[LossPoint] = field(default_factory=list)  # while queued or running; the store has it after
    cancel_requested: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)


@dataclass(eq=False)
class _Slot:
    """A worker as the queue schedules it."""

    worker: Worker
    state: str = WORKER_STARTING
    job: Job | None = None  # handed over by `_dispatch`, until it ends
    styles: deque[str] = field(default_factory=lambda: deque(maxlen=STYLES_REMEMBERED))  # most recent last
    idle_since: float = field(default_factory=time.monotonic)
    jobs_done: int = 0
    error: str | None = None


class JobQueue:
    """Bounded queue of jobs run by workers, one job at a time each (by default one worker owning the engine).

    Every job is also in the durable `JobStore`: at start the queue takes back what the store holds, re-queueing
    jobs that were queued or running (running ones start over) and serving the results of finished ones.
    """

    def __init__(
        self,
        engine: Engine | None = None,
        engine_factory: Callable[[], Engine] | None = None,
        workers: list[Worker] | None = None,
        store: JobStore | None = None,
        max_queue: int = 8,
        keep_results: int = 100,
        result_ttl: float = 86400.0,
        result_bytes: int = 2 * 1024**3,
        max_pixels: int = MAX_PIXELS,
    ):
        if sum(given is not None for given in (engine, engine_factory, workers)) != 1:
            raise ValueError("give exactly one of engine, engine_factory or workers")
        if workers is None:
            workers = [InProcessWorker(engine, engine_factory)]
        self._slots = [_Slot(worker) for worker in workers]
        self.engine_error: str | None = None
        self.max_queue = max_queue
        self.keep_results = keep_results
        self.result_ttl = result_ttl
        self.result_bytes = result_bytes
        self.store = store if store is not None else JobStore(None)
        self._jobs: OrderedDict[str, Job] = OrderedDict()  # every known job, oldest first
        self._waiting: deque[Job] = deque()
        self._lock = threading.Condition()
        self._stopping = False
        self._ready = threading.Event()
        self._turn = 0  # jobs started so far...
        self._turns: dict[str, int] = {}  # ...and the number of each active client's latest one
        self._unsynced: dict[str, Job] = {}  # jobs whose latest change the store could not take yet...
        self._unsynced_error = StorageError("storage_error", "")  # ...and why, the last time it refused one
        for slot in self._slots:
            if slot.worker.engine is not None:  # given ready-made: serving at once
                slot.state = WORKER_IDLE
                self._ready.set()
        self.speed = SpeedMeter()  # seconds per unit of work on this device, from finished jobs (estimate.py)
        saved_speed = self.store.load_speed()
        if saved_speed is not None:
            self.speed.restore(saved_speed)
        self._restore(max_pixels)
        with self._lock:
            self._dispatch()
        self._threads = [
            threading.Thread(
                target=self._serve, args=(slot,), name=f"stylelayer-worker-{slot.worker.name}", daemon=True
            )
            for slot in self._slots
        ]
        for thread in self._threads:
            thread.start()

    # ---- called from request threads -----------------------------------------------------------------------
    @property
    def engine(self) -> Engine | None:
        """An engine to describe and plan jobs with: the first started worker's (None while none is)."""
        for slot in self._slots:
            if slot.worker.engine is not None:
                return slot.worker.engine
        return None

    @property
    def engine_state(self) -> str:
        """'ready', 'loading' or 'failed' (the model loads in the worker so the server answers at once)."""
        if self.engine_error is not None:
            return "failed"
        return "ready" if self._ready.is_set() and self.engine is not None else "loading"

    def submit(
        self,
        content: Image.Image | None,
        styles: list[Image.Image],
        params: StyleParams,
        preview_every: int = 0,
        inputs: list[tuple[str, bytes]] | None = None,
        sync: bool = False,
        abandon_after: float = 0.0,
        client: str = "",
        owner: str = "",
    ) -> Job:
        """Queue a job. `inputs` are the image files as received ('content', 'style0', ...): the store keeps them
        until the job ends, so a restart can run it again. `client`: who sends it, for fairness between clients;
        `owner`: who may see it in /v1/info. StorageError while the data folder cannot take a job."""
        if self.engine_error is not None:
            raise EngineUnavailable(self.engine_error)
        problem = self.storage_problem()
        if problem is not None:  # a new exception each time: the store's is shared between threads
            raise StorageError(problem.code, problem.message)
        job = Job(
            params=params,
            preview_every=preview_every,
            content=content,
            styles=styles,
            sync=sync,
            abandon_after=abandon_after,
            client=client,
            owner=owner,
            style_key=style_key(styles),
        )
        try:
            self.store.save_inputs(job.id, inputs or [])  # outside the lock: uploads can be large
            with self._lock:
                if self._stopping:  # the worker is gone: a job queued now would never run
                    raise EngineUnavailable("the server is shutting down")
                self._prune()
                if len(self._waiting) >= self.max_queue:
                    raise QueueFull(f"{len(self._waiting)} jobs are already waiting (limit {self.max_queue})")
                self.store.add(job, sync, inputs or [])
                self._jobs[job.id] = job
                self._waiting.append(job)
                self._dispatch()
        except (EngineUnavailable, QueueFull, StorageError):
            self.store.discard(job.id)
            raise
        return job

    def storage_problem(self) -> StorageError | None:
        """Why the server cannot store jobs now (None: it can): the data folder cannot be written or is nearly
        full, or rows it could not take are still waiting. Rows waiting are written here once it can."""
        problem = self.store.problem()
        if problem is not None:
            return problem
        with self._lock:
            self._sync()
            if self._unsynced:
                return StorageError(
                    self._unsynced_error.code,
                    f"{len(self._unsynced)} job changes could not be written to the data folder yet"
                    f" ({self._unsynced_error.message})",
                )
        return None

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
            job.error = {
                "code": "abandoned",
                "message": f"cancelled: its client stopped asking about it for {job.abandon_after:g} s",
            }
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
                return self._order().index(job) + 1
            except ValueError:
                return None

    def retry_after(self) -> int:
        """Seconds until a queue slot is likely to free: what the running job has left, 1 to MAX_RETRY_AFTER."""
        with self._lock:
            running = [j for j in self._jobs.values() if j.state == RUNNING and j.iteration > 0 and j.total]
            if not running:
                return DEFAULT_RETRY_AFTER
            left = min(job.elapsed / job.iteration * (job.total - job.iteration) for job in running)
        return int(min(MAX_RETRY_AFTER, max(1, math.ceil(left))))

    def jobs_snapshot(self) -> list[Job]:
        """Every job the queue holds now (for estimates of the wait ahead); read their fields, change none."""
        with self._lock:
            return list(self._jobs.values())

    def counts(self) -> dict[str, int]:
        with self._lock:
            counts = {state: 0 for state in (QUEUED, RUNNING, DONE, FAILED, CANCELLED)}
            for job in self._jobs.values():
                counts[job.state] += 1
            return counts

    def wait_ready(self, timeout: float | None = None) -> bool:
        return self._ready.wait(timeout)

    def cache_stats(self) -> dict[str, int] | None:
        """The Gram caches of all started workers, added up (None while none has started)."""
        stats = [slot.worker.cache_stats() for slot in self._slots if slot.worker.engine is not None]
        if not stats:
            return None
        total: dict[str, int] = {}
        for figures in stats:
            for name, value in figures.items():
                total[name] = total.get(name, 0) + value
        return total

    def workers_info(self, owner: str = "") -> list[dict[str, Any]]:
        """For /v1/info: each worker, where it runs, its state and the job it runs: its id only to the job's owner
        (a job id is the capability to read and cancel the job)."""
        with self._lock:
            slots = [(slot, slot.state, _id_for(slot.job, owner), slot.jobs_done, slot.error) for slot in self._slots]
        return [
            {
                **slot.worker.describe(),
                "state": state,
                "job": job_id,
                "jobs_done": done,
                "error": error,
                "cache": slot.worker.cache_stats(),
            }
            for slot, state, job_id, done, error in slots
        ]

    def jobs_of(self, owner: str) -> list[dict[str, Any]]:
        """For /v1/info: the id and state of every job `owner` sent, oldest first (none without an owner)."""
        if not owner:
            return []
        with self._lock:
            return [{"id": job.id, "state": job.state} for job in self._jobs.values() if job.owner == owner]

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
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if any(thread.is_alive() for thread in self._threads):  # an engine that ignores cancellation: leave the
            log.warning("the job workers did not stop within %.0f s", timeout)  # store to the process exit
            return
        with self._lock:
            self._sync()
            if self._unsynced:
                log.error(
                    "%d job changes could not be written to the data folder: after the next start those jobs"
                    " may run again",
                    len(self._unsynced),
                )
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
            job = Job(
                params=params,
                preview_every=stored.preview_every,
                sync=stored.sync,
                id=stored.id,
                state=stored.state,
                created=stored.created,
                started=stored.started,
                finished=stored.finished,
                iteration=stored.iteration,
                total=stored.total,
                elapsed=stored.elapsed,
                losses=stored.losses,
                error=stored.error,
                seed=stored.seed,
                restarts=stored.restarts,
                result_bytes=stored.result_bytes,
                level=stored.level,
                levels=stored.levels,
                plan=stored.plan,
                preview_iteration=stored.preview_iteration,
                abandon_after=stored.abandon_after,  # counted from now: a client gone with the old server is
                owner=stored.owner,  # not polling, and the job is cancelled once that much time has passed
            )
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
            job.style_key = style_key(job.styles)
            self._requeue(job)
            self._waiting.append(job)
        self._prune()

    # ---- scheduling (callers hold the lock) --------------------------------------------------------------------
    def _order(self) -> list[Job]:
        """The waiting jobs in the order they will start: round robin between clients, the client whose latest
        job started longest ago first (a client with none before all), each client's jobs in arrival order."""
        pending: dict[str, deque[Job]] = {}
        for job in self._waiting:
            pending.setdefault(job.client, deque()).append(job)
        turns, turn, order = dict(self._turns), self._turn, []
        while pending:
            client = min(pending, key=lambda c: (turns.get(c, -1), pending[c][0].created))
            order.append(pending[client].popleft())
            turn += 1
            turns[client] = turn
            if not pending[client]:
                del pending[client]
        return order

    def _dispatch(self) -> None:
        """Hand waiting jobs to idle workers: the next in `_order` to the idle worker that ran its style most
        recently, else to the one idle longest."""
        active = {job.client for job in self._waiting} | {slot.job.client for slot in self._slots if slot.job}
        self._turns = {c: n for c, n in self._turns.items() if c in active}  # a client who comes back starts afresh
        while self._waiting and not self._stopping:
            idle = [slot for slot in self._slots if slot.state == WORKER_IDLE and slot.job is None]
            if not idle:
                return
            job = self._order()[0]
            self._waiting.remove(job)
            if self._abandoned(job):
                self._finish(job, CANCELLED)
                continue
            slot = max(idle, key=lambda s: (_recency(s.styles, job.style_key), -s.idle_since))
            self._turn += 1
            self._turns[job.client] = self._turn
            if job.style_key in slot.styles:
                slot.styles.remove(job.style_key)
            slot.styles.append(job.style_key)
            slot.job, slot.state = job, WORKER_RUNNING
            job.state = RUNNING
            job.started = time.time()
            self._store(job, self.store.update)
            self._lock.notify_all()

    def _unassign(self, slot: _Slot) -> None:
        """The server stops before the slot's thread began its job: back to queued, as if it never started."""
        job, slot.job = slot.job, None
        assert job is not None
        if job.sync:  # its caller's connection ends with the server
            self._finish(job, CANCELLED)
            return
        job.state, job.started = QUEUED, None
        self._store(job, self.store.update)
        self._waiting.appendleft(job)

    # ---- worker threads: one per worker --------------------------------------------------------------------
    def _serve(self, slot: _Slot) -> None:
        """A worker's thread: start its engine, then run the jobs `_dispatch` hands it until the server stops."""
        if slot.state != WORKER_IDLE and not self._start_worker(slot, replace=False):
            return
        while True:
            with self._lock:
                while slot.job is None and not self._stopping:
                    self._lock.wait(SYNC_EVERY if self._unsynced else PRUNE_EVERY)
                    self._sync()  # rows a full disk refused, once it takes them
                    self._prune()  # expired results go even when nobody asks
                if self._stopping:
                    if slot.job is not None:
                        self._unassign(slot)
                    return
                job = slot.job
            assert job is not None  # the wait above ends with a job or with stopping
            try:
                lost = self._execute(job, slot)
            except Exception as exc:  # a bug in the bookkeeping: that job fails, the worker goes on
                log.exception("job %s: the server failed while running it", job.id)
                lost = False
                with self._lock:
                    if job.state not in TERMINAL:
                        job.error = {"code": "internal", "message": f"the server failed: {type(exc).__name__}"}
                        self._finish(job, FAILED)
            with self._lock:
                slot.job, slot.jobs_done, slot.idle_since = None, slot.jobs_done + 1, time.monotonic()
                slot.state = WORKER_STARTING if lost else WORKER_IDLE
                if not lost:
                    self._dispatch()
            if lost and not self._start_worker(slot, replace=True):
                return

    def _start_worker(self, slot: _Slot, replace: bool) -> bool:
        """Load a worker's engine, or replace a worker that died; False when it cannot serve (its engine failed to
        load, or the server stops). A worker whose process died while starting is replaced until it starts."""
        while True:
            try:
                if replace:
                    slot.worker.replace(lambda: self._stopping)
                else:
                    slot.worker.start(lambda: self._stopping)
                break
            except WorkerLost as exc:
                with self._lock:
                    if self._stopping:
                        return False
                    log.warning("%s could not start: %s; trying again in %.0f s", slot.worker.name, exc, RESTART_DELAY)
                    slot.error = str(exc)
                    self._lock.wait(RESTART_DELAY)  # woken early by stop()
                replace = True
            except Exception as exc:  # reported by /v1/health and on every submission once no worker is left
                log.exception("could not load the style engine (%s)", slot.worker.name)
                with self._lock:
                    slot.state, slot.error = WORKER_FAILED, f"the style engine failed to load: {exc}"
                    if all(other.state == WORKER_FAILED for other in self._slots):
                        self.engine_error = slot.error
                        self._ready.set()
                        for job in list(self._waiting):
                            self._waiting.remove(job)
                            job.error = {"code": "engine_unavailable", "message": self.engine_error}
                            self._finish(job, FAILED)
                return False
        with self._lock:
            slot.state, slot.error, slot.idle_since = WORKER_IDLE, None, time.monotonic()
            self._ready.set()
            self._dispatch()
        return True

    def _execute(self, job: Job, slot: _Slot) -> bool:
        """Run a job on a slot's worker; True when the worker died under it (the caller replaces the worker)."""
        worker = slot.worker
        try:
            job.cost = job_cost(worker.engine, job.content.size if job.content is not None else None, job.params)
        except Exception:  # noqa: BLE001 - only progress and estimates need it; the engine reports real problems
            job.cost = None

        def on_progress(p: ProgressUpdate) -> None:
            with self._lock:
                job.iteration, job.total, job.elapsed = p.iteration, p.total, p.elapsed
                job.level, job.levels, job.tile, job.tiles, job.plan = p.level, p.levels, p.tile, p.tiles, p.plan
                job.losses = _finite(p.losses)
                # A tiled level reports every tile with the iteration before it: one point per iteration.
                if p.tile == 0 and p.iteration > (job.history[-1][0] if job.history else 0):
                    job.history.append((p.iteration, job.losses))
                if p.preview is not None:
                    job.preview, job.preview_iteration = p.preview, p.iteration

        spec = JobSpec(job.id, job.content, job.styles, job.params, job.preview_every)
        try:
            outcome = worker.run(
                spec,
                on_progress,
                should_cancel=lambda: job.cancel_requested.is_set() or self._stopping or self._abandoned(job),
            )
        except WorkerLost as exc:
            self._worker_lost(job, exc)
            return True
        except Cancelled:
            with self._lock:
                if self._stopping and not job.cancel_requested.is_set():
                    self._requeue(job)  # the server is stopping: the job runs again from the start at the next start
                else:
                    self._finish(job, CANCELLED)
            return False
        except OutOfMemory as exc:  # the engine has freed the device's memory; its message says what to lower
            self._fail(job, "out_of_memory", str(exc))
            return False
        except BudgetError as exc:  # no plan fits the memory budget (a ValueError: caught before the next clause)
            self._fail(job, "out_of_memory", f"the job does not fit the server's memory: {exc}")
            return False
        except ValueError as exc:  # the engine's input checks (e.g. an image too thin to stylise)
            self._fail(job, "bad_request", str(exc))
            return False
        except Exception as exc:
            log.exception("job %s failed", job.id)
            self._fail(job, "engine_error", f"the style engine failed: {type(exc).__name__}: {exc}")
            return False
        if job.cancel_requested.is_set():  # asked for before its end was recorded: the client's word, not a race,
            with self._lock:  # decides (a Ray actor can finish its last iterations before it sees the request)
                self._finish(job, CANCELLED)
            return False
        try:
            size = self.store.write_result(job.id, outcome.png)
        except StorageError as exc:  # a full or read-only disk
            log.error("job %s: its result could not be stored: %s", job.id, exc.message)
            self._fail(job, exc.code, f"the job ran, but its result could not be stored: {exc.message}")
            return False
        with self._lock:
            job.seed, job.result_bytes = outcome.seed, size
            job.iteration = job.total = outcome.iterations
            job.losses = _finite(outcome.losses)
            job.elapsed = outcome.elapsed
            self._finish(job, DONE)
        device = device_type(worker.describe().get("device", ""))
        if job.cost is not None and self.speed.record(job.cost.units, outcome.elapsed, device):
            try:
                self.store.save_speed(self.speed.state())
            except StorageError as exc:  # only estimates after a restart need it
                log.warning("the measured speed could not be saved: %s", exc.message)
        return False

    def _worker_lost(self, job: Job, exc: WorkerLost) -> None:
        """A job's worker died under it: the job is queued again in its arrival place, to run from its first
        iteration on another worker, once; a job that loses a second worker fails (it may be what kills them)."""
        log.warning("job %s: %s", job.id, exc)
        with self._lock:
            job.lost_workers += 1
            if job.cancel_requested.is_set():
                self._finish(job, CANCELLED)
            elif self._stopping:
                self._requeue(job)  # runs again at the next start
            elif job.lost_workers > MAX_WORKER_LOSSES:
                job.error = {
                    "code": "worker_lost",
                    "message": f"{exc}; this job has now lost {job.lost_workers}"
                    " workers, so it may be what kills them (too large for a worker's memory?): reduce"
                    " size, or give the workers more memory",
                }
                self._finish(job, FAILED)
            else:
                self._requeue(job)
                place = next(
                    (i for i, other in enumerate(self._waiting) if other.created > job.created), len(self._waiting)
                )
                self._waiting.insert(place, job)
                self._dispatch()

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
            job.preview = None  # the result supersedes it (the preview route then serves the result)
        try:
            self.store.finish(job, job.history)
        except Exception as error:  # a full disk, or anything else: the job still ends, and the worker goes on
            exc = storage_error(error)
            log.error("job %s: its end could not be recorded: %s", job.id, exc.message, exc_info=error)
            if state == DONE:  # no row says done, so the result cannot be served after a restart: failed
                job.state, job.error, job.result_bytes = FAILED, {"code": exc.code, "message": exc.message}, 0
            self._store(job, self._write_end)  # a failed job's row is smaller; else retried by _sync
        else:
            job.history = []
            self._unsynced.pop(job.id, None)  # an earlier change it could not take is superseded
        job.ended.set()

    def _requeue(self, job: Job) -> None:
        """Caller holds the lock (or is starting up). Back to queued, from the first iteration."""
        if job.started is not None:
            job.restarts += 1
        job.state, job.started, job.finished = QUEUED, None, None
        job.iteration, job.total, job.elapsed, job.losses, job.history = 0, 0, 0.0, {}, []
        job.level = job.levels = job.tile = job.tiles = 0
        job.plan = ""
        job.preview = job.preview_iteration = None
        self._store(job, self.store.restart)

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
                try:
                    self.store.delete(job.id)
                except StorageError as exc:  # kept (and listed) until the store can forget it too
                    log.warning("job %s could not be deleted yet: %s", job.id, exc.message)
                    return
                disk -= job.result_bytes
                del self._jobs[job.id]

    # ---- store writes that may fail (callers hold the lock) --------------------------------------------------
    def _store(self, job: Job, write: Callable[[Job], None]) -> None:
        """Write a job's change to the store; when the store cannot take it, the job is written whole again by
        `_sync` later (its state in memory is what clients see, and what the store must end up saying)."""
        try:
            try:
                write(job)
            except StorageError as exc:
                if exc.code != "storage_full" or not self.store.release_reserve():
                    raise
                write(job)  # in the space the store kept for this
        except Exception as error:  # noqa: BLE001 - as in _finish: never out of the bookkeeping
            exc = storage_error(error)
            log.error("job %s: its state (%s) could not be recorded: %s", job.id, job.state, exc.message)
            self._unsynced[job.id] = job
            self._unsynced_error = exc
        else:
            self._unsynced.pop(job.id, None)

    def _write_end(self, job: Job) -> None:
        """An ended job's row and loss history, then its input files go."""
        self.store.finish(job, job.history)
        job.history = []

    def _sync(self) -> None:
        """Write the jobs the store could not take before, as they are now; stops at the first failure."""
        for job in list(self._unsynced.values()):
            try:
                if job.id not in self._jobs:
                    pass  # forgotten meanwhile: _prune deleted its row before it let go of the job
                elif job.state in TERMINAL:
                    self._write_end(job)
                elif job.state == QUEUED:
                    self.store.restart(job)
                else:
                    self.store.update(job)
            except Exception as error:  # noqa: BLE001 - tried again at the next chance
                self._unsynced_error = storage_error(error)
                return
            log.info("job %s: its state (%s) is recorded now", job.id, job.state)
            del self._unsynced[job.id]


def _id_for(job: Job | None, owner: str) -> str | None:
    """A job's id for /v1/info: only to the client that sent it."""
    return job.id if job is not None and owner and job.owner == owner else None


def _recency(styles: deque[str], key: str) -> int:
    """How recently a worker ran a style: higher is more recent, -1 never (of those it remembers)."""
    try:
        return styles.index(key)
    except ValueError:
        return -1


def _finite(losses: dict[str, float]) -> dict[str, float | None]:
    """JSON has no NaN or infinity; a diverged loss is reported as null."""
    return {k: (float(v) if math.isfinite(float(v)) else None) for k, v in losses.items()}
