"""Bounded load on loopback: 8 client threads, 40 jobs, every job ends terminal with its own correct result."""

from __future__ import annotations

import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from PIL import Image
from protocol_helpers import FakeEngine, gradient, png_bytes

CLIENTS = 8
JOBS = 40


def test_eight_clients_forty_jobs_none_lost(make_server) -> None:
    _, client = make_server(FakeEngine(step_delay=0.002), max_queue=JOBS, keep_results=JOBS)
    outcomes: dict[int, str] = {}
    lock = threading.Lock()

    def one_job(n: int) -> None:
        content = gradient(16 + n, 12 + n % 5)  # a distinct size per job: a swapped result cannot pass
        if n % 10 == 3:  # some jobs are cancelled while queued or running
            job_id = client.submit(png_bytes(content), png_bytes(gradient(8, 8)), params={"iterations": 20})
            client.cancel(job_id)
            deadline = time.monotonic() + 30
            while (state := client.status(job_id)["state"]) not in ("done", "failed", "cancelled"):
                assert time.monotonic() < deadline
                time.sleep(0.01)
            outcome = state
        else:
            out = client.run_job(
                png_bytes(content), png_bytes(gradient(8, 8)), params={"iterations": 5, "seed": n}, poll_interval=0.02
            )
            image = Image.open(io.BytesIO(out))
            assert image.tobytes() == content.tobytes() and image.text["stylelayer:seed"] == str(n)
            outcome = "done"
        with lock:
            outcomes[n] = outcome

    started = time.monotonic()
    with ThreadPoolExecutor(CLIENTS) as pool:
        for future in [pool.submit(one_job, n) for n in range(JOBS)]:
            future.result(timeout=60)
    assert time.monotonic() - started < 60
    assert sorted(outcomes) == list(range(JOBS))
    assert all(outcomes[n] == ("cancelled" if n % 10 == 3 else "done") for n in range(JOBS))
    counts = client.info()["jobs"]
    assert counts == {"queued": 0, "running": 0, "done": JOBS - 4, "failed": 0, "cancelled": 4}
