"""POST /v1/estimate, the speed the server learns from its jobs, progress and time left by work, and jobs whose
client stopped asking about them (abandon_after)."""

from __future__ import annotations

import threading
import time

import pytest
from protocol_helpers import FakeEngine, gradient, png_bytes, raw

from stylelayer.api import estimate as est
from stylelayer.api.app import DEFAULT_CONFIG
from stylelayer.core.memory import BudgetError, LevelPlan
from stylelayer.limits import MAX_PIXELS, MAX_SIZE, MAX_UPLOAD_BYTES

CONTENT = png_bytes(gradient(40, 30))
STYLE = png_bytes(gradient(8, 8))


def plan(width: int, height: int) -> LevelPlan:
    return LevelPlan(width, height, tile=None, halo=0, optimizer="lbfgs", history=100, estimate=0)


def test_estimate_before_any_job_is_the_device_default(server) -> None:
    _, client = server
    answer = client.estimate(1200, 800, {"size": 600, "iterations": 40})
    rate = est.default_seconds_per_unit("cpu")
    assert answer["fits"] is True and answer["problem"] is None
    assert answer["speed"] == {"seconds_per_unit": rate, "source": "default", "precision": "fp32"}
    assert answer["device"] == "cpu"
    assert answer["work_size"] == [600, 400] and answer["iterations"] == 40
    assert answer["seconds"] == pytest.approx(41 * 600 * 400 * rate, abs=0.1)  # (iterations + 1) x work x speed
    assert answer["levels"] == [
        {"width": 600, "height": 400, "iterations": 40, "tiled": False, "plan": plan(600, 400).describe()}
    ]


def test_estimate_learns_the_speed_from_a_finished_job(make_server) -> None:
    """After one job the estimate for the same job is that job's own time; before, a default."""
    engine = FakeEngine(step_delay=0.1)
    _, client = make_server(engine)
    params = {"size": 40, "iterations": 40, "seed": 1}
    before = client.estimate(40, 30, params)
    started = time.monotonic()
    client.run_job(CONTENT, STYLE, params=params, poll_interval=0.05)
    took = time.monotonic() - started
    after = client.estimate(40, 30, params)
    assert before["speed"]["source"] == "default" and after["speed"]["source"] == "measured"
    assert after["seconds"] == pytest.approx(took, rel=0.25)  # the job's own elapsed time, within polling slack
    units = 41 * 40 * 30  # (iterations + 1) x work size; the answer's seconds are rounded to 0.1 s
    assert after["seconds"] == pytest.approx(after["speed"]["seconds_per_unit"] * units, abs=0.051)


def test_estimate_before_any_job_uses_the_calibrated_speed(make_server, server_workers) -> None:
    """A server whose engine timed itself at start-up (StyleEngine.calibrate) estimates with that, until a job."""
    if server_workers is not None:
        pytest.skip("Ray actors load their engines after the server starts and do not calibrate (serve.py)")
    engine = FakeEngine()
    engine.seconds_per_unit = {"fp32": 3e-6}
    _, client = make_server(engine)
    answer = client.estimate(1200, 800, {"size": 600, "iterations": 40})
    assert answer["speed"] == {"seconds_per_unit": 3e-6, "source": "calibrated", "precision": "fp32"}
    assert answer["seconds"] == pytest.approx(41 * 600 * 400 * 3e-6, abs=0.1)


def test_a_plan_over_the_memory_budget_says_so(make_server) -> None:
    engine = FakeEngine()
    engine.plan_error = BudgetError("a 8000x6000 level needs at least 9 GB ...: raise --max-memory, or lower the size")
    _, client = make_server(engine)
    answer = client.estimate(8000, 6000, {"size": 0})
    assert answer["fits"] is False and answer["seconds"] is None and answer["levels"] == []
    assert answer["problem"].startswith("a 8000x6000 level needs")


def test_a_content_too_thin_to_run_says_so(make_server) -> None:
    """The engine refuses to plan a strip it could not run (engine.working_size): an answer, not a 500."""
    engine = FakeEngine()
    engine.plan_error = ValueError("content is 1x512: too thin to stylise (its short side would need 16 px, ...)")
    _, client = make_server(engine)
    answer = client.estimate(1, 512, {"size": 512})
    assert answer["fits"] is False and answer["seconds"] is None and "too thin" in answer["problem"]


def test_texture_mode_needs_no_content_size(server) -> None:
    _, client = server
    answer = client.estimate(None, None, {"mode": "texture", "output_size": [64, 48], "iterations": 5})
    assert answer["work_size"] == [64, 48]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"width": 10, "height": 10, "params": {"size": "64"}}, "size"),
        ({"width": 10, "height": 0}, "height"),
        ({"width": 10.5, "height": 10}, "width"),
        ({"width": True, "height": 10}, "width"),
        ({"params": {}}, "width"),
        ({"width": 10, "height": 10, "colour": "red"}, "colour"),
        ({"width": 10_000, "height": 10_000}, "width"),  # over the pixel limit
    ],
)
def test_bad_estimate_requests_name_the_field(server, body, field) -> None:
    import json

    srv, _ = server
    status, _, data = raw(
        srv.url + "/v1/estimate", "POST", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    error = json.loads(data)["error"]
    assert status == 400 and error["field"] == field, error


def test_estimate_needs_a_json_object(server) -> None:
    srv, _ = server
    status, _, data = raw(srv.url + "/v1/estimate", "POST", b"[1]", {"Content-Type": "application/json"})
    assert status == 400 and b"send a JSON object" in data


def test_units_done_follow_levels_and_tiles() -> None:
    """Progress by work: a finer level's iteration weighs its pixels; a tiled iteration's tiles count in parts."""
    cost = est.JobCost([(plan(100, 100), 10), (plan(200, 200), 5)], "fp32")
    coarse, fine = 100 * 100, 200 * 200
    assert cost.units == 11 * coarse + 6 * fine
    assert cost.units_done(0, 1, 0, 0) == coarse  # the set-up of the first level
    assert cost.units_done(10, 1, 0, 0) == 11 * coarse
    assert cost.units_done(12, 2, 0, 0) == 11 * coarse + 3 * fine
    assert cost.units_done(12, 2, 3, 4) == 11 * coarse + 3.75 * fine
    assert cost.units_done(15, 2, 0, 0) == cost.units
    fraction, eta = est.progress_and_eta(cost, 10, 1, 0, 0, elapsed=11.0)
    assert fraction == pytest.approx(11 * coarse / cost.units)
    assert eta == pytest.approx(11.0 * (cost.units - 11 * coarse) / (11 * coarse))  # much more than 5 iterations
    assert est.progress_and_eta(cost, 0, 0, 0, 0, elapsed=1.0) == (None, None)


def test_short_jobs_do_not_teach_the_speed() -> None:
    meter = est.SpeedMeter()
    assert not meter.record(1e6, est.MIN_TIMED_S / 2, "cpu", "fp32")  # mostly fixed costs
    assert meter.seconds_per_unit("cpu", "fp32") is None
    meter.record(1e6, 10.0, "cpu", "fp32")
    meter.record(1e6, 20.0, "cpu", "fp32")  # the newer job weighs more
    rate = meter.seconds_per_unit("cpu", "fp32")
    assert rate is not None and 1e-5 < rate < 2e-5


def test_each_precision_and_device_has_its_own_speed() -> None:
    """bf16 runs about twice as fast as fp32 on a CPU with AVX512-BF16: one figure for both put one of them off by
    half; a measurement on another device is dropped."""
    meter = est.SpeedMeter()
    meter.record(1e6, 10.0, "cpu", "bf16")
    assert meter.seconds_per_unit("cpu", "bf16") == pytest.approx(1e-5)
    assert meter.seconds_per_unit("cpu", "fp32") is None
    meter.record(1e6, 20.0, "cpu", "fp32")
    assert meter.seconds_per_unit("cpu", "fp32") == pytest.approx(2e-5)
    assert meter.seconds_per_unit("cpu", "bf16") == pytest.approx(1e-5)
    assert meter.seconds_per_unit("cuda", "bf16") is None
    restored = est.SpeedMeter()
    restored.restore(meter.state())
    assert restored.state() == meter.state()
    meter.record(1e6, 5.0, "cuda", "bf16")
    assert meter.seconds_per_unit("cpu", "fp32") is None and meter.seconds_per_unit("cuda", "bf16") == 5e-6


def test_the_estimate_uses_the_speed_of_the_jobs_precision(make_server, server_workers) -> None:
    """An fp32 job on an engine calibrated at 1e-6 (bf16) and 2e-6 (fp32) s per unit is estimated at the latter;
    'auto' at what the engine runs it in."""
    if server_workers is not None:
        pytest.skip("Ray actors load their engines after the server starts and do not calibrate (serve.py)")
    engine = FakeEngine()
    engine.seconds_per_unit = {"bf16": 1e-6, "fp32": 2e-6}
    engine.auto_precision = "bf16"
    _, client = make_server(engine)
    units = 41 * 600 * 400
    fp32 = client.estimate(1200, 800, {"size": 600, "iterations": 40, "precision": "fp32"})
    auto = client.estimate(1200, 800, {"size": 600, "iterations": 40})
    assert fp32["speed"] == {"seconds_per_unit": 2e-6, "source": "calibrated", "precision": "fp32"}
    assert auto["speed"] == {"seconds_per_unit": 1e-6, "source": "calibrated", "precision": "bf16"}
    assert fp32["seconds"] == pytest.approx(units * 2e-6, abs=0.1)
    assert auto["seconds"] == pytest.approx(units * 1e-6, abs=0.1)


def test_running_job_reports_progress_by_work(make_server) -> None:
    engine = FakeEngine()
    engine.gate = threading.Event()
    _, client = make_server(engine)
    job_id = client.submit(CONTENT, STYLE, params={"iterations": 4})
    assert engine.started.wait(5)
    queued = client.status(job_id)
    assert queued["state"] == "running" and queued["progress"] is None and queued["eta_s"] is None
    engine.gate.set()
    deadline = time.monotonic() + 10
    while (status := client.status(job_id))["state"] != "done":
        assert time.monotonic() < deadline
    assert status["progress"] == 1.0 and status["eta_s"] == 0.0


def test_a_job_nobody_asks_about_is_cancelled(make_server) -> None:
    """A client killed mid-job (GIMP's progress cancel kills the plug-in) stops asking: the job ends by itself."""
    engine = FakeEngine()
    engine.gate = threading.Event()
    srv, client = make_server(engine)
    job_id = client.submit(CONTENT, STYLE, params={"iterations": 3}, abandon_after=1)
    assert engine.started.wait(5)
    time.sleep(1.5)  # no status requests: the client is gone
    deadline = time.monotonic() + 10
    job = srv.app.extensions["stylelayer"].queue.get(job_id)
    while job.state != "cancelled":
        assert time.monotonic() < deadline, job.state
        time.sleep(0.05)
    status = client.status(job_id)
    assert status["error"]["code"] == "abandoned" and status["abandon_after"] == 1


def test_a_job_that_is_polled_is_not_abandoned(make_server) -> None:
    engine = FakeEngine(step_delay=0.05)
    _, client = make_server(engine)
    result = client.run_job(CONTENT, STYLE, params={"iterations": 40}, abandon_after=1, poll_interval=0.2)
    assert result.startswith(b"\x89PNG")  # ran 2 s, four times its abandon_after, polled all along


def test_limits_take_full_resolution_canvases() -> None:
    """8000x6000 (48 MP) is the largest canvas the plug-ins send; its RGBA PNG fits one request even as noise."""
    assert MAX_SIZE >= 8000 and MAX_PIXELS >= 8000 * 6000
    worst_png = 8000 * 6000 * 4 + 6000 + 8000 * 6000 * 4 // 16_000  # raw pixels, filter bytes, deflate's overhead
    assert DEFAULT_CONFIG["max_content_length"] == MAX_UPLOAD_BYTES > worst_png + 10 * 1024**2  # + the style


def test_an_upload_over_the_limit_is_refused_before_its_body_is_sent(server) -> None:
    """The default limit is checked from Content-Length: a 300 MB announcement gets its 413 with no body sent."""
    import socket
    from urllib.parse import urlsplit

    srv, _ = server
    parts = urlsplit(srv.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        sock.sendall(
            b"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=x\r\n"
            b"Content-Length: %d\r\n\r\n" % (300 * 1024**2)
        )
        reply = b""
        while chunk := sock.recv(65536):  # the server closes after its answer
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 413") and b'"too_large"' in reply


def test_the_estimate_counts_the_jobs_ahead(make_server) -> None:
    """A job running and one queued: the answer counts both and the time they keep a new job waiting, apart from
    the job's own time; once they are gone, no wait."""
    engine = FakeEngine(step_delay=0.05)
    _, client = make_server(engine)
    params = {"size": 40, "iterations": 40, "seed": 1}
    alone = client.estimate(40, 30, params)
    assert alone["jobs_ahead"] == 0 and alone["wait_seconds"] == 0
    running = client.submit(CONTENT, STYLE, params=params)
    assert engine.started.wait(5)
    queued = client.submit(CONTENT, STYLE, params=params)
    behind = client.estimate(40, 30, params)
    assert behind["jobs_ahead"] == 2 and behind["seconds"] == alone["seconds"]
    assert behind["wait_seconds"] >= alone["seconds"] - 0.1  # the queued job is this one: its time at least
    for job in (running, queued):
        client.cancel(job)
    deadline = time.monotonic() + 10
    while client.estimate(40, 30, params)["jobs_ahead"]:
        assert time.monotonic() < deadline, "cancelled jobs still counted"
        time.sleep(0.1)
