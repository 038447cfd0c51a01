"""Job life cycle through the real client and a real server: submit, poll, preview, result, cancel, queue."""

from __future__ import annotations

import io
import json
import threading
import time
import urllib.error
import urllib.request

import pytest
from PIL import Image
from protocol_helpers import FakeEngine, gradient, png_bytes, stylelayer_client

STYLE = png_bytes(gradient(16, 16))


def decode(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def wait_state(client, job_id: str, states: set[str], timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.status(job_id)
        if status["state"] in states:
            return status
        time.sleep(0.01)
    raise AssertionError(f"job {job_id} never reached {states}; last {status}")


def test_rgb_round_trip_is_exact_and_result_carries_params_and_seed(client) -> None:
    content = gradient(40, 30)
    job_id = client.submit(png_bytes(content), STYLE, params={"iterations": 4, "seed": 7, "style_weight": 5.0})
    status = wait_state(client, job_id, {"done"})
    assert status["iteration"] == status["total"] == 4
    assert status["seed"] == 7 and status["error"] is None and status["eta_s"] == 0.0
    result = decode(client.result(job_id))
    assert result.mode == "RGB" and result.size == (40, 30)
    assert result.tobytes() == content.tobytes()
    meta = json.loads(result.text["stylelayer:params"])
    assert meta["iterations"] == 4 and meta["style_weight"] == 5.0 and meta["seed"] == 7
    assert result.text["stylelayer:seed"] == "7"


def test_rgba_is_kept_exactly(client) -> None:
    content = gradient(33, 17, "RGBA")
    out = decode(client.run_job(png_bytes(content), STYLE, params={"iterations": 2}, poll_interval=0.01))
    assert out.mode == "RGBA"
    assert out.tobytes() == content.tobytes()


def test_random_seed_is_reported_in_status_and_metadata(client) -> None:
    job_id = client.submit(png_bytes(gradient()), STYLE, params={"iterations": 1})
    status = wait_state(client, job_id, {"done"})
    assert decode(client.result(job_id)).text["stylelayer:seed"] == str(status["seed"]) == "424242"


def test_run_job_reports_progress_and_previews(make_server) -> None:
    _, client = make_server(FakeEngine(step_delay=0.02))
    seen: list[tuple[dict, bytes | None]] = []
    out = client.run_job(
        png_bytes(gradient()),
        STYLE,
        params={"iterations": 20},
        preview_every=5,
        on_progress=lambda status, preview: seen.append((status, preview)),
        poll_interval=0.02,
    )
    assert decode(out).size == (40, 30)
    states = [s["state"] for s, _ in seen]
    assert states[-1] == "done" and "running" in states
    previews = [p for _, p in seen if p is not None]
    assert previews, "no preview was delivered while the job ran"
    assert decode(previews[0]).size == (40, 30)
    running = [s for s, _ in seen if s["state"] == "running" and s["iteration"] > 0]
    assert running and all(s["eta_s"] is not None and s["losses"]["total"] > 0 for s in running)


def test_preview_is_none_before_first_preview_then_result_when_done(make_server) -> None:
    engine = FakeEngine()
    engine.gate = threading.Event()
    _, client = make_server(engine)
    job_id = client.submit(png_bytes(gradient()), STYLE, params={"iterations": 3}, preview_every=1)
    assert engine.started.wait(5)
    assert client.preview(job_id) is None
    engine.gate.set()
    wait_state(client, job_id, {"done"})
    assert client.preview(job_id) == client.result(job_id)


def test_multiple_styles_and_blend_reach_the_engine(server, fake_engine) -> None:
    _, client = server
    styles = [png_bytes(gradient(8, 8)), png_bytes(gradient(9, 9)), png_bytes(gradient(10, 10))]
    client.stylize(png_bytes(gradient()), styles, params={"iterations": 1, "style_blend": [1, 2, 3]})
    _, got, params = fake_engine.calls[-1]
    assert [s.size for s in got] == [(8, 8), (9, 9), (10, 10)]
    assert params.style_blend == (1.0, 2.0, 3.0)


def test_texture_mode_needs_no_content(client) -> None:
    out = decode(client.stylize(None, STYLE, params={"mode": "texture", "output_size": [64, 32], "iterations": 1}))
    assert out.size == (64, 32)


def test_sync_stylize_returns_png_with_metadata(client) -> None:
    content = gradient(20, 10)
    out = decode(client.stylize(png_bytes(content), STYLE, params={"iterations": 2, "seed": 3}))
    assert out.tobytes() == content.tobytes() and out.text["stylelayer:seed"] == "3"


def test_cancel_while_queued_and_while_running(make_server) -> None:
    engine = FakeEngine()
    engine.gate = threading.Event()
    _, client = make_server(engine)
    running = client.submit(png_bytes(gradient()), STYLE, params={"iterations": 5})
    assert engine.started.wait(5)
    queued = client.submit(png_bytes(gradient()), STYLE, params={"iterations": 5})
    status = client.status(queued)
    assert status["state"] == "queued" and status["queue_position"] == 1
    assert client.status(running)["state"] == "running"

    assert client.cancel(queued)["state"] == "cancelled"  # immediate: it never started
    client.cancel(running)  # the engine sees should_cancel() at its next check
    assert wait_state(client, running, {"cancelled", "done", "failed"})["state"] == "cancelled"
    assert len(engine.calls) == 1, "the cancelled queued job must never reach the engine"
    for job_id in (queued, running):
        with pytest.raises(stylelayer_client.StylelayerError) as err:
            client.result(job_id)
        assert err.value.status == 409 and err.value.code == "job_cancelled"


def test_cancel_via_delete_and_cancel_of_finished_job_is_harmless(server) -> None:
    srv, client = server
    job_id = client.submit(png_bytes(gradient()), STYLE, params={"iterations": 1})
    wait_state(client, job_id, {"done"})
    request = urllib.request.Request(f"{srv.url}/v1/jobs/{job_id}", method="DELETE")
    with urllib.request.urlopen(request) as response:
        assert json.loads(response.read())["state"] == "done"
    assert decode(client.result(job_id)).size == (40, 30)


def test_run_job_should_cancel_cancels_on_server(make_server) -> None:
    engine = FakeEngine(step_delay=0.01)
    _, client = make_server(engine)
    calls = []

    def should_cancel() -> bool:
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(stylelayer_client.JobCancelled):
        client.run_job(
            png_bytes(gradient()), STYLE, params={"iterations": 500}, should_cancel=should_cancel, poll_interval=0.01
        )
    info = client.info()
    deadline = time.monotonic() + 5
    while info["jobs"]["cancelled"] != 1 and time.monotonic() < deadline:
        time.sleep(0.01)
        info = client.info()
    assert info["jobs"]["cancelled"] == 1 and info["jobs"]["running"] == 0


def test_queue_full_gives_429_and_queue_drains_afterwards(make_server) -> None:
    engine = FakeEngine()
    engine.gate = threading.Event()
    _, client = make_server(engine, max_queue=2)
    first = client.submit(png_bytes(gradient()), STYLE, params={"iterations": 1})
    assert engine.started.wait(5)
    waiting = [client.submit(png_bytes(gradient()), STYLE, params={"iterations": 1}) for _ in range(2)]
    with pytest.raises(stylelayer_client.StylelayerError) as err:
        client.submit(png_bytes(gradient()), STYLE, params={"iterations": 1})
    assert err.value.status == 429 and err.value.code == "queue_full"
    assert [client.status(j)["queue_position"] for j in waiting] == [1, 2]
    engine.gate.set()
    for job_id in [first, *waiting]:
        assert wait_state(client, job_id, {"done", "failed", "cancelled"})["state"] == "done"


def test_finished_jobs_are_forgotten_beyond_the_count_limit(make_server) -> None:
    _, client = make_server(FakeEngine(), keep_results=2)
    ids = []
    for _ in range(3):
        ids.append(client.submit(png_bytes(gradient()), STYLE, params={"iterations": 1}))
        wait_state(client, ids[-1], {"done"})
    with pytest.raises(stylelayer_client.StylelayerError) as err:
        client.status(ids[0])
    assert err.value.status == 404 and err.value.code == "job_not_found"
    assert client.status(ids[2])["state"] == "done"


def test_seed_above_2_to_the_53_is_kept_exactly(client) -> None:
    seed = 2**60 + 1  # a float would round it to 2**60
    job_id = client.submit(png_bytes(gradient()), STYLE, params={"iterations": 1, "seed": seed})
    status = wait_state(client, job_id, {"done"})
    assert status["seed"] == seed and status["params"]["seed"] == seed
    result = decode(client.result(job_id))
    assert result.text["stylelayer:seed"] == str(seed) and json.loads(result.text["stylelayer:params"])["seed"] == seed


def test_job_cancelled_in_its_first_iteration_reports_its_time(make_server) -> None:
    engine = FakeEngine()
    engine.gate = threading.Event()  # the job never finishes its first iteration
    _, client = make_server(engine)
    job_id = client.submit(png_bytes(gradient()), STYLE)
    assert engine.started.wait(5)
    time.sleep(0.2)
    client.cancel(job_id)
    status = wait_state(client, job_id, {"cancelled"})
    assert status["iteration"] == 0 and status["elapsed_s"] >= 0.2
    assert status["elapsed_s"] == pytest.approx(status["finished"] - status["started"], abs=0.01)


def test_queue_full_says_when_to_retry(make_server) -> None:
    engine = FakeEngine(step_delay=0.05)
    srv, client = make_server(engine, max_queue=1)
    running = client.submit(png_bytes(gradient()), STYLE, params={"iterations": 100})
    wait_state(client, running, {"running"})
    while client.status(running)["iteration"] < 2:
        time.sleep(0.01)
    client.submit(png_bytes(gradient()), STYLE, params={"iterations": 1})
    body, ctype = stylelayer_client._job_form(png_bytes(gradient()), STYLE, None, {}, None)
    request = urllib.request.Request(f"{srv.url}/v1/jobs", data=body, headers={"Content-Type": ctype})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=10)
    with err.value as response:
        assert response.code == 429 and json.loads(response.read())["error"]["code"] == "queue_full"
        retry = int(response.headers["Retry-After"])
    assert 1 <= retry <= 6  # about what the running job has left (~5 s), a whole number of seconds
    client.cancel(running)


class _DeafEngine(FakeEngine):
    """Finishes its job without ever asking whether to stop, once `release` is set (a worker that raced a cancel)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def stylize(self, content, styles, params, progress=None, should_cancel=None, preview_every=0):
        self.started.set()
        assert self.release.wait(30)
        return super().stylize(content, styles, params, progress, None, preview_every)


def test_a_cancel_the_engine_finished_before_seeing_still_cancels(make_server, server_workers) -> None:
    """The client's cancel decides, not a race with the job's last iteration: asked for while the job ran, the job
    ends cancelled even when the engine returned a result without having seen the request."""
    if server_workers is not None:
        pytest.skip("the deaf engine lives in this test module, which Ray actors do not import")
    engine = _DeafEngine()
    _, client = make_server(engine)
    job_id = client.submit(png_bytes(gradient(16, 12)), png_bytes(gradient(8, 8)), params={"iterations": 3})
    assert engine.started.wait(30)
    client.cancel(job_id)
    engine.release.set()
    deadline = time.monotonic() + 30
    while (status := client.status(job_id))["state"] not in ("done", "failed", "cancelled"):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert status["state"] == "cancelled"
    assert client.info()["jobs"]["done"] == 0
