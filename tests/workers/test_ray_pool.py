"""The Ray pool itself (`stylelayer serve --workers ray`): two actors run two jobs at once and /v1/info shows them,
an actor killed mid-job costs its job one restart and is replaced, the CLI starts a pool on a cluster, and nothing
imports Ray without it. The whole protocol suite also runs against the pool (tests/protocol, the [ray] cases)."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from PIL import Image
from protocol_helpers import FakeEngine, gradient, info_as, png_bytes, stylelayer_client, submit_as
from testimages import real_image

CONTENT = png_bytes(gradient())
STYLE = png_bytes(gradient(16, 16))
KEY = "ray-pool-test-client"  # /v1/info names a worker's job only to the client that sent it


def wait_for(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_importing_the_server_does_not_import_ray() -> None:
    """Without --workers ray, Ray is neither needed nor loaded (it takes seconds and memory)."""
    code = (
        "import sys, stylelayer.cli, stylelayer.api, stylelayer.api.serve, stylelayer.api.job_queue, "
        "stylelayer.api.workers; print(sorted(m for m in sys.modules if m.split('.')[0] == 'ray'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_two_actors_run_two_jobs_at_once_and_info_shows_them(serve_pool) -> None:
    engine = FakeEngine()
    engine.gate = threading.Event()
    srv, client = serve_pool(engine)
    ids = [submit_as(srv.url, KEY, CONTENT, STYLE, iterations=2, seed=i) for i in range(3)]
    wait_for(lambda: [client.status(i)["state"] for i in ids] == ["running", "running", "queued"])
    workers = info_as(srv.url, KEY)["workers"]
    assert [(w["name"], w["kind"], w["device"], w["state"], w["cpus"]) for w in workers] == [
        ("ray-0", "ray", "cpu", "running", 1.0),
        ("ray-1", "ray", "cpu", "running", 1.0),
    ]
    assert {w["job"] for w in workers} == set(ids[:2])
    pids = {w["pid"] for w in workers}
    assert len(pids) == 2 and os.getpid() not in pids and all(w["node"] for w in workers)
    engine.gate.set()
    wait_for(lambda: all(client.status(i)["state"] == "done" for i in ids))
    for job_id in ids:
        assert Image.open(io.BytesIO(client.result(job_id))).tobytes() == gradient().tobytes()
    assert len(engine.calls) == 3  # recorded by the actors' copies, here


def test_an_actor_killed_mid_job_costs_its_job_a_restart_and_is_replaced(serve_pool) -> None:
    """SIGKILL of the actor's process (as a crash or the OOM killer would): the job runs again from its first
    iteration on the other actor, the pool starts a new actor in place of the dead one, and the next job runs."""
    engine = FakeEngine()
    engine.gate = threading.Event()
    srv, client = serve_pool(engine)
    job = submit_as(srv.url, KEY, CONTENT, STYLE, iterations=3)
    wait_for(lambda: engine.started.is_set() and client.status(job)["state"] == "running")
    victim = next(w for w in info_as(srv.url, KEY)["workers"] if w["job"] == job)
    os.kill(victim["pid"], signal.SIGKILL)

    wait_for(lambda: client.status(job)["restarts"] == 1)
    status = client.status(job)
    assert status["state"] in ("queued", "running") and status["error"] is None
    survivor = next(w for w in client.info()["workers"] if w["name"] != victim["name"])
    wait_for(lambda: client.status(job)["state"] == "running")
    assert next(w for w in info_as(srv.url, KEY)["workers"] if w["job"] == job)["name"] == survivor["name"]

    def replaced() -> bool:
        worker = next(w for w in client.info()["workers"] if w["name"] == victim["name"])
        return worker["state"] == "idle" and worker["pid"] not in (None, victim["pid"])

    wait_for(replaced, timeout=90)  # a fresh process imports torch and loads the engine
    engine.gate.set()
    wait_for(lambda: client.status(job)["state"] == "done")
    assert [p["iteration"] for p in client.losses(job)["points"]] == [1, 2, 3]
    assert Image.open(io.BytesIO(client.result(job))).tobytes() == gradient().tobytes()
    following = [client.submit(CONTENT, STYLE, params={"iterations": 1}) for _ in range(2)]
    wait_for(lambda: all(client.status(i)["state"] == "done" for i in following))


@pytest.mark.slow
def test_serve_with_ray_workers_on_a_cluster_runs_a_real_job(ray_pool, tmp_path) -> None:
    """`stylelayer serve --workers ray --ray-address ADDRESS` joins a running cluster (the session's: its third
    CPU is free) and runs a real job on the real engine in its actor; Ctrl+C stops it and frees the actor."""
    import ray

    address = ray.get_runtime_context().gcs_address
    free = ray.available_resources().get("CPU", 0)
    code = "import sys; from stylelayer.cli import main; sys.exit(main(sys.argv[1:]))"
    argv = [
        "serve",
        "--port",
        "0",
        "--workers",
        "ray",
        "--ray-address",
        address,
        "--ray-workers",
        "1",
        "--cpus-per-worker",
        "1",
        "--device",
        "cpu",
        "--styles-dir",
        str(tmp_path / "styles"),
        "--data-dir",
        str(tmp_path / "data"),
    ]
    proc = subprocess.Popen(
        [sys.executable, "-u", "-c", code, *argv], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        line = proc.stdout.readline()
        assert "listening on http://" in line, line
        assert "1 Ray workers with 1 CPU and 0 GPU each" in proc.stdout.readline()
        client = stylelayer_client.StylelayerClient(line.strip().rsplit(" ", 1)[1], timeout=10)
        wait_for(lambda: client.health()["engine"] == "ready", timeout=120)
        content, style = png_bytes(real_image("tubingen", 32)), png_bytes(real_image("starry_night", 32))
        result = Image.open(io.BytesIO(client.stylize(content, style, params={"size": 32, "iterations": 2})))
        assert result.size == real_image("tubingen", 32).size
        [worker] = client.info()["workers"]
        assert (worker["kind"], worker["device"], worker["jobs_done"]) == ("ray", "cpu", 1)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    wait_for(lambda: ray.available_resources().get("CPU", 0) >= free, timeout=30)  # its actor is gone


def test_serve_refuses_ray_flags_without_ray_workers(capsys) -> None:
    import argparse

    from stylelayer.api import serve

    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    for flags in (["--ray-workers", "2"], ["--cpus-per-worker", "2"], ["--workers", "ray", "--ray-workers", "0"]):
        assert serve.run(parser.parse_args(flags)) == 2
        assert flags[-2] in capsys.readouterr().err
