"""Scheduling across workers, the same for in-process workers and Ray actors: jobs run in parallel in arrival order,
clients take turns, a style goes back to the worker that has its Gram targets, and a worker lost under a job costs
only that job a restart. Fake engines in this process (tests/workers/test_ray_pool.py runs the real pool)."""

from __future__ import annotations

import io
import threading
import time

import pytest
from PIL import Image
from protocol_helpers import FakeEngine, gradient, info_as, png_bytes, submit_as

from stylelayer.api.job_queue import JobQueue
from stylelayer.api.job_store import JobStore
from stylelayer.api.workers import InProcessWorker, WorkerLost
from stylelayer.core.params import StyleParams

CONTENT = png_bytes(gradient())
STYLE_A = png_bytes(gradient(16, 16))
KEY = "scheduling-test-client"  # /v1/info names a worker's job only to the client that sent it
STYLE_B = png_bytes(gradient(12, 12))


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def gated() -> FakeEngine:
    engine = FakeEngine()
    engine.gate = threading.Event()
    return engine


def test_two_workers_run_the_first_two_jobs_at_once_and_the_third_waits(serve_workers) -> None:
    engines = [gated(), gated()]
    srv, client = serve_workers([InProcessWorker(engines[0], name="a"), InProcessWorker(engines[1], name="b")])
    ids = [submit_as(srv.url, KEY, CONTENT, STYLE_A, iterations=2, seed=i) for i in range(3)]
    wait_for(lambda: all(engine.started.is_set() for engine in engines))
    assert [client.status(i)["state"] for i in ids] == ["running", "running", "queued"]
    assert client.status(ids[2])["queue_position"] == 1
    workers = info_as(srv.url, KEY)["workers"]
    assert [(w["name"], w["kind"], w["state"], w["device"]) for w in workers] == [
        ("a", "in-process", "running", "cpu"),
        ("b", "in-process", "running", "cpu"),
    ]
    assert {w["job"] for w in workers} == set(ids[:2])
    assert {w["job"] for w in client.info()["workers"]} == {None}  # to their owner only (test_private_jobs.py)
    assert srv.app.extensions["stylelayer"].queue.get(ids[0]).client == "127.0.0.1"  # fairness is per address
    for engine in engines:
        engine.gate.set()
    wait_for(lambda: all(client.status(i)["state"] == "done" for i in ids))
    assert sorted(len(engine.calls) for engine in engines) == [1, 2]
    assert sum(w["jobs_done"] for w in client.info()["workers"]) == 3


def test_one_clients_many_jobs_do_not_starve_another(tmp_path) -> None:
    """Client a queues four jobs, then b two: b's first runs next, then the two alternate."""
    engine = gated()
    queue = JobQueue(engine=engine, store=JobStore(tmp_path / "jobs"))
    try:
        jobs = {}

        def submit(client: str, seed: int) -> None:
            jobs[seed] = queue.submit(
                gradient(), [gradient(16, 16)], StyleParams(iterations=1, seed=seed), client=client
            )

        submit("a", 1)
        assert engine.started.wait(5)
        for seed in (2, 3, 4):
            submit("a", seed)
        for seed in (11, 12):
            submit("b", seed)
        assert [queue.queue_position(jobs[seed]) for seed in (11, 2, 12, 3, 4)] == [1, 2, 3, 4, 5]
        engine.gate.set()
        wait_for(lambda: all(job.ended.is_set() for job in jobs.values()))
        assert [params.seed for _, _, params in engine.calls] == [1, 11, 2, 12, 3, 4]
    finally:
        queue.stop()


def test_a_style_goes_back_to_the_idle_worker_that_ran_it(serve_workers) -> None:
    """Without affinity the third job (style B again) would go to the worker idle longest, the one that ran A."""
    engines = [FakeEngine(), FakeEngine()]
    _, client = serve_workers([InProcessWorker(engines[0], name="a"), InProcessWorker(engines[1], name="b")])
    ran_on = []
    for style in (STYLE_A, STYLE_B, STYLE_B, STYLE_A):
        before = [len(engine.calls) for engine in engines]
        client.stylize(CONTENT, style, params={"iterations": 1})
        ran_on.append(next(i for i, engine in enumerate(engines) if len(engine.calls) > before[i]))
    assert ran_on == [0, 1, 1, 0]


class Dies(InProcessWorker):
    """A worker whose process 'dies' (WorkerLost) under its next `deaths` jobs; counts its replacements."""

    def __init__(self, engine: FakeEngine, deaths: int):
        super().__init__(engine, name="flaky")
        self.deaths = deaths
        self.replaced = 0

    def run(self, spec, report, should_cancel):
        if self.deaths:
            self.deaths -= 1
            raise WorkerLost("worker flaky was lost: killed")
        return super().run(spec, report, should_cancel)

    def replace(self, stopping) -> None:
        self.replaced += 1


def test_a_job_whose_worker_dies_runs_again_once_then_fails(serve_workers) -> None:
    worker = Dies(FakeEngine(), deaths=1)
    _, client = serve_workers([worker])
    job = client.submit(CONTENT, STYLE_A, params={"iterations": 3})
    wait_for(lambda: client.status(job)["state"] == "done")
    status = client.status(job)
    assert (status["restarts"], status["error"], worker.replaced) == (1, None, 1)
    assert [p["iteration"] for p in client.losses(job)["points"]] == [1, 2, 3]
    assert Image.open(io.BytesIO(client.result(job))).tobytes() == gradient().tobytes()

    worker.deaths = 2  # this job kills every worker it gets: it fails rather than killing them all in turn
    doomed = client.submit(CONTENT, STYLE_A, params={"iterations": 3})
    wait_for(lambda: client.status(doomed)["state"] == "failed")
    error = client.status(doomed)["error"]
    assert error["code"] == "worker_lost" and "lost 2 workers" in error["message"] and "reduce size" in error["message"]
    assert worker.replaced == 3
    after = client.submit(CONTENT, STYLE_A, params={"iterations": 1})
    wait_for(lambda: client.status(after)["state"] == "done")  # the replaced worker serves on


def test_a_worker_that_cannot_load_leaves_the_others_serving(serve_workers) -> None:
    def broken() -> FakeEngine:
        raise OSError("no such weights file")

    _, client = serve_workers([InProcessWorker(factory=broken, name="bad"), InProcessWorker(FakeEngine(), name="ok")])
    assert client.health()["engine"] == "ready"
    wait_for(lambda: client.info()["workers"][0]["state"] == "failed")
    bad, ok = client.info()["workers"]
    assert "no such weights file" in bad["error"] and ok["state"] == "idle"
    job = client.submit(CONTENT, STYLE_A, params={"iterations": 1})
    wait_for(lambda: client.status(job)["state"] == "done")


@pytest.mark.parametrize("given", [{"engine": FakeEngine(), "workers": [InProcessWorker(FakeEngine())]}, {}])
def test_the_queue_takes_exactly_one_way_to_run_jobs(given, tmp_path) -> None:
    store = JobStore(tmp_path / "jobs")
    with pytest.raises(ValueError, match="exactly one"):
        JobQueue(store=store, **given)
    store.close()
