"""The job store's budget and its files: finished jobs go after their time, beyond the count or the disk budget,
and their files with them; file names come from validated ids only; a store folder serves one server; files no
job accounts for are set aside, never deleted."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from protocol_helpers import FakeEngine, gradient, png_bytes, stylelayer_client
from server_thread import ServerThread

from stylelayer.api import create_app, estimate
from stylelayer.api.job_store import JobStore, StorageError
from stylelayer.core.imaging import encode_png
from stylelayer.core.params import StyleParams

STYLE = png_bytes(gradient(16, 16))


def run(client, width: int = 40) -> str:
    job_id = client.submit(png_bytes(gradient(width, 30)), STYLE, params={"iterations": 1})
    deadline = time.monotonic() + 10
    while client.status(job_id)["state"] != "done":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return job_id


def files(data: Path) -> list[str]:
    return sorted(p.name for p in (data / "files").iterdir())


def gone(client, job_id: str) -> bool:
    with pytest.raises(stylelayer_client.StylelayerError) as err:
        client.status(job_id)
    return (err.value.status, err.value.code) == (404, "job_not_found")


def test_results_expire_after_their_time_with_their_files(make_server, tmp_path) -> None:
    _, client = make_server(FakeEngine(), data_dir=str(tmp_path / "d"), result_ttl=0.5)
    job_id = run(client)
    assert files(tmp_path / "d") == [f"{job_id}.result.png"] and client.result(job_id)
    time.sleep(0.7)
    assert gone(client, job_id) and files(tmp_path / "d") == []


def test_oldest_results_go_beyond_the_count(make_server, tmp_path) -> None:
    _, client = make_server(FakeEngine(), data_dir=str(tmp_path / "d"), keep_results=2)
    ids = [run(client) for _ in range(3)]
    client.info()  # any request prunes
    assert gone(client, ids[0]) and files(tmp_path / "d") == sorted(f"{i}.result.png" for i in ids[1:])


def test_oldest_results_go_beyond_the_disk_budget_but_the_newest_stays(make_server, tmp_path) -> None:
    # the fake engine's result: the content itself, with the job's parameters and seed in the PNG
    one = len(encode_png(gradient(40, 30), StyleParams(iterations=1), 424242))
    _, client = make_server(FakeEngine(), data_dir=str(tmp_path / "d"), result_bytes=int(one * 2.5))
    ids = [run(client) for _ in range(3)]
    assert all(client.status(i)["state"] == "done" for i in ids[1:]) and gone(client, ids[0])
    assert files(tmp_path / "d") == sorted(f"{i}.result.png" for i in ids[1:])
    big = run(client, width=400)  # alone over the budget: kept, the others make room
    assert client.result(big) and all(gone(client, i) for i in ids[1:])
    assert files(tmp_path / "d") == [f"{big}.result.png"]


def test_file_names_come_from_valid_ids_only(tmp_path) -> None:
    store = JobStore(tmp_path)
    try:
        for bad in ("../../etc/passwd", "0" * 31, "0" * 32 + "/x", "A" * 32, ""):
            with pytest.raises(ValueError, match="not a job id"):
                store.result(bad)
            with pytest.raises(ValueError, match="not a job id"):
                store.losses(bad)
        assert store.result("0" * 32) is None
    finally:
        store.close()


def test_files_of_no_job_are_quarantined_at_start_and_temporary_ones_removed(tmp_path, caplog) -> None:
    JobStore(tmp_path).close()  # the database exists: these files are of no job it knows
    orphans = ("f" * 32 + ".result.png", "f" * 32 + ".content", "notes.txt")
    for name in (*orphans, "0" * 32 + ".result.png.tmp", ".probe"):
        (tmp_path / "files" / name).write_bytes(b"x")
    store = JobStore(tmp_path)
    try:
        assert store.load() == [] and list((tmp_path / "files").iterdir()) == []
        assert sorted(p.name for p in (tmp_path / "quarantine").iterdir()) == sorted(orphans)
        assert "3 files that no job accounts for were moved to" in caplog.text
    finally:
        store.close()
    (tmp_path / "files" / orphans[0]).write_bytes(b"again")  # the same name once more: nothing is overwritten
    store = JobStore(tmp_path)
    try:
        store.load()
        assert (tmp_path / "quarantine" / orphans[0]).read_bytes() == b"x"
        assert (tmp_path / "quarantine" / f"{orphans[0]}.1").read_bytes() == b"again"
    finally:
        store.close()


def test_temporary_store_is_deleted_when_closed() -> None:
    store = JobStore(None)
    folder = store.directory
    assert (folder / "jobs.sqlite3").is_file()
    store.close()
    assert not folder.exists()


def test_a_refused_submission_leaves_no_files(make_server, tmp_path) -> None:
    engine = FakeEngine()
    engine.gate = threading.Event()
    _, client = make_server(engine, data_dir=str(tmp_path / "d"), max_queue=1)
    running = client.submit(png_bytes(gradient()), STYLE)
    assert engine.started.wait(5)
    queued = client.submit(png_bytes(gradient()), STYLE)
    with pytest.raises(stylelayer_client.StylelayerError) as err:
        client.submit(png_bytes(gradient()), [STYLE, STYLE])
    assert err.value.status == 429
    assert files(tmp_path / "d") == sorted(f"{i}.{n}" for i in (running, queued) for n in ("content", "style0"))
    engine.gate.set()


class LevelledEngine(FakeEngine):
    """The fake engine reporting a coarse-to-fine level and a plan, as the real one does."""

    def stylize(self, content, styles, params, progress=None, should_cancel=None, preview_every=0):
        def report(p):
            progress(dataclasses.replace(p, level=2, levels=2, plan="40x30: whole image, fake"))

        return super().stylize(content, styles, params, report if progress else None, should_cancel, preview_every)


def test_restart_keeps_every_field_of_a_job(tmp_path) -> None:
    """A finished job reads the same after a restart, field for field (level, levels, plan, preview_iteration and
    abandon_after included: they used to come back as 0, 0, '' and null)."""
    data = str(tmp_path / "data")
    srv = ServerThread(create_app({"data_dir": data}, engine=LevelledEngine())).start()
    try:
        client = stylelayer_client.StylelayerClient(srv.url, timeout=10)
        content = png_bytes(gradient())
        job_id = client.submit(content, STYLE, params={"iterations": 3}, preview_every=2, abandon_after=30)
        before = wait_done(client, job_id)
    finally:
        srv.stop()
    assert (before["level"], before["levels"], before["plan"], before["preview_iteration"]) == (
        2,
        2,
        "40x30: whole image, fake",
        3,
    ) and before["abandon_after"] == 30
    srv = ServerThread(create_app({"data_dir": data}, engine=FakeEngine())).start()
    try:
        assert stylelayer_client.StylelayerClient(srv.url, timeout=10).status(job_id) == before
    finally:
        srv.stop()


def test_a_restarted_job_keeps_abandon_after_and_is_cancelled_when_nobody_asks(tmp_path) -> None:
    """Issue 21: a job running or queued when the server stopped keeps its abandon_after; after the restart, the one
    nobody asks about is cancelled as abandoned (its client is gone), the one still polled runs to the end."""
    data = str(tmp_path / "data")
    engine = FakeEngine()
    engine.gate = threading.Event()
    srv = ServerThread(create_app({"data_dir": data}, engine=engine)).start()
    client = stylelayer_client.StylelayerClient(srv.url, timeout=10)
    forgotten = client.submit(png_bytes(gradient()), STYLE, params={"iterations": 2}, abandon_after=1)
    assert engine.started.wait(5)
    polled = client.submit(png_bytes(gradient()), STYLE, params={"iterations": 2}, abandon_after=1)
    srv.stop()

    again = FakeEngine()
    again.gate = threading.Event()
    srv = ServerThread(create_app({"data_dir": data}, engine=again)).start()
    try:
        client = stylelayer_client.StylelayerClient(srv.url, timeout=10)
        assert client.status(polled)["abandon_after"] == 1
        deadline = time.monotonic() + 10
        while srv.app.extensions["stylelayer"].queue.get(forgotten).state != "cancelled":  # no touch: not a poll
            assert time.monotonic() < deadline, "the restarted job nobody asks about was not cancelled"
            client.status(polled)
            time.sleep(0.1)
        status = client.status(forgotten)
        assert status["error"]["code"] == "abandoned" and status["abandon_after"] == 1
        again.gate.set()
        while (state := client.status(polled)["state"]) != "done":
            assert time.monotonic() < deadline and state in ("queued", "running")
            time.sleep(0.1)
    finally:
        srv.stop()


def test_measured_speed_survives_a_restart(tmp_path, monkeypatch) -> None:
    """Issue 21: the seconds per unit of work /v1/estimate uses are kept in the data folder (speed.json)."""
    monkeypatch.setattr(estimate, "MIN_TIMED_S", 0.0)  # the fake engine's jobs take milliseconds
    data = tmp_path / "data"
    srv = ServerThread(create_app({"data_dir": str(data)}, engine=FakeEngine(step_delay=0.01))).start()
    try:
        client = stylelayer_client.StylelayerClient(srv.url, timeout=10)
        assert client.estimate(40, 30)["speed"]["source"] == "default"
        wait_done(client, client.submit(png_bytes(gradient()), STYLE, params={"iterations": 3}))
        measured = client.estimate(40, 30)["speed"]
        assert measured["source"] == "measured"
    finally:
        srv.stop()
    assert json.loads((data / "speed.json").read_text())["precisions"]["fp32"]["jobs"] == 1
    srv = ServerThread(create_app({"data_dir": str(data)}, engine=FakeEngine())).start()
    try:
        assert stylelayer_client.StylelayerClient(srv.url, timeout=10).estimate(40, 30)["speed"] == measured
    finally:
        srv.stop()
    saved = json.loads((data / "speed.json").read_text())
    before_precisions = json.dumps({"device": "cpu", "seconds": 1.0, "units": 1e5, "jobs": 1}).encode()
    for written in (b"{not json", json.dumps({**saved, "device": "cuda"}).encode(), before_precisions):
        (data / "speed.json").write_bytes(written)
        srv = ServerThread(create_app({"data_dir": str(data)}, engine=FakeEngine())).start()
        try:
            speed = stylelayer_client.StylelayerClient(srv.url, timeout=10).estimate(40, 30)["speed"]
            assert speed["source"] == "default"
        finally:
            srv.stop()


def test_a_version_1_store_is_upgraded_in_place(tmp_path) -> None:
    """A data folder of the previous release (schema 1) keeps its jobs and results; the new fields default."""
    (tmp_path / "files").mkdir()
    db = sqlite3.connect(tmp_path / "jobs.sqlite3")
    db.executescript(V1_SCHEMA)
    job_id = "ab" * 16
    db.execute(
        "INSERT INTO jobs (id, state, sync, params, preview_every, inputs, created, finished, iteration, total,"
        " seed, result_bytes) VALUES (?, 'done', 0, '{}', 0, '{}', 1.0, 2.0, 5, 5, 7, 3)",
        (job_id,),
    )
    db.execute("PRAGMA user_version=1")
    db.commit()
    db.close()
    (tmp_path / "files" / f"{job_id}.result.png").write_bytes(b"png")
    store = JobStore(tmp_path)
    try:
        (stored,) = store.load()
        job = stored.job
        assert (job.id, job.state, job.seed, job.progress.level, job.progress.plan, job.abandon_after, job.owner) == (
            job_id,
            "done",
            7,
            0,
            "",
            0.0,
            "",
        )
        assert (job.progress.iteration, job.progress.total) == (5, 5)
        assert store.result(job_id) == b"png"
    finally:
        store.close()
    version = sqlite3.connect(tmp_path / "jobs.sqlite3").execute("PRAGMA user_version").fetchone()[0]
    assert version == 3


def test_a_failed_write_leaves_no_temporary_file(tmp_path, monkeypatch) -> None:
    store = JobStore(tmp_path)
    try:

        def broken_fsync(fd: int) -> None:
            raise OSError(errno.EIO, "Input/output error")

        monkeypatch.setattr(os, "fsync", broken_fsync)
        with pytest.raises(StorageError) as err:
            store.write_result("0" * 32, b"x" * 1000)
        assert err.value.code == "storage_error" and "Input/output error" in err.value.message
        assert list((tmp_path / "files").iterdir()) == []
    finally:
        monkeypatch.undo()
        store.close()


def wait_done(client, job_id: str) -> dict:
    deadline = time.monotonic() + 10
    while (status := client.status(job_id))["state"] != "done":
        assert time.monotonic() < deadline and status["state"] in ("queued", "running"), status
        time.sleep(0.01)
    return status


V1_SCHEMA = """
CREATE TABLE jobs (id TEXT PRIMARY KEY, state TEXT NOT NULL, sync INTEGER NOT NULL, params TEXT NOT NULL,
    preview_every INTEGER NOT NULL, inputs TEXT NOT NULL, created REAL NOT NULL, started REAL, finished REAL,
    iteration INTEGER NOT NULL DEFAULT 0, total INTEGER NOT NULL DEFAULT 0, elapsed REAL NOT NULL DEFAULT 0,
    losses TEXT NOT NULL DEFAULT '{}', error TEXT, seed INTEGER, restarts INTEGER NOT NULL DEFAULT 0,
    result_bytes INTEGER NOT NULL DEFAULT 0);
CREATE TABLE losses (job_id TEXT NOT NULL, iteration INTEGER NOT NULL, losses TEXT NOT NULL,
    PRIMARY KEY (job_id, iteration)) WITHOUT ROWID;
"""
