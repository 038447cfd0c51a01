"""Loss curves over HTTP: every iteration's losses as JSON (all, or after `since`) and drawn as a PNG by the same
function as the CLI's --loss-plot."""

from __future__ import annotations

import io
import threading
import time

import pytest
from PIL import Image
from protocol_helpers import FakeEngine, error_of, gradient, png_bytes, raw

from stylelayer.core.engine import Progress
from stylelayer.core.plot import loss_plot_png

STYLE = png_bytes(gradient(16, 16))


def wait_done(client, job_id: str) -> dict:
    deadline = time.monotonic() + 10
    while (status := client.status(job_id))["state"] != "done":
        assert time.monotonic() < deadline, status
        time.sleep(0.01)
    return status


def test_all_points_then_only_the_new_ones(client) -> None:
    job_id = client.submit(png_bytes(gradient()), STYLE, params={"iterations": 6})
    wait_done(client, job_id)
    every = client.losses(job_id)
    assert every["id"] == job_id and every["state"] == "done" and every["since"] == 0 and every["next"] == 6
    assert [p["iteration"] for p in every["points"]] == [1, 2, 3, 4, 5, 6]
    assert every["points"][2] == {"iteration": 3, "content": 1 / 3, "style": 2 / 3, "tv": 0.0, "total": 1.0}
    later = client.losses(job_id, since=4)
    assert later["points"] == every["points"][4:] and later["since"] == 4 and later["next"] == 6
    assert client.losses(job_id, since=6)["points"] == [] and client.losses(job_id, since=6)["next"] == 6


def test_points_grow_while_the_job_runs(make_server) -> None:
    engine = FakeEngine(step_delay=0.05)
    _, client = make_server(engine)
    job_id = client.submit(png_bytes(gradient()), STYLE, params={"iterations": 40})
    seen, since = [], 0
    deadline = time.monotonic() + 20
    while True:
        page = client.losses(job_id, since)
        seen += [p["iteration"] for p in page["points"]]
        since = page["next"]
        if page["state"] == "done":
            break
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert seen == list(range(1, 41))  # each point once, in order, across many incremental calls


class TiledEngine(FakeEngine):
    """Reports like the real engine on a tiled level: every tile with the previous iteration's number and losses."""

    def stylize(self, content, styles, params, progress=None, should_cancel=None, preview_every=0):
        def tiled_progress(p: Progress) -> None:
            before = {} if p.iteration == 1 else {"total": 3.0 / (p.iteration - 1)}
            for tile in range(1, 4):
                progress(Progress(p.iteration - 1, p.total, before, p.elapsed, tile=tile, tiles=3))
            progress(p)

        return super().stylize(content, styles, params, tiled_progress, should_cancel, preview_every)


def test_one_point_per_iteration_when_tiled(make_server) -> None:
    _, client = make_server(TiledEngine())
    job_id = client.submit(png_bytes(gradient()), STYLE, params={"iterations": 5})
    wait_done(client, job_id)
    points = client.losses(job_id)["points"]
    assert [p["iteration"] for p in points] == [1, 2, 3, 4, 5]
    assert [p["total"] for p in points] == [3.0 / i for i in range(1, 6)]


def test_plot_is_the_clis_plot_of_the_same_points(client) -> None:
    job_id = client.submit(png_bytes(gradient()), STYLE, params={"iterations": 8})
    wait_done(client, job_id)
    png = client.loss_plot(job_id)
    points = client.losses(job_id)["points"]
    assert png == loss_plot_png([{k: v for k, v in p.items() if k != "iteration"} for p in points])
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size == (800, 480)
    assert len(image.getcolors(maxcolors=100_000)) > 3  # axes, grid and curves, not a blank page


def test_queued_job_has_no_points_and_an_empty_plot(make_server) -> None:
    engine = FakeEngine()
    engine.gate = threading.Event()
    _, client = make_server(engine)
    client.submit(png_bytes(gradient()), STYLE)
    assert engine.started.wait(5)
    queued = client.submit(png_bytes(gradient()), STYLE)
    assert client.losses(queued) == {"id": queued, "state": "queued", "since": 0, "next": 0, "points": []}
    assert Image.open(io.BytesIO(client.loss_plot(queued))).size == (800, 480)
    engine.gate.set()


@pytest.mark.parametrize("since", ["-1", "x", "1.5", ""])
def test_bad_since_is_400(server, since) -> None:
    srv, client = server
    job_id = client.submit(png_bytes(gradient()), STYLE, params={"iterations": 1})
    status, _, body = raw(f"{srv.url}/v1/jobs/{job_id}/losses?since={since}")
    assert status == 400 and error_of(body)["field"] == "since"


class DivergingEngine(FakeEngine):
    """Iteration 2's losses are NaN and infinity, as a diverged optimisation reports them."""

    def stylize(self, content, styles, params, progress=None, should_cancel=None, preview_every=0):
        def diverging(p: Progress) -> None:
            if p.iteration == 2:
                p.losses = {"content": float("nan"), "style": float("inf"), "tv": 0.0, "total": float("nan")}
            progress(p)

        return super().stylize(content, styles, params, diverging, should_cancel, preview_every)


def test_non_finite_losses_are_null_and_the_plot_skips_them(make_server) -> None:
    _, client = make_server(DivergingEngine())
    job_id = client.submit(png_bytes(gradient()), STYLE, params={"iterations": 3})
    wait_done(client, job_id)
    points = client.losses(job_id)["points"]
    assert points[1] == {"iteration": 2, "content": None, "style": None, "tv": 0.0, "total": None}
    assert Image.open(io.BytesIO(client.loss_plot(job_id))).size == (800, 480)
