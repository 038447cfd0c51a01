"""Storage faults: the job store never wedges a worker and never deletes a result.

Faults are injected into the store's own writes (its SQLite statements through a wrapped connection, its file
writes through a wrapped `_write_file`), and, where the tests run as root, made real: a full tmpfs and a read-only
remount. After each fault every job is checked three ways: what the client is told, what the SQLite rows say (read
through a separate read-only connection), and, for every job the client saw done, its result byte for byte.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from protocol_helpers import FakeEngine, gradient, png_bytes, raw, stylelayer_client
from reliability_helpers import assert_json_error, wait_terminal

from stylelayer.api import job_store, serve

pytestmark = pytest.mark.category("Storage faults")

CONTENT = png_bytes(gradient(24, 16))
STYLE = png_bytes(gradient(8, 8))
CODES = {"ENOSPC": "storage_full", "EIO": "storage_error"}
ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


# ---- injecting faults ----------------------------------------------------------------------------------------
class Faults:
    """Fails the store's next writes of a kind ('result', 'inputs', 'probe', 'other' files; 'row' or 'commit'
    statements) with ENOSPC or EIO, as the OS and SQLite report them, until `clear` (or `count` times)."""

    def __init__(self, store: job_store.JobStore, monkeypatch: pytest.MonkeyPatch):
        self.where: set[str] = set()
        self.kind = "EIO"
        self.left: int | None = None
        self.injected = 0
        self._lock = threading.Lock()
        store._db = FaultyConnection(store._db, self)  # type: ignore[assignment]
        write_file = job_store._write_file

        def faulty_write_file(path: Path, data: bytes) -> None:
            name = path.name
            where = "result" if name.endswith(".result.png") else "probe" if name == job_store.PROBE else "other"
            if ".content" in name or ".style" in name:
                where = "inputs"
            self.check(where, sql=False)
            write_file(path, data)

        monkeypatch.setattr(job_store, "_write_file", faulty_write_file)

    def arm(self, kind: str, *where: str, count: int | None = None) -> None:
        with self._lock:
            self.kind, self.where, self.left = kind, set(where), count

    def clear(self) -> None:
        self.arm("EIO")

    def check(self, where: str, sql: bool) -> None:
        with self._lock:
            if where not in self.where or self.left == 0:
                return
            if self.left is not None:
                self.left -= 1
            self.injected += 1
        if not sql:
            code = errno.ENOSPC if self.kind == "ENOSPC" else errno.EIO
            raise OSError(code, os.strerror(code))
        exc = sqlite3.OperationalError("database or disk is full" if self.kind == "ENOSPC" else "disk I/O error")
        exc.sqlite_errorcode = 13 if self.kind == "ENOSPC" else 10  # type: ignore[attr-defined]  # FULL, IOERR
        raise exc


class FaultyConnection:
    """The store's sqlite3 connection with `Faults` in front of its writing statements."""

    def __init__(self, db: sqlite3.Connection, faults: Faults):
        self._db, self._faults = db, faults

    def _check(self, sql: str) -> None:
        verb = sql.split(None, 1)[0].upper()
        if verb in ("INSERT", "UPDATE", "DELETE"):
            self._faults.check("row", sql=True)
        elif verb == "COMMIT":
            self._faults.check("commit", sql=True)

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        self._check(sql)
        return self._db.execute(sql, *args)

    def executemany(self, sql: str, *args: Any) -> sqlite3.Cursor:
        self._check(sql)
        return self._db.executemany(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


# ---- checking agreement --------------------------------------------------------------------------------------
class Ledger:
    """What the client was told about each job, and each done job's result as first downloaded."""

    def __init__(self, client: stylelayer_client.StylelayerClient, data: Path):
        self.client, self.data = client, data
        self.results: dict[str, bytes] = {}
        self.ids: list[str] = []

    def submit(self, **params: Any) -> str:
        job_id = self.client.submit(CONTENT, STYLE, params={"iterations": 2, **params})
        self.ids.append(job_id)
        return job_id

    def finished(self, job_id: str) -> dict:
        status = wait_terminal(self.client, job_id)
        if status["state"] == "done":
            self.results[job_id] = self.client.result(job_id)
        return status

    def check(self, storage: Any, client: stylelayer_client.StylelayerClient | None = None) -> None:
        """Every job: the client and the store agree, none is `running` in the store unless running, and every
        result seen done is served unchanged."""
        client = client or self.client
        rows = store_rows(self.data)
        for job_id in self.ids:
            status = client.status(job_id)
            state, error = rows[job_id]
            assert state == status["state"], (job_id, state, status)
            assert (error or {}).get("code") == (status["error"] or {}).get("code"), (job_id, error, status)
            storage.jobs += 1
        assert not [i for i, (state, _) in rows.items() if state == "running" and i in self.results]
        for job_id, png in self.results.items():
            try:
                same = client.result(job_id) == png
            except stylelayer_client.StylelayerError:
                same = False
            storage.lost += not same
            assert same, f"the result of {job_id} was lost"


def store_rows(data: Path) -> dict[str, tuple[str, dict | None]]:
    """(state, error) of every row, read as another process would (read-only, beside the server's connection)."""
    import json

    db = sqlite3.connect(f"file:{data / 'jobs.sqlite3'}?mode=ro", uri=True)
    try:
        return {
            row[0]: (row[1], None if row[2] is None else json.loads(row[2]))
            for row in db.execute("SELECT id, state, error FROM jobs")
        }
    finally:
        db.close()


def health(url: str) -> dict:
    import json

    status, _, body = raw(url + "/v1/health")
    assert status == 200, body
    return json.loads(body)


def wait_health(url: str, status: str, timeout: float = 5) -> dict:
    deadline = time.monotonic() + timeout
    while (answer := health(url))["status"] != status:
        assert time.monotonic() < deadline, answer
        time.sleep(0.1)
    return answer


def refused_507(client: stylelayer_client.StylelayerClient, code: str) -> str:
    with pytest.raises(stylelayer_client.StylelayerError) as err:
        client.submit(CONTENT, STYLE, params={"iterations": 1})
    assert (err.value.status, err.value.code) == (507, code), err.value
    message = str(err.value)
    assert "Traceback" not in message and message.count(". ") == 0 and len(message) < 400, message
    return message


def gated_server(make_server: Any, data: Path, **config: Any) -> tuple[Any, Any, FakeEngine]:
    engine = FakeEngine()
    srv, client = make_server(engine, data_dir=str(data), **config)
    return srv, client, engine


def run_gated(engine: FakeEngine, ledger: Ledger) -> str:
    """Submit a job and hold it at its first iteration (the test injects a fault, then lets it go)."""
    engine.started.clear()
    engine.gate = threading.Event()
    job_id = ledger.submit()
    assert engine.started.wait(5)
    return job_id


# ---- the tests -----------------------------------------------------------------------------------------------
SCENARIOS = [
    (kind, where, count)
    for kind in ("ENOSPC", "EIO")
    for where in ("result", "row", "commit")
    for count in (1, None)  # one failing write, or every write until the fault is cleared
]


@pytest.mark.parametrize(("kind", "where", "count"), SCENARIOS, ids=lambda v: str(v))
def test_write_faults_fail_only_that_job(
    make_server, tmp_path, monkeypatch, storage, cases, kind: str, where: str, count: int | None
) -> None:
    """ENOSPC or EIO injected into the store's writes at a job's end (its result file, its row, its commit),
    once or until cleared: that job ends `failed` with `storage_full`/`storage_error`, the store says so too (also
    after a restart: it does not run again), health is `degraded` and submissions get 507 while rows wait, and the
    next job runs once the fault is gone."""
    data = tmp_path / "data"
    srv, client, engine = gated_server(make_server, data)
    faults = Faults(srv.app.extensions["stylelayer"].queue.store, monkeypatch)
    ledger = Ledger(client, data)
    before = ledger.submit(seed=1)
    assert ledger.finished(before)["state"] == "done"

    victim = run_gated(engine, ledger)
    faults.arm(kind, where, count=count)
    engine.gate.set()
    status = wait_terminal(client, victim)
    assert status["state"] == "failed" and status["error"]["code"] == CODES[kind], status
    assert "Traceback" not in status["error"]["message"] and len(status["error"]["message"]) < 400
    if count is None and where != "result":  # its row waits to be written: the store cannot take jobs
        answer = wait_health(srv.url, "degraded")
        assert answer["reason"]["code"] == CODES[kind] and "could not be written" in answer["reason"]["message"]
        refused_507(client, CODES[kind])
        assert store_rows(data)[victim][0] == "running"  # not yet written...
    faults.clear()
    wait_health(srv.url, "ok")  # ...and written as soon as the store takes it, without a restart
    after = ledger.submit(seed=2)
    assert ledger.finished(after)["state"] == "done"  # the worker was not wedged
    ledger.check(storage)
    srv.stop()

    again = FakeEngine()
    srv2, client2 = make_server(again, data_dir=str(data))
    ledger.check(storage, client2)
    assert again.calls == []  # nothing the client was told ended runs again
    storage.faults += faults.injected
    cases(3)


def test_an_unexpected_error_in_the_bookkeeping(make_server, tmp_path, monkeypatch, storage, cases) -> None:
    """Not an I/O error but a bug: recording a job's end raises RuntimeError. The job still ends (failed,
    `storage_error`, its client is told), the worker runs the next job, and the store catches up."""
    data = tmp_path / "data"
    srv, client, engine = gated_server(make_server, data)
    store = srv.app.extensions["stylelayer"].queue.store
    ledger = Ledger(client, data)
    victim = run_gated(engine, ledger)
    finish, calls = store.finish, []

    def broken_finish(job: Any, history: Any) -> None:
        calls.append(job.id)
        if len(calls) == 1:
            raise RuntimeError("a bug in the bookkeeping")
        finish(job, history)

    monkeypatch.setattr(store, "finish", broken_finish)
    engine.gate.set()
    status = wait_terminal(client, victim)
    assert status["state"] == "failed" and status["error"]["code"] == "storage_error", status
    assert ledger.finished(ledger.submit())["state"] == "done"
    wait_health(srv.url, "ok")
    ledger.check(storage)
    storage.faults += 1
    cases(2)


@pytest.mark.parametrize("kind", ["ENOSPC", "EIO"])
def test_fault_while_saving_a_submission(make_server, tmp_path, monkeypatch, storage, cases, kind: str) -> None:
    """ENOSPC or EIO while a submission's images or row are written: 507 with one sentence, nothing queued, no
    file left behind; the next submission works."""
    data = tmp_path / "data"
    srv, client, _ = gated_server(make_server, data)
    faults = Faults(srv.app.extensions["stylelayer"].queue.store, monkeypatch)
    ledger = Ledger(client, data)
    for where in ("inputs", "row", "commit"):
        faults.arm(kind, where, count=1)
        refused_507(client, CODES[kind])
        assert client.info()["jobs"]["queued"] == 0 and list((data / "files").iterdir()) == []
        cases()
    faults.clear()
    assert ledger.finished(ledger.submit())["state"] == "done"
    ledger.check(storage)
    storage.faults += faults.injected
    cases()


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(folder: Path) -> Path:
    """Write a file until the file system is full (ENOSPC)."""
    filler = folder / "filler"
    with open(filler, "wb") as out, contextlib.suppress(OSError):
        while True:
            out.write(b"\0" * 65536)
            out.flush()
            os.fsync(out.fileno())
    return filler


@pytest.mark.skipif(not ROOT, reason="mounting a small tmpfs needs root; the injected ENOSPC tests cover the rest")
def test_a_real_full_disk_then_space_returns(make_server, tmp_path, storage, cases) -> None:
    """A real full file system (a 16 MB tmpfs filled up) while a job runs: the job fails `storage_full`, and
    its row says so at once (the store gives up the 1 MiB it keeps back for this); health says degraded and
    submissions get 507; once space returns, the server recovers without a restart and the store agrees with the
    client."""
    with tmpfs(tmp_path / "mnt", "16m") as mount:
        data = mount / "data"
        srv, client, engine = gated_server(make_server, data, min_free_bytes=1024**2)
        ledger = Ledger(client, data)
        before = ledger.submit()
        assert ledger.finished(before)["state"] == "done"
        victim = run_gated(engine, ledger)
        filler = fill(mount)
        engine.gate.set()
        status = wait_terminal(client, victim)
        assert status["state"] == "failed" and status["error"]["code"] == "storage_full", status
        answer = wait_health(srv.url, "degraded")
        assert answer["reason"]["code"] == "storage_full"
        refused_507(client, "storage_full")
        # written in the space the store kept back: a kill now would not run the job again
        assert store_rows(data)[victim] == ("failed", status["error"]) and not (data / "reserve").exists()
        filler.unlink()
        wait_health(srv.url, "ok")
        assert (data / "reserve").stat().st_size == job_store.RESERVE_BYTES  # kept back again
        assert ledger.finished(ledger.submit())["state"] == "done"
        ledger.check(storage)
        srv.stop()
        storage.faults += 1
        cases(3)


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """No file can be created, renamed or removed in `folder` and its subfolders until the block ends: chmod, or
    for root (whom permissions do not stop) the immutable attribute, as `chattr +i` sets it."""
    folders = [folder, *(p for p in folder.rglob("*") if p.is_dir())]
    modes = {path: path.stat().st_mode for path in folders}
    if ROOT:
        subprocess.run(["chattr", "+i", *map(str, folders)], check=True)
    else:
        for path in folders:
            path.chmod(0o555)
    try:
        yield
    finally:
        if ROOT:
            subprocess.run(["chattr", "-i", *map(str, folders)], check=True)
        for path, mode in modes.items():
            path.chmod(mode)


def test_a_data_folder_made_read_only_mid_job(make_server, tmp_path, storage, cases) -> None:
    """The data folder turns read-only while a job runs: the job fails `storage_error`, health is degraded and
    submissions get 507; made writable again, the server recovers without a restart, writes what it owed the
    store, and runs the next job."""
    data = tmp_path / "data"
    srv, client, engine = gated_server(make_server, data, min_free_bytes=0)
    ledger = Ledger(client, data)
    assert ledger.finished(ledger.submit())["state"] == "done"
    victim = run_gated(engine, ledger)
    with read_only(data):
        engine.gate.set()
        status = wait_terminal(client, victim)
        assert status["state"] == "failed" and status["error"]["code"] == "storage_error", status
        answer = wait_health(srv.url, "degraded")
        assert answer["reason"]["code"] == "storage_error" and "cannot be written" in answer["reason"]["message"]
        refused_507(client, "storage_error")
    wait_health(srv.url, "ok")
    assert ledger.finished(ledger.submit())["state"] == "done"
    ledger.check(storage)
    srv.stop()
    storage.faults += 1
    cases(3)


# ---- start-up ------------------------------------------------------------------------------------------------
def serve_args(data: Path, tmp_path: Path, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    return parser.parse_args(
        ["--port", "0", "--device", "cpu", "--data-dir", str(data), "--styles-dir", str(tmp_path / "s"), *extra]
    )


def start_refused(monkeypatch, capsys, data: Path, tmp_path: Path) -> str:
    """`stylelayer serve` on `data`: exit 2 with one line, before the model would load."""
    loaded: list[bool] = []
    monkeypatch.setattr(serve, "StyleEngine", lambda **kw: loaded.append(True) or FakeEngine())
    monkeypatch.setattr(serve, "resolve_device", lambda device: device)
    capsys.readouterr()
    assert serve.run(serve_args(data, tmp_path)) == 2
    err = capsys.readouterr().err.strip()
    assert loaded == [], "the model loaded before the data folder was checked"
    assert err.startswith("stylelayer serve: ") and "\n" not in err and "Traceback" not in err, err
    return err


def stored_jobs(tmp_path: Path, make_server: Any, count: int = 3) -> tuple[Path, dict[str, bytes]]:
    """A data folder with `count` done jobs (enough rows for a few database pages), the server stopped."""
    data = tmp_path / "data"
    srv, client = make_server(FakeEngine(), data_dir=str(data))
    results = {}
    for i in range(count):
        job_id = client.submit(CONTENT, STYLE, params={"iterations": 40, "seed": i})
        assert wait_terminal(client, job_id)["state"] == "done"
        results[job_id] = client.result(job_id)
    srv.stop()
    return data, results


def damage(data: Path, how: str) -> None:
    db = data / "jobs.sqlite3"
    size = db.stat().st_size
    if how == "missing":
        db.unlink()
    elif how == "0 bytes":
        db.write_bytes(b"")
    elif how == "garbage":
        db.write_bytes(os.urandom(size))
    elif how == "truncated to half":
        with open(db, "r+b") as f:
            f.truncate(size // 2)
    elif how == "damaged pages":
        with open(db, "r+b") as f:
            f.seek(4096 + 512)  # inside page 2 onwards: b-tree pages of the tables, not the header
            f.write(os.urandom(size - 4096 - 512))
    elif how == "another program's database":
        db.unlink()
        other = sqlite3.connect(db)
        other.execute("CREATE TABLE notes (text TEXT)")
        other.commit()
        other.close()


@pytest.mark.parametrize(
    "how", ["missing", "0 bytes", "garbage", "truncated to half", "damaged pages", "another program's database"]
)
def test_a_lost_or_damaged_database_is_refused_and_nothing_deleted(
    make_server, tmp_path, monkeypatch, capsys, storage, cases, how: str
) -> None:
    """A database that is missing, 0 bytes, garbage, truncated, has damaged pages or is another program's, while
    results are stored: `stylelayer serve` exits 2 with one line naming --reset-jobs, before the model loads, and
    every result file is still there; `--reset-jobs` then moves them to quarantine/ (nothing deleted) and starts."""
    data, results = stored_jobs(tmp_path, make_server, count=12)
    damage(data, how)
    err = start_refused(monkeypatch, capsys, data, tmp_path)
    assert "--reset-jobs" in err, err
    for job_id, png in results.items():
        same = (data / "files" / f"{job_id}.result.png").read_bytes() == png
        storage.lost += not same
        assert same
    storage.faults += 1
    storage.jobs += len(results)

    class Started(Exception):
        pass

    def fake_create_app(config, engine, workers=None, store=None):
        store.close()
        raise Started

    monkeypatch.setattr(serve, "create_app", fake_create_app)
    with pytest.raises(Started):
        serve.run(serve_args(data, tmp_path, "--reset-jobs"))
    (kept,) = (data / "quarantine").iterdir()
    assert sorted(p.name for p in (kept / "files").iterdir()) == sorted(f"{i}.result.png" for i in results)
    assert list((data / "files").iterdir()) == []
    cases(2)


def test_a_read_only_data_folder_is_refused_at_start(make_server, tmp_path, monkeypatch, capsys, storage, cases):
    """A read-only data folder at start: exit 2 with one line, before the model loads; its results untouched."""
    data, results = stored_jobs(tmp_path, make_server)
    with read_only(data):
        err = start_refused(monkeypatch, capsys, data, tmp_path)
    assert "cannot write to the data folder" in err, err
    assert all((data / "files" / f"{i}.result.png").read_bytes() == png for i, png in results.items())
    storage.faults += 1
    storage.jobs += len(results)
    cases()


def test_an_empty_folder_or_one_without_results_still_starts(tmp_path, cases) -> None:
    """Not a refusal: a new data folder, and one whose database vanished but that holds no results."""
    store = job_store.JobStore(tmp_path / "new")
    store.close()
    (tmp_path / "new" / "jobs.sqlite3").unlink()
    job_store.JobStore(tmp_path / "new").close()
    (tmp_path / "new" / "jobs.sqlite3").write_bytes(b"")
    job_store.JobStore(tmp_path / "new").close()
    cases(3)


def test_quarantine_keeps_orphans(make_server, tmp_path, storage, cases) -> None:
    """Result files no row accounts for (a row lost, a file copied in) are moved to quarantine/, not deleted."""
    data, results = stored_jobs(tmp_path, make_server, count=2)
    orphan = "c" * 32 + ".result.png"
    shutil.copy(data / "files" / f"{next(iter(results))}.result.png", data / "files" / orphan)
    srv, client = make_server(FakeEngine(), data_dir=str(data))
    assert (data / "quarantine" / orphan).exists()
    assert all(client.result(i) == png for i, png in results.items())
    srv.stop()
    storage.faults += 1
    storage.jobs += len(results)
    cases()


def test_health_is_degraded_while_nearly_full(make_server, tmp_path, cases) -> None:
    """Less free space than the server needs: degraded with the reason, 507 on submit; recovers on its own."""
    srv, client = make_server(FakeEngine(), data_dir=str(tmp_path / "d"), min_free_bytes=2**62)
    answer = wait_health(srv.url, "degraded")
    assert answer["reason"]["code"] == "storage_full" and "nearly full" in answer["reason"]["message"]
    message = refused_507(client, "storage_full")
    assert "nearly full" in message
    status, _, body = raw(srv.url + "/v1/stylize", "POST", *form())
    assert_json_error(status, body, "application/json", allowed={507})
    srv.app.extensions["stylelayer"].queue.store.min_free = 0
    wait_health(srv.url, "ok")
    assert wait_terminal(client, client.submit(CONTENT, STYLE, params={"iterations": 1}))["state"] == "done"
    cases(4)


def form() -> tuple[bytes, dict[str, str]]:
    body, content_type = stylelayer_client._job_form(CONTENT, STYLE, None, {"iterations": 1}, None, None)
    return body, {"Content-Type": content_type}


# ---- kill -9 during writes -----------------------------------------------------------------------------------
SERVE_FAKE = """
import sys
from protocol_helpers import FakeEngine
from stylelayer.api import serve
serve.StyleEngine = lambda **kw: FakeEngine(step_delay=0.002)
serve.resolve_device = lambda device: device
from stylelayer.cli import main
sys.exit(main(sys.argv[1:]))
"""
KILLS = 4


def start_fake_serve(data: Path, log: Path) -> tuple[subprocess.Popen, str]:
    """`stylelayer serve` (its real start-up and store, the fake engine) in its own process; (process, URL)."""
    repo = Path(__file__).resolve().parents[2]
    paths = [repo / "server", repo / "plugins" / "common", repo / "tests" / "protocol", repo / "tests"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, paths))}
    argv = ["serve", "--port", "0", "--device", "cpu", "--data-dir", str(data), "--styles-dir", str(data.parent / "s")]
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-u", "-c", SERVE_FAKE, *argv], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if match := re.search(r"listening on (http://127\.0\.0\.1:\d+)", log.read_text()):
            return proc, match.group(1)
        assert proc.poll() is None, log.read_text()
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"the server did not start: {log.read_text()}")


def traffic(
    client: stylelayer_client.StylelayerClient,
    told: dict[str, dict],
    results: dict[str, bytes],
    killed: threading.Event,
    errors: list[Exception],
) -> None:
    """Submit jobs and poll every known one until the server is killed: what the client was told. Anything that
    goes wrong before the kill lands in `errors` (after it, a broken request is expected)."""
    rng = random.Random(len(told))
    try:
        while not killed.is_set():
            if sum(s["state"] in ("queued", "running") for s in told.values()) < 4:
                size = rng.randrange(16, 48)
                job_id = client.submit(
                    png_bytes(gradient(size, size - 4)), STYLE, params={"iterations": rng.randrange(5, 40)}
                )
                told[job_id] = {"state": "queued"}
            for job_id, status in list(told.items()):
                if status["state"] in ("queued", "running"):
                    status = told[job_id] = client.status(job_id)
                    if status["state"] == "done":
                        results[job_id] = client.result(job_id)
    except Exception as exc:  # noqa: BLE001 - reported to the test unless the kill explains it
        if not killed.is_set():
            errors.append(exc)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="SIGKILL is POSIX-only")
def test_kill_9_during_writes_in_a_loop(tmp_path, storage, cases, request) -> None:
    """`stylelayer serve` killed with SIGKILL at a random moment while jobs are submitted, run, finish and are
    written, again and again: every start succeeds (the database is never damaged), no job the client was told
    about is lost, every result seen done comes back byte for byte, and the store agrees with the client."""
    data = tmp_path / "data"
    told: dict[str, dict] = {}
    results: dict[str, bytes] = {}
    rng = random.Random(18)
    for kill in range(KILLS + 1):
        proc, url = start_fake_serve(data, tmp_path / f"serve{kill}.log")
        client = stylelayer_client.StylelayerClient(url, timeout=10)
        for job_id, before in told.items():  # after the restart: nothing the client was told is lost
            now = client.status(job_id)
            if before["state"] in ("done", "failed", "cancelled"):
                assert now["state"] == before["state"], (job_id, before, now)
            storage.jobs += 1
        for job_id, png in results.items():
            same = client.result(job_id) == png
            storage.lost += not same
            assert same, f"the result of {job_id} changed or was lost"
        if kill == KILLS:
            break
        killed, errors = threading.Event(), list[Exception]()
        worker = threading.Thread(target=traffic, args=(client, told, results, killed, errors))
        worker.start()
        time.sleep(rng.uniform(0.4, 1.5))
        killed.set()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        worker.join(20)
        assert errors == [], errors
        storage.faults += 1
    try:  # the last start: let every job end, then the store must say what the client is told
        for job_id in told:
            told[job_id] = wait_terminal(client, job_id, timeout=60)
        rows = store_rows(data)
        for job_id, status in told.items():
            assert rows[job_id][0] == status["state"], (job_id, rows[job_id], status)
        assert "running" not in {state for state, _ in rows.values()}
        logs = "".join((tmp_path / f"serve{k}.log").read_text() for k in range(KILLS + 1))
        assert "Traceback" not in logs
        quarantined = len(list((data / "quarantine").iterdir())) if (data / "quarantine").exists() else 0
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(20)
    done = sum(s["state"] == "done" for s in told.values())
    request.node.user_properties.append(
        (
            "figures",
            f"{KILLS} kills, {len(told)} jobs submitted ({done} done in the end), {len(results)} results seen done"
            f" before a kill and served unchanged after it, {quarantined} input files of unacknowledged"
            " submissions quarantined",
        )
    )
    cases(len(told))
