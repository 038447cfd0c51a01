"""The durable job store: jobs, their losses and their result files survive a restart or a crash of the server.

One folder (`stylelayer serve --data-dir`, by default the per-user data folder) holds

    jobs.sqlite3             one row per job (parameters, state, losses, error, seed) and one per loss point;
                             SQLite in WAL mode, every change one committed transaction: a killed or crashed
                             server loses nothing committed (synchronous=NORMAL: a power cut may lose the last
                             moments, never the database)
    files/<id>.content       the uploaded images of a job (bytes as received) until the job ends
    files/<id>.style<N>
    files/<id>.result.png    the result, byte for byte what the client downloads
    lock                     held while a server uses the folder, so two servers never run the same jobs

File names are built from a validated job id only (32 hex digits made by the server), never from a request.
Files are written whole (temporary name, fsync, rename) before the row that points to them is committed, and
outside the queue's lock (they can be large); the rows are small and written under it, so they are in order.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sqlite3
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

JOB_ID = re.compile(r"[0-9a-f]{32}")
SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    sync INTEGER NOT NULL,
    params TEXT NOT NULL,
    preview_every INTEGER NOT NULL,
    inputs TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    iteration INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL DEFAULT 0,
    elapsed REAL NOT NULL DEFAULT 0,
    losses TEXT NOT NULL DEFAULT '{}',
    error TEXT,
    seed INTEGER,
    restarts INTEGER NOT NULL DEFAULT 0,
    result_bytes INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS losses (
    job_id TEXT NOT NULL,
    iteration INTEGER NOT NULL,
    losses TEXT NOT NULL,
    PRIMARY KEY (job_id, iteration)
) WITHOUT ROWID;
"""


class StoreBusy(RuntimeError):
    """Another server process holds this data folder."""


@dataclass
class StoredJob:
    """A job row as read back at start-up; `inputs` holds the image bytes of jobs that have not ended."""

    id: str
    state: str
    sync: bool
    params: dict[str, Any]
    preview_every: int
    created: float
    started: float | None
    finished: float | None
    iteration: int
    total: int
    elapsed: float
    losses: dict[str, float | None]
    error: dict[str, str] | None
    seed: int | None
    restarts: int
    result_bytes: int
    inputs: dict[str, Any]  # {"content": bool, "styles": int}


class JobStore:
    """SQLite rows plus files in one folder; thread-safe (one connection behind a lock)."""

    def __init__(self, directory: str | os.PathLike[str] | None):
        """`directory` None: a fresh temporary folder, deleted again by `close` (tests)."""
        self.temporary = directory is None
        self.directory = Path(tempfile.mkdtemp(prefix="stylelayer-jobs-") if directory is None else directory)
        self.files = self.directory / "files"
        self.files.mkdir(parents=True, exist_ok=True)
        self._lock_file = _lock_folder(self.directory / "lock")
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.directory / "jobs.sqlite3", check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable across crashes and kills, no fsync per commit
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            self.close()
            raise RuntimeError(f"{self.directory} was written by a newer stylelayer (job store version {version})")
        self._db.executescript(_SCHEMA)
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    # ---- jobs ----------------------------------------------------------------------------------------------
    def save_inputs(self, job_id: str, inputs: list[tuple[str, bytes]]) -> None:
        """Write a new job's input images ('content', 'style0', 'style1', ...) before `add` records the job."""
        for name, data in inputs:
            _write_file(self._path(job_id, name), data)

    def discard(self, job_id: str) -> None:
        """Remove the files of a job that was never added (refused after `save_inputs`)."""
        for path in self.files.glob(f"{_checked(job_id)}.*"):
            path.unlink(missing_ok=True)

    def add(self, job: Any, sync: bool, inputs: list[tuple[str, bytes]]) -> None:
        """Record a new queued job whose inputs `save_inputs` has written."""
        summary = {"content": any(n == "content" for n, _ in inputs), "styles": sum(n != "content" for n, _ in inputs)}
        with self._transaction() as db:
            db.execute(
                "INSERT INTO jobs (id, state, sync, params, preview_every, inputs, created) VALUES (?,?,?,?,?,?,?)",
                (
                    job.id,
                    job.state,
                    int(sync),
                    json.dumps(job.params.to_dict()),
                    job.preview_every,
                    json.dumps(summary),
                    job.created,
                ),
            )

    def update(self, job: Any) -> None:
        """Write a job's state, times, counters, losses, error and seed."""
        with self._transaction() as db:
            self._update(db, job)

    @staticmethod
    def _update(db: sqlite3.Connection, job: Any) -> None:
        db.execute(
            "UPDATE jobs SET state=?, started=?, finished=?, iteration=?, total=?, elapsed=?, losses=?, error=?,"
            " seed=?, restarts=?, result_bytes=? WHERE id=?",
            (
                job.state,
                job.started,
                job.finished,
                job.iteration,
                job.total,
                job.elapsed,
                json.dumps(job.losses),
                None if job.error is None else json.dumps(job.error),
                job.seed,
                job.restarts,
                job.result_bytes,
                job.id,
            ),
        )

    def finish(self, job: Any, history: list[tuple[int, dict[str, float | None]]]) -> None:
        """A job ended: its row and loss history in one transaction, then its inputs go."""
        with self._transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO losses (job_id, iteration, losses) VALUES (?,?,?)",
                [(job.id, iteration, json.dumps(losses)) for iteration, losses in history],
            )
            self._update(db, job)
        for path in self.files.glob(f"{_checked(job.id)}.*"):
            if path.name != f"{job.id}.result.png":
                path.unlink(missing_ok=True)

    def restart(self, job: Any) -> None:
        """A job goes back to the queue (the server stopped while it ran): its old loss points go."""
        with self._transaction() as db:
            db.execute("DELETE FROM losses WHERE job_id=?", (job.id,))
            self._update(db, job)

    def delete(self, job_id: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM losses WHERE job_id=?", (job_id,))
            db.execute("DELETE FROM jobs WHERE id=?", (job_id,))
        for path in self.files.glob(f"{_checked(job_id)}.*"):
            path.unlink(missing_ok=True)

    def load(self) -> list[StoredJob]:
        """Every job, oldest first. Files that belong to no job (a kill between file and row) are removed."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, state, sync, params, preview_every, created, started, finished, iteration, total,"
                " elapsed, losses, error, seed, restarts, result_bytes, inputs FROM jobs ORDER BY created, rowid"
            ).fetchall()
        jobs = [
            StoredJob(
                row[0],
                row[1],
                bool(row[2]),
                json.loads(row[3]),
                row[4],
                row[5],
                row[6],
                row[7],
                row[8],
                row[9],
                row[10],
                json.loads(row[11]),
                None if row[12] is None else json.loads(row[12]),
                row[13],
                row[14],
                row[15],
                json.loads(row[16]),
            )
            for row in rows
        ]
        known = {job.id for job in jobs}
        for path in self.files.iterdir():
            if path.name.split(".", 1)[0] not in known or path.name.endswith(".tmp"):
                path.unlink(missing_ok=True)
        return jobs

    # ---- files and loss history ----------------------------------------------------------------------------
    def write_result(self, job_id: str, png: bytes) -> int:
        """Store the result PNG (before the row says done); returns its size in bytes."""
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

    def losses(self, job_id: str, since: int = 0) -> list[tuple[int, dict[str, float | None]]]:
        """Loss points of an ended job after iteration `since`, in order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT iteration, losses FROM losses WHERE job_id=? AND iteration>? ORDER BY iteration",
                (_checked(job_id), since),
            ).fetchall()
        return [(iteration, json.loads(text)) for iteration, text in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
        self._lock_file.close()
        if self.temporary:
            shutil.rmtree(self.directory, ignore_errors=True)

    # ---- helpers -------------------------------------------------------------------------------------------
    def _path(self, job_id: str, name: str) -> Path:
        return self.files / f"{_checked(job_id)}.{name}"

    @contextlib.contextmanager
    def _transaction(self):
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")


def _checked(job_id: str) -> str:
    """The id itself, once it is known to be 32 hex digits: the only text that goes into a file name."""
    if not JOB_ID.fullmatch(job_id):
        raise ValueError(f"not a job id: {job_id!r}")
    return job_id


def _write_file(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


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
