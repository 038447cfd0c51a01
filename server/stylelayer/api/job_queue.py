"""The job queue: a bounded queue of jobs handed to workers (workers.py), each running one job at a time.

By default there is one worker, in this process, that owns the engine (one GPU); `stylelayer serve --workers ray`
gives several Ray actors (ray_workers.py). Each worker has a thread here that runs its jobs. Waiting jobs start in
arrival order, round robin between clients so that one client's many jobs do not starve another's, each on an idle
worker that ran its style last when there is one (its Gram cache holds the style's targets). A job nobody asks
about for its `abandon_after` seconds is cancelled.
Requests only enqueue and read snapshots, so a long optimisation never blocks the HTTP threads.

This module schedules; the jobs themselves and their durable rows are `job_ledger.JobLedger`'s (which writes
through to `job_store.JobStore`), their latest previews `previews.Previews`'s, and a job is the `job.Job` record.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from PIL import Image

from ..core.engine import Cancelled, OutOfMemory, Progress, StyleResult
from ..core.memory import BudgetError
from ..core.params import StyleParams
from ..core.regions import Region
from ..limits import MAX_PIXELS
from .estimate import SpeedMeter, device_type, job_cost
from .job import CANCELLED, DONE, FAILED, QUEUED, RUNNING, STATES, TERMINAL, Job, LossPoint, finite
from .job_ledger import JobLedger
from .job_store import JobStore, StorageError
from .previews import Previews
from .workers import InProcessWorker, JobSpec, ProgressUpdate, Worker, WorkerLost, style_key

log = logging.getLogger("stylelayer.api")

DEFAULT_RETRY_AFTER = 5  # seconds, for a 429 while the running job has not reported progress yet
MAX_RETRY_AFTER = 600
PRUNE_EVERY = 60.0  # seconds between clean-ups of expired results while the queue is idle
SYNC_EVERY = 1.0  # seconds between attempts to write rows the store could not take (a full disk)
WORKER_STARTING, WORKER_IDLE, WORKER_RUNNING, WORKER_FAILED = "starting", "idle", "running", "failed"
MAX_WORKER_LOSSES = 1  # a job whose worker dies runs again once; losing a second one fails it (it may be the cause)
RESTART_DELAY = 5.0  # seconds between attempts to replace a lost worker that could not be started
STYLES_REMEMBERED = 8  # style keys remembered per worker, for style affinity (the engine caches more Gram targets)


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
        regions: Sequence[Region] = (),
    ) -> StyleResult: ...

    def describe(self) -> dict[str, Any]: ...

    def cache_stats(self) -> dict[str, int]: ...


class QueueFull(Exception):
    """More jobs are waiting than the server accepts; the client should retry later (HTTP 429)."""


class EngineUnavailable(Exception):
    """The engine could not be loaded; every job would fail (HTTP 503)."""


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

    Every job is also in the durable `JobStore` (through `JobLedger`): at start the queue takes back what the
    store holds, re-queueing jobs that were queued or running (running ones start over) and serving the results of
    finished ones.
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
        self.previews = Previews()
        self.ledger = JobLedger(
            store if store is not None else JobStore(None), self.previews, keep_results, result_ttl, result_bytes
        )
        self._waiting: deque[Job] = deque()
        self._lock = threading.Condition()
        self._stopping = False
        self._ready = threading.Event()
        self._turn = 0  # jobs started so far...
        self._turns: dict[str, int] = {}  # ...and the number of each active client's latest one
        for slot in self._slots:
            if slot.worker.engine is not None:  # given ready-made: serving at once
                slot.state = WORKER_IDLE
                self._ready.set()
        self.speed = SpeedMeter()  # seconds per unit of work on this device, from finished jobs (estimate.py)
        saved_speed = self.store.load_speed()
        if saved_speed is not None:
            self.speed.restore(saved_speed)
        with self._lock:
            self._waiting.extend(self.ledger.restore(max_pixels))
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
    def store(self) -> JobStore:
        """The durable store the ledger writes through to."""
        return self.ledger.store

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
        regions: list[Region] | None = None,
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
            regions=regions or [],
        )
        try:
            self.ledger.save_inputs(job, inputs or [])  # outside the lock: uploads can be large
            with self._lock:
                if self._stopping:  # the worker is gone: a job queued now would never run
                    raise EngineUnavailable("the server is shutting down")
                self.ledger.prune()
                if len(self._waiting) >= self.max_queue:
                    raise QueueFull(f"{len(self._waiting)} jobs are already waiting (limit {self.max_queue})")
                self.ledger.add(job, inputs or [])
                self._waiting.append(job)
                self._dispatch()
        except (EngineUnavailable, QueueFull, StorageError):
            self.ledger.discard(job)
            raise
        return job

    def storage_problem(self) -> StorageError | None:
        """Why the server cannot store jobs now (None: it can): the data folder cannot be written or is nearly
        full, or rows it could not take are still waiting. Rows waiting are written here once it can."""
        problem = self.store.problem()  # a probe write: outside the lock
        if problem is not None:
            return problem
        with self._lock:
            return self.ledger.owed()

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            self.ledger.prune()
            return self.ledger.jobs.get(job_id)

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
            job = self.ledger.jobs.get(job_id)
            if job is None:
                return None
            job.cancel_requested.set()
            if job.state == QUEUED:
                self._waiting.remove(job)
                self.ledger.end(job, CANCELLED)
            return job

    def result_png(self, job: Job) -> bytes | None:
        """The stored result of a done job, byte for byte as first served (None before it is done)."""
        return self.ledger.result_png(job)

    def preview_png(self, job: Job) -> bytes | None:
        """The result of a done job, else its latest preview (None while there is neither)."""
        return self.result_png(job) if job.state == DONE else self.previews.png(job.id)

    def losses(self, job: Job, since: int = 0) -> list[LossPoint]:
        """Loss points (iteration, losses) after iteration `since`: from memory while the job runs, else stored."""
        with self._lock:
            if job.state not in TERMINAL:
                return self.ledger.losses(job, since)
        return self.ledger.losses(job, since)  # ended: read from the store, outside the lock

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
            running = [j.progress for j in self.ledger.jobs.values() if j.state == RUNNING]
            running = [p for p in running if p.iteration > 0 and p.total]
            if not running:
                return DEFAULT_RETRY_AFTER
            left = min(p.elapsed / p.iteration * (p.total - p.iteration) for p in running)
        return int(min(MAX_RETRY_AFTER, max(1, math.ceil(left))))

    def jobs_snapshot(self) -> list[Job]:
        """Every job the queue holds now (for estimates of the wait ahead); read their fields, change none."""
        with self._lock:
            return list(self.ledger.jobs.values())

    def counts(self) -> dict[str, int]:
        with self._lock:
            counts = {state: 0 for state in STATES}
            for job in self.ledger.jobs.values():
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
            return [{"id": job.id, "state": job.state} for job in self.ledger.jobs.values() if job.owner == owner]

    def stop(self, timeout: float = 10.0) -> None:
        """End the worker (server shutdown). Jobs stay queued in the store and run again at the next start, except
        /v1/stylize jobs: their callers' connections end with the server, so they are cancelled."""
        with self._lock:
            self._stopping = True
            for job in list(self._waiting):
                if job.sync:
                    job.cancel_requested.set()
                    self._waiting.remove(job)
                    self.ledger.end(job, CANCELLED)
            for job in self.ledger.jobs.values():
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
            self.ledger.close()

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
                self.ledger.end(job, CANCELLED)
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
            self.ledger.record(job)
            self._lock.notify_all()

    def _unassign(self, slot: _Slot) -> None:
        """The server stops before the slot's thread began its job: back to queued, as if it never started."""
        job, slot.job = slot.job, None
        assert job is not None
        if job.sync:  # its caller's connection ends with the server
            self.ledger.end(job, CANCELLED)
            return
        job.state, job.started = QUEUED, None
        self.ledger.record(job)
        self._waiting.appendleft(job)

    # ---- worker threads: one per worker --------------------------------------------------------------------
    def _serve(self, slot: _Slot) -> None:
        """A worker's thread: start its engine, then run the jobs `_dispatch` hands it until the server stops."""
        if slot.state != WORKER_IDLE and not self._start_worker(slot, replace=False):
            return
        while True:
            with self._lock:
                while slot.job is None and not self._stopping:
                    self._lock.wait(SYNC_EVERY if self.ledger.behind else PRUNE_EVERY)
                    self.ledger.sync()  # rows a full disk refused, once it takes them
                    self.ledger.prune()  # expired results go even when nobody asks
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
                        self.ledger.end(job, FAILED)
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
                            self.ledger.end(job, FAILED)
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

        def on_progress(update: ProgressUpdate) -> None:
            p = update.progress
            with self._lock:
                job.progress = p
                # A tiled level reports every tile with the iteration before it: one point per iteration.
                if p.tile == 0 and p.iteration > (job.history[-1][0] if job.history else 0):
                    job.history.append((p.iteration, finite(p.losses)))
                if update.preview is not None:
                    self.previews.offer(job.id, update.preview)
                    job.preview_iteration = p.iteration

        spec = JobSpec(job.id, job.content, job.styles, job.params, job.preview_every, job.regions)
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
                    self.ledger.requeue(job)  # the server is stopping: the job runs again from the start next time
                else:
                    self.ledger.end(job, CANCELLED)
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
                self.ledger.end(job, CANCELLED)
            return False
        try:
            size = self.store.write_result(job.id, outcome.png)
        except StorageError as exc:  # a full or read-only disk
            log.error("job %s: its result could not be stored: %s", job.id, exc.message)
            self._fail(job, exc.code, f"the job ran, but its result could not be stored: {exc.message}")
            return False
        # The speed first: a client that sees the job done and asks for an estimate at once gets this job's pace.
        device = device_type(worker.describe().get("device", ""))
        cost = job.cost
        timed = cost is not None and self.speed.record(cost.units, outcome.elapsed, device, cost.precision)
        with self._lock:
            job.seed, job.result_bytes = outcome.seed, size
            job.progress = replace(
                job.progress,
                iteration=outcome.iterations,
                total=outcome.iterations,
                losses=outcome.losses,
                elapsed=outcome.elapsed,
            )
            self.ledger.end(job, DONE)
        if timed:
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
                self.ledger.end(job, CANCELLED)
            elif self._stopping:
                self.ledger.requeue(job)  # runs again at the next start
            elif job.lost_workers > MAX_WORKER_LOSSES:
                job.error = {
                    "code": "worker_lost",
                    "message": f"{exc}; this job has now lost {job.lost_workers}"
                    " workers, so it may be what kills them (too large for a worker's memory?): reduce"
                    " size, or give the workers more memory",
                }
                self.ledger.end(job, FAILED)
            else:
                self.ledger.requeue(job)
                place = next(
                    (i for i, other in enumerate(self._waiting) if other.created > job.created), len(self._waiting)
                )
                self._waiting.insert(place, job)
                self._dispatch()

    def _fail(self, job: Job, code: str, message: str) -> None:
        with self._lock:
            job.error = {"code": code, "message": message}
            self.ledger.end(job, FAILED)


def _id_for(job: Job | None, owner: str) -> str | None:
    """A job's id for /v1/info: only to the client that sent it."""
    return job.id if job is not None and owner and job.owner == owner else None


def _recency(styles: deque[str], key: str) -> int:
    """How recently a worker ran a style: higher is more recent, -1 never (of those it remembers)."""
    try:
        return styles.index(key)
    except ValueError:
        return -1
