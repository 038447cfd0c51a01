"""The durable job store: jobs, their losses and their result files survive a restart or a crash of the server.

One folder (`stylelayer serve --data-dir`, by default the per-user data folder) holds

    jobs.sqlite3             one row per job (parameters, state, progress, error, seed) and one per loss point;
                             SQLite in WAL mode, every change one committed transaction: a killed or crashed
                             server loses nothing committed (synchronous=NORMAL: a power cut may lose the last
                             moments, never the database)
    files/<id>.content       the uploaded images of a job (bytes as received) until the job ends
    files/<id>.style<N>
    files/<id>.result.png    the result, byte for byte what the client downloads
    speed.json               the server's measured speed (estimate.SpeedMeter), so estimates survive a restart
    reserve                  1 MiB held back: given up when the disk is full, so how jobs ended can still be written
    quarantine/              files no row accounts for, set aside at start (never deleted by the server)
    lock                     held while a server uses the folder, so two servers never run the same jobs

File names are built from a validated job id only (32 hex digits made by the server), never from a request.
Files are written whole (temporary name, fsync, rename) before the row that points to them is committed, and
outside the queue's lock (they can be large); the rows are small and written under it, so they are in order.

The store never deletes what it cannot account for: a database that is missing, empty or of another program while
result files exist is refused (`StoreError`, one line naming `--reset-jobs`), and so is a damaged one; files
without a row go to `quarantine/`. Every write that fails raises `StorageError`, whose `code` (`storage_full`,
`storage_error`) the queue reports as the job's error.

A job's row holds the `job.Job` record's own fields in columns and the engine's latest progress whole in one JSON
column (`job.progress_fields`), so a field added to the engine's `Progress` is stored with no change here.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..core.params import ParamError, StyleParams
from .job import DONE, Job, progress_fields, progress_of

log = logging.getLogger("stylelayer.api")

JOB_ID = re.compile(r"[0-9a-f]{32}")
SCHEMA_VERSION = 3
DATABASE = "jobs.sqlite3"
QUARANTINE = "quarantine"
PROBE = ".probe"  # written and removed again to learn whether a folder can be written
RESERVE = "reserve"  # space kept back, given up on a full disk so that jobs' ends can still be recorded
RESERVE_BYTES = 1024**2  # a few hundred row changes in the SQLite write-ahead log
MIN_FREE_BYTES = 64 * 1024**2  # less free space in the data folder than this: /v1/health says degraded
HEALTH_EVERY = 1.0  # seconds a storage check is reused (health is polled; each check writes a probe file)
_JOBS_TABLE = """
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    sync INTEGER NOT NULL,
    params TEXT NOT NULL,
    preview_every INTEGER NOT NULL,
    inputs TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    progress TEXT NOT NULL DEFAULT '{}',
    error TEXT,
    seed INTEGER,
    restarts INTEGER NOT NULL DEFAULT 0,
    result_bytes INTEGER NOT NULL DEFAULT 0,
    preview_iteration INTEGER,
    abandon_after REAL NOT NULL DEFAULT 0,
    owner TEXT NOT NULL DEFAULT ''
)"""
_TABLES = f"""{_JOBS_TABLE};
CREATE TABLE losses (
    job_id TEXT NOT NULL,
    iteration INTEGER NOT NULL,
    losses TEXT NOT NULL,
    PRIMARY KEY (job_id, iteration)
) WITHOUT ROWID;
"""
# Version 2 added level, levels, plan, preview_iteration, abandon_after and owner to version 1's jobs table.
_VERSION_2 = (
    "ALTER TABLE jobs ADD COLUMN level INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE jobs ADD COLUMN levels INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE jobs ADD COLUMN plan TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE jobs ADD COLUMN preview_iteration INTEGER",
    "ALTER TABLE jobs ADD COLUMN abandon_after REAL NOT NULL DEFAULT 0",
    "ALTER TABLE jobs ADD COLUMN owner TEXT NOT NULL DEFAULT ''",
)
# Version 3: the progress fields of version 2's columns, named as the engine's Progress names them, in one column.
_VERSION_2_PROGRESS = "iteration, total, elapsed, losses, level, levels, plan"
_KEPT = (
    "id, state, sync, params, preview_every, inputs, created, started, finished, error, seed, restarts,"
    " result_bytes, preview_iteration, abandon_after, owner"
)
_COLUMNS = f"{_KEPT}, progress"
_SQLITE_FULL = 13  # SQLITE_FULL: "database or disk is full"


class StoreError(RuntimeError):
    """The data folder cannot be used as it is; the message is one line for the person starting the server."""


class StoreBusy(StoreError):
    """Another server process holds this data folder."""


class StorageError(Exception):
    """A write to the data folder failed. `code`: 'storage_full' (no space left) or 'storage_error'."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class StoredJob:
    """A job as read back at start-up, with what the store knows beside it."""

    job: Job
    # {"content": bool, "styles": int, "regions": [styles of each region]}: the input files a job that has not ended has
    inputs: dict[str, Any]
    problem: ParamError | None = (
        None  # why it cannot run again: parameters another version wrote (job.params: defaults)
    )


class JobStore:
    """SQLite rows plus files in one folder; thread-safe (one connection behind a lock).

    Opening checks the folder before anything else of the server starts (StoreError, StoreBusy): it can be
    written, the database is ours and undamaged, and it accounts for the result files beside it. `reset` first
    sets the database and every file aside in quarantine/ (`stylelayer serve --reset-jobs`)."""

    def __init__(self, directory: str | os.PathLike[str] | None, reset: bool = False, min_free: int = MIN_FREE_BYTES):
        """`directory` None: a fresh temporary folder, deleted again by `close` (tests). `min_free`: bytes the
        folder's disk must have free, else `problem` reports it nearly full."""
        self.temporary = directory is None
        self.directory = Path(tempfile.mkdtemp(prefix="stylelayer-jobs-") if directory is None else directory)
        self.files = self.directory / "files"
        self.quarantine = self.directory / QUARANTINE
        self.min_free = min_free
        self._lock = threading.Lock()
        self._health_lock = threading.Lock()
        self._health: tuple[float, StorageError | None] = (-HEALTH_EVERY, None)
        try:
            self.files.mkdir(parents=True, exist_ok=True)
            self._lock_file = _lock_folder(self.directory / "lock")
        except StoreBusy:
            raise
        except OSError as exc:
            raise StoreError(f"cannot write to the data folder {self.directory}: {_reason(exc)}") from None
        try:
            problem = _probe(self.directory) or _probe(self.files)
            if problem is not None:
                raise StoreError(f"cannot write to the data folder {self.directory}: {_reason(problem)}")
            if reset:
                self._set_aside_everything()
            self._db = self._open_database()
            with contextlib.suppress(OSError):  # a disk already full: none, and `problem` says so
                self._keep_reserve()
        except BaseException:
            self._lock_file.close()
            raise

    # ---- opening -------------------------------------------------------------------------------------------
    def _open_database(self) -> sqlite3.Connection:
        path = self.directory / DATABASE
        earlier = [p for p in self.files.iterdir() if not _temporary(p)]
        size = path.stat().st_size if path.exists() else None
        if not size and earlier:
            what = "missing" if size is None else "empty (0 bytes)"
            raise StoreError(_refusal(f"the job database {path} is {what}", self.files, len(earlier)))
        if size == 0:
            path.unlink()  # an empty file is no database; SQLite would make one anyway
        try:
            db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the job database {path}: {exc}") from None
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable across crashes and kills, no fsync per commit
            check = db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(check)
            version = db.execute("PRAGMA user_version").fetchone()[0]
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.directory} was written by a newer stylelayer (job store version {version}); run that"
                    " version, or start with --reset-jobs to set its jobs aside"
                )
            if version == 0 and not tables:
                if earlier:
                    raise StoreError(_refusal(f"the job database {path} holds no jobs", self.files, len(earlier)))
                db.executescript(_TABLES)
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                version = SCHEMA_VERSION
            elif version == 0 or not {"jobs", "losses"} <= tables:
                raise StoreError(
                    f"{path} is not a stylelayer job database (tables: {', '.join(sorted(tables)) or 'none'});"
                    " move it away, or start with --reset-jobs to set it and the files beside it aside"
                )
            if version < SCHEMA_VERSION:
                _upgrade(db, version)
            return db
        except StoreError:
            db.close()
            raise
        except sqlite3.Error as exc:
            db.close()
            if _is_full(exc):
                raise StoreError(f"the data folder {self.directory} is full: {exc}") from None
            raise StoreError(
                f"the job database {path} is damaged ({exc}); move it (and its -wal and -shm files) away to keep"
                " it, or start with --reset-jobs to set it and the stored results aside in"
                f" {self.quarantine} and begin with an empty store"
            ) from None

    def _set_aside_everything(self) -> None:
        """--reset-jobs: the database and every stored file move to quarantine/reset-<time>/, nothing is deleted."""
        target = _free_name(self.quarantine / time.strftime("reset-%Y%m%d-%H%M%S"))
        moved = 0
        for name in (DATABASE, f"{DATABASE}-wal", f"{DATABASE}-shm", "speed.json"):
            if (self.directory / name).exists():
                _set_aside(self.directory / name, target)
        for path in list(self.files.iterdir()):
            _set_aside(path, target / "files")
            moved += 1
        if target.exists():
            log.warning("--reset-jobs: the job database and %d stored files were moved to %s", moved, target)

    # ---- jobs ----------------------------------------------------------------------------------------------
    def save_inputs(self, job_id: str, inputs: list[tuple[str, bytes]]) -> None:
        """Write a new job's input images ('content', 'style0', 'style1', ...) before `add` records the job."""
        with self._writing():
            for name, data in inputs:
                _write_file(self._path(job_id, name), data)

    def discard(self, job_id: str) -> None:
        """Remove the files of a job that was never added (refused after `save_inputs`)."""
        self._remove_files(job_id, keep_result=False)

    def add(self, job: Job, inputs: list[tuple[str, bytes]]) -> None:
        """Record a new queued job whose inputs `save_inputs` has written."""
        summary = {
            "content": any(n == "content" for n, _ in inputs),
            "styles": sum(n.startswith("style") for n, _ in inputs),
            "regions": [sum(n.startswith(f"region{r}_style") for n, _ in inputs) for r in _region_numbers(inputs)],
        }
        with self._transaction() as db:
            db.execute(
                "INSERT INTO jobs (id, state, sync, params, preview_every, inputs, created, abandon_after, owner,"
                " progress) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    job.id,
                    job.state,
                    int(job.sync),
                    json.dumps(job.params.to_dict()),
                    job.preview_every,
                    json.dumps(summary),
                    job.created,
                    job.abandon_after,
                    job.owner,
                    json.dumps(progress_fields(job.progress)),
                ),
            )

    def update(self, job: Job) -> None:
        """Write a job's state, times, progress, error and seed."""
        with self._transaction() as db:
            self._update(db, job)

    @staticmethod
    def _update(db: sqlite3.Connection, job: Job) -> None:
        db.execute(
            "UPDATE jobs SET state=?, started=?, finished=?, progress=?, error=?, seed=?, restarts=?, result_bytes=?,"
            " preview_iteration=? WHERE id=?",
            (
                job.state,
                job.started,
                job.finished,
                json.dumps(progress_fields(job.progress)),
                None if job.error is None else json.dumps(job.error),
                job.seed,
                job.restarts,
                job.result_bytes,
                job.preview_iteration,
                job.id,
            ),
        )

    def finish(self, job: Job, history: list[tuple[int, dict[str, float | None]]]) -> None:
        """A job ended: its row and loss history in one transaction, then its inputs go (and its result file too
        unless it is done: a result no row calls done would be an orphan)."""
        with self._transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO losses (job_id, iteration, losses) VALUES (?,?,?)",
                [(job.id, iteration, json.dumps(losses)) for iteration, losses in history],
            )
            self._update(db, job)
        self._remove_files(job.id, keep_result=job.state == DONE)

    def restart(self, job: Job) -> None:
        """A job goes back to the queue (the server stopped while it ran): its old loss points go."""
        with self._transaction() as db:
            db.execute("DELETE FROM losses WHERE job_id=?", (job.id,))
            self._update(db, job)

    def delete(self, job_id: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM losses WHERE job_id=?", (job_id,))
            db.execute("DELETE FROM jobs WHERE id=?", (job_id,))
        self._remove_files(job_id, keep_result=False)

    def load(self) -> list[StoredJob]:
        """Every job, oldest first. Files that belong to no job (a kill between file and row) are moved to
        quarantine/ (counted in the log); unfinished temporary files are removed."""
        with self._lock:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM jobs ORDER BY created, rowid").fetchall()
        jobs = [_stored(row) for row in rows]
        known = {stored.job.id for stored in jobs}
        orphans = 0
        for path in list(self.files.iterdir()):
            if _temporary(path):
                path.unlink(missing_ok=True)
            elif path.name.split(".", 1)[0] not in known:
                _set_aside(path, self.quarantine)
                orphans += 1
        if orphans:
            log.warning("%d files that no job accounts for were moved to %s", orphans, self.quarantine)
        return jobs

    # ---- files and loss history ----------------------------------------------------------------------------
    def write_result(self, job_id: str, png: bytes) -> int:
        """Store the result PNG (before the row says done); returns its size in bytes."""
        with self._writing():
            _write_file(self._path(job_id, "result.png"), png)
        return len(png)

    def result(self, job_id: str) -> bytes | None:
        try:
            return self._path(job_id, "result.png").read_bytes()
        except FileNotFoundError:
            return None

    def inputs(self, job_id: str, summary: dict[str, Any]) -> tuple[bytes | None, list[bytes]]:
        """The content and style bytes saved by `add` (FileNotFoundError when one is gone)."""
        content = self._path(job_id, "content").read_bytes() if summary.get("content") else None
        styles = [self._path(job_id, f"style{i}").read_bytes() for i in range(int(summary.get("styles", 0)))]
        return content, styles

    def region_inputs(self, job_id: str, summary: dict[str, Any]) -> list[tuple[bytes, list[bytes]]]:
        """Each region's mask and style bytes saved by `add` (FileNotFoundError when one is gone)."""
        return [
            (
                self._path(job_id, f"region{r}_mask").read_bytes(),
                [self._path(job_id, f"region{r}_style{i}").read_bytes() for i in range(n)],
            )
            for r, n in enumerate(summary.get("regions", []), 1)
        ]

    def losses(self, job_id: str, since: int = 0) -> list[tuple[int, dict[str, float | None]]]:
        """Loss points of an ended job after iteration `since`, in order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT iteration, losses FROM losses WHERE job_id=? AND iteration>? ORDER BY iteration",
                (_checked(job_id), since),
            ).fetchall()
        return [(iteration, json.loads(text)) for iteration, text in rows]

    def save_speed(self, state: dict[str, Any]) -> None:
        """The server's measured speed (estimate.SpeedMeter.state), replaced whole."""
        with self._writing():
            _write_file(self.directory / "speed.json", json.dumps(state).encode())

    def load_speed(self) -> dict[str, Any] | None:
        """What `save_speed` wrote last; None when nothing was, or it cannot be read (then estimates start over)."""
        try:
            state = json.loads((self.directory / "speed.json").read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("the saved speed could not be read (%s); estimates start from the default", exc)
            return None
        return state if isinstance(state, dict) else None

    # ---- health --------------------------------------------------------------------------------------------
    def problem(self) -> StorageError | None:
        """Why jobs cannot be stored now (the folder cannot be written, or is nearly full), else None. Checked
        with a real write, at most every HEALTH_EVERY seconds; None again as soon as the folder recovers. Nearly
        full: less than `min_free` free besides the reserve, which is taken back as soon as there is room."""
        with self._health_lock:
            checked, problem = self._health
            if time.monotonic() - checked < HEALTH_EVERY:
                return problem
            problem = None
            try:
                failed = _probe(self.directory) or _probe(self.files)
                if failed is not None:
                    raise failed
                free = shutil.disk_usage(self.directory).free
                needed = self.min_free + (0 if (self.directory / RESERVE).exists() else RESERVE_BYTES)
                if free < needed:
                    problem = StorageError(
                        "storage_full",
                        f"the data folder {self.directory} is nearly full: {free // 1024**2} MiB free, the server"
                        f" needs {-(-needed // 1024**2)} MiB",
                    )
                else:
                    self._keep_reserve()
            except OSError as exc:
                code = "storage_full" if _is_full(exc) else "storage_error"
                problem = StorageError(code, f"the data folder {self.directory} cannot be written: {_reason(exc)}")
            self._health = (time.monotonic(), problem)
            return problem

    def release_reserve(self) -> bool:
        """Give the reserved space back to the disk (the disk is full: the rows that say how jobs ended must still
        be written); False when there was none to give."""
        try:
            (self.directory / RESERVE).unlink()
        except OSError:
            return False
        log.warning("the data folder is full: its %d reserved bytes were released to record jobs", RESERVE_BYTES)
        return True

    def _keep_reserve(self) -> None:
        """Hold RESERVE_BYTES in a file of their own, for `release_reserve` (OSError when it cannot be written)."""
        path = self.directory / RESERVE
        if not path.exists():
            _write_file(path, bytes(RESERVE_BYTES))

    def close(self) -> None:
        with self._lock:
            self._db.close()
        self._lock_file.close()
        if self.temporary:
            shutil.rmtree(self.directory, ignore_errors=True)

    # ---- helpers -------------------------------------------------------------------------------------------
    def _path(self, job_id: str, name: str) -> Path:
        return self.files / f"{_checked(job_id)}.{name}"

    def _remove_files(self, job_id: str, keep_result: bool) -> None:
        """A job's files (errors ignored: a file left behind is quarantined at the next start, never lost)."""
        for path in self.files.glob(f"{_checked(job_id)}.*"):
            if not (keep_result and path.name == f"{job_id}.result.png"):
                with contextlib.suppress(OSError):
                    path.unlink(missing_ok=True)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Every failed write becomes a StorageError, and the next health check looks again at once."""
        try:
            yield
        except (OSError, sqlite3.Error) as exc:
            self._health = (-HEALTH_EVERY, None)
            raise storage_error(exc) from exc

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._writing(), self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self._db.execute("ROLLBACK")
                raise


def _stored(row: tuple[Any, ...]) -> StoredJob:
    """A row read back (columns: _COLUMNS) as the job it records."""
    (id_, state, sync, params, preview_every, inputs, created, started, finished, error, seed, restarts,
     result_bytes, preview_iteration, abandon_after, owner, progress) = row  # fmt: skip
    problem = None
    try:
        job_params = StyleParams.from_dict(json.loads(params))
    except ParamError as exc:  # written by another version
        job_params, problem = StyleParams(), exc
    job = Job(
        params=job_params,
        preview_every=preview_every,
        sync=bool(sync),
        id=id_,
        state=state,
        created=created,
        started=started,
        finished=finished,
        progress=progress_of(json.loads(progress)),
        error=None if error is None else json.loads(error),
        seed=seed,
        restarts=restarts,
        result_bytes=result_bytes,
        preview_iteration=preview_iteration,
        abandon_after=abandon_after,  # counted from now: a client gone with the old server is not polling, and
        owner=owner,  # the job is cancelled once that much time has passed
    )
    return StoredJob(job, json.loads(inputs), problem)


def _upgrade(db: sqlite3.Connection, version: int) -> None:
    """Bring a database an earlier release wrote to SCHEMA_VERSION, in one transaction: its jobs keep every field
    (version 2's progress columns become the one progress column of version 3)."""
    db.execute("BEGIN IMMEDIATE")
    if version == 1:
        for statement in _VERSION_2:
            db.execute(statement)
    db.execute("ALTER TABLE jobs RENAME TO jobs_v2")
    db.execute(_JOBS_TABLE)
    rows = db.execute(f"SELECT {_KEPT}, {_VERSION_2_PROGRESS} FROM jobs_v2 ORDER BY rowid").fetchall()
    kept = len(_KEPT.split(","))
    names = [name.strip() for name in _VERSION_2_PROGRESS.split(",")]
    for row in rows:
        progress = dict(zip(names, row[kept:], strict=True))
        progress["losses"] = json.loads(progress["losses"])
        db.execute(
            f"INSERT INTO jobs ({_COLUMNS}) VALUES ({','.join('?' * (kept + 1))})", (*row[:kept], json.dumps(progress))
        )
    db.execute("DROP TABLE jobs_v2")
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    db.execute("COMMIT")


def storage_error(exc: BaseException) -> StorageError:
    """A failed write as the job error clients see: one sentence, code storage_full or storage_error."""
    if isinstance(exc, StorageError):
        return exc
    if _is_full(exc):
        return StorageError("storage_full", f"the server's disk is full, so the job could not be stored ({exc})")
    return StorageError("storage_error", f"the server could not write to its data folder ({_reason(exc)})")


def _is_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
    return isinstance(exc, sqlite3.Error) and (getattr(exc, "sqlite_errorcode", 0) & 0xFF) == _SQLITE_FULL


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _refusal(what: str, files: Path, count: int) -> str:
    return (
        f"{what}, but {files} holds {count} file{'s' if count != 1 else ''} of earlier jobs; not starting, so that"
        " their results are not lost: put the database back, or start with --reset-jobs to set the files aside"
        f" (in {files.parent / QUARANTINE}) and begin with an empty store"
    )


def _checked(job_id: str) -> str:
    """The id itself, once it is known to be 32 hex digits: the only text that goes into a file name."""
    if not JOB_ID.fullmatch(job_id):
        raise ValueError(f"not a job id: {job_id!r}")
    return job_id


def _write_file(path: Path, data: bytes) -> None:
    """`path` holds `data` whole or is unchanged: written under a temporary name, fsynced, renamed, and the rename
    made durable (the folder fsynced) before a row may point to it; the temporary file goes when anything fails."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
        if os.name == "posix":  # Windows cannot open a folder to flush it; NTFS journals the rename
            folder = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


def _probe(folder: Path) -> OSError | None:
    """None when a small file can be written (and fsynced) in `folder`, else why it cannot."""
    try:
        _write_file(folder / PROBE, b"stylelayer")
        (folder / PROBE).unlink()
    except OSError as exc:
        return exc
    return None


def _set_aside(path: Path, folder: Path) -> None:
    """Move `path` into `folder` under its own name, or a numbered one when that is taken (nothing overwritten)."""
    folder.mkdir(parents=True, exist_ok=True)
    os.replace(path, _free_name(folder / path.name))


def _free_name(path: Path) -> Path:
    """`path`, or `path.1`, `path.2`, ... : the first that does not exist."""
    number, candidate = 0, path
    while candidate.exists():
        number += 1
        candidate = path.with_name(f"{path.name}.{number}")
    return candidate


def _temporary(path: Path) -> bool:
    """A file being written (or the write probe), left behind only by a kill: never a result."""
    return path.name.endswith(".tmp") or path.name == PROBE


def _lock_folder(path: Path) -> IO[bytes]:
    """Hold an exclusive lock on `path` for as long as the returned file stays open (the OS drops it on a kill)."""
    handle = open(path, "a+b")  # noqa: SIM115 - kept open on purpose: the lock lives as long as the store
    try:
        if os.name == "nt":
            import msvcrt

            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise StoreBusy(
            f"another stylelayer server is using {path.parent}; stop it or give this one another --data-dir"
        ) from None
    return handle


def _region_numbers(inputs: list[tuple[str, bytes]]) -> range:
    """1..n for inputs that hold regions 1 to n ('region1_mask', 'region1_style0', ...)."""
    return range(1, sum(name.endswith("_mask") and name.startswith("region") for name, _ in inputs) + 1)
