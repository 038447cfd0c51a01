"""The job store's budget and its files: finished jobs go after their time, beyond the count or the disk budget,
and their files with them; file names come from validated ids only; a store folder serves one server; files no
job accounts for are set aside, never deleted."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from protocol_helpers import FakeEngine, gradient, png_bytes, stylelayer_client

from stylelayer.api.job_store import JobStore
from stylelayer.imaging import encode_png
from stylelayer.params import StyleParams

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
