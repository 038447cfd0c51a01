"""The jobs the server knows, in memory and in the durable `job_store.JobStore`: the job queue's store adapter.

Every change to a job is written through to the store; finished jobs are kept for a bounded time, count and disk
budget so a plug-in that polls late (even after a restart) still gets its result, without the server growing
forever. At start the ledger takes back what the store holds (`restore`).

A write to the store that fails (a full disk, an I/O error) never stops a worker: the job it was about ends
`failed` with code `storage_full` or `storage_error` when its result could not be stored, and a row that could not
be written is written again as soon as the disk allows (`sync`), so the store ends up saying what clients were
told.

Not thread-safe by itself: the queue calls it holding its lock, except `save_inputs` and `discard` (files only).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace

from ..core.imaging import ImageError, decode_image
from ..core.params import ParamError
from ..core.regions import Region
from .job import CANCELLED, DONE, FAILED, QUEUED, TERMINAL, Job, LossPoint, no_progress
from .job_store import JobStore, StorageError, storage_error
from .previews import Previews
from .workers import style_key

log = logging.getLogger("stylelayer.api")


class JobLedger:
    """Every known job (`jobs`, oldest first), each written through to `store`."""

    def __init__(
        self, store: JobStore, previews: Previews, keep_results: int, result_ttl: float, result_bytes: int
    ) -> None:
        self.store = store
        self.previews = previews
        self.keep_results = keep_results
        self.result_ttl = result_ttl
        self.result_bytes = result_bytes
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        self._unsynced: dict[str, Job] = {}  # jobs whose latest change the store could not take yet...
        self._unsynced_error = StorageError("storage_error", "")  # ...and why, the last time it refused one

    # ---- start-up ------------------------------------------------------------------------------------------
    def restore(self, max_pixels: int) -> list[Job]:
        """Take back the store's jobs: finished ones as they are; queued and running ones queued again (running
        ones start over), returned in arrival order for the queue to run."""
        waiting = []
        for stored in self.store.load():
            job = stored.job
            self.jobs[job.id] = job
            if job.state in TERMINAL:
                job.ended.set()
                continue
            if job.sync:  # its caller's connection died with the old server: nobody could fetch the result
                self.end(job, CANCELLED)
                continue
            try:
                if stored.problem is not None:
                    raise stored.problem
                content, styles = self.store.inputs(job.id, stored.inputs)
                job.content = decode_image(content, "content", max_pixels) if content is not None else None
                job.styles = [decode_image(data, "style", max_pixels) for data in styles]
                job.regions = [
                    Region(
                        decode_image(mask, "mask", max_pixels), tuple(decode_image(d, "style", max_pixels) for d in ss)
                    )
                    for mask, ss in self.store.region_inputs(job.id, stored.inputs)
                ]
            except (ParamError, OSError, ImageError) as exc:
                job.error = {"code": "restart_failed", "message": f"the job could not be restarted: {exc}"}
                self.end(job, FAILED)
                continue
            job.style_key = style_key(job.styles)
            self.requeue(job)
            waiting.append(job)
        self.prune()
        return waiting

    # ---- a job's life --------------------------------------------------------------------------------------
    def save_inputs(self, job: Job, inputs: list[tuple[str, bytes]]) -> None:
        """Write a new job's input files, before `add` (outside the queue's lock: uploads can be large)."""
        self.store.save_inputs(job.id, inputs)

    def discard(self, job: Job) -> None:
        """The files of a job that was refused after `save_inputs`."""
        self.store.discard(job.id)

    def add(self, job: Job, inputs: list[tuple[str, bytes]]) -> None:
        """A new queued job (StorageError when its row cannot be written: the job is refused)."""
        self.store.add(job, inputs)
        self.jobs[job.id] = job

    def record(self, job: Job) -> None:
        """A job started, or went back to waiting before it began."""
        self._write(job, self.store.update)

    def requeue(self, job: Job) -> None:
        """Back to queued, to run again from the first iteration."""
        if job.started is not None:
            job.restarts += 1
        job.state, job.started, job.finished = QUEUED, None, None
        job.progress, job.history, job.preview_iteration = no_progress(), [], None
        self.previews.drop(job.id)
        self._write(job, self.store.restart)

    def end(self, job: Job, state: str) -> None:
        """A job ended. Inputs are dropped at once: only the result PNG is worth keeping."""
        job.state = state
        job.finished = time.time()
        if state != DONE and job.started is not None:  # also when it ended before its first progress report
            job.progress = replace(job.progress, elapsed=job.finished - job.started)
        job.content, job.styles, job.regions = None, [], []
        if state == DONE:
            self.previews.drop(job.id)  # the result supersedes it (the preview route then serves the result)
        try:
            self.store.finish(job, job.history)
        except Exception as error:  # a full disk, or anything else: the job still ends, and the worker goes on
            exc = storage_error(error)
            log.error("job %s: its end could not be recorded: %s", job.id, exc.message, exc_info=error)
            if state == DONE:  # no row says done, so the result cannot be served after a restart: failed
                job.state, job.error, job.result_bytes = FAILED, {"code": exc.code, "message": exc.message}, 0
            self._write(job, self._write_end)  # a failed job's row is smaller; else retried by sync
        else:
            job.history = []
            self._unsynced.pop(job.id, None)  # an earlier change it could not take is superseded
        job.ended.set()

    def prune(self) -> None:
        """Forget finished jobs past their time-to-live, beyond the count limit or, oldest first, beyond the disk
        budget for results (the newest result is always kept), and delete their files."""
        now = time.time()
        finished = [j for j in self.jobs.values() if j.state in TERMINAL]
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
                self.previews.drop(job.id)
                del self.jobs[job.id]

    # ---- reading -------------------------------------------------------------------------------------------
    def result_png(self, job: Job) -> bytes | None:
        """The stored result of a done job, byte for byte as first served (None before it is done)."""
        return self.store.result(job.id) if job.state == DONE else None

    def losses(self, job: Job, since: int) -> list[LossPoint]:
        """Loss points after iteration `since`: from memory while the job runs, else stored."""
        if job.state not in TERMINAL:
            return [point for point in job.history if point[0] > since]
        return self.store.losses(job.id, since)

    def owed(self) -> StorageError | None:
        """Why some job changes are not in the store yet, after one more try to write them (None: none are)."""
        self.sync()
        if self._unsynced:
            return StorageError(
                self._unsynced_error.code,
                f"{len(self._unsynced)} job changes could not be written to the data folder yet"
                f" ({self._unsynced_error.message})",
            )
        return None

    @property
    def behind(self) -> bool:
        """Some job changes are not in the store yet (`sync` writes them once it takes them)."""
        return bool(self._unsynced)

    # ---- store writes that may fail ------------------------------------------------------------------------
    def _write(self, job: Job, write: Callable[[Job], None]) -> None:
        """Write a job's change to the store; when the store cannot take it, the job is written whole again by
        `sync` later (its state in memory is what clients see, and what the store must end up saying)."""
        try:
            try:
                write(job)
            except StorageError as exc:
                if exc.code != "storage_full" or not self.store.release_reserve():
                    raise
                write(job)  # in the space the store kept for this
        except Exception as error:  # noqa: BLE001 - as in end: never out of the bookkeeping
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

    def sync(self) -> None:
        """Write the jobs the store could not take before, as they are now; stops at the first failure."""
        for job in list(self._unsynced.values()):
            try:
                if job.id not in self.jobs:
                    pass  # forgotten meanwhile: prune deleted its row before it let go of the job
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

    def close(self) -> None:
        """The server stops: write what is still waiting, then close the store."""
        self.sync()
        if self._unsynced:
            log.error(
                "%d job changes could not be written to the data folder: after the next start those jobs may run again",
                len(self._unsynced),
            )
        self.store.close()
