"""Cancel as the plug-in does it, without GIMP: JobRunner's flag reaches the client, which cancels the server job."""

from __future__ import annotations

import io
import time

import stylelayer_logic as logic
from PIL import Image
from stylelayer_params import build_params
from stylelayer_workflow import JobRunner
from testimages import real_image


def _png(name: str, size: int) -> bytes:
    buf = io.BytesIO()
    real_image(name, size).save(buf, "PNG")
    return buf.getvalue()


def _images():
    return _png("tubingen", 64), _png("starry_night", 64)


def test_cancel_while_running_stops_the_server_job(client_mod, client):
    content, style = _images()
    params = build_params(iterations=10_000, strength=1.0, preserve_colors=False, size=64, seed=1)

    def work(on_progress, should_cancel):
        return client.run_job(
            content,
            style_png=style,
            params=params,
            on_progress=on_progress,
            should_cancel=should_cancel,
            poll_interval=0.1,
        )

    runner = JobRunner(work, logic.PROGRESS_TITLE).start()  # as the plug-in words its progress
    deadline = time.monotonic() + 60
    while not (runner.fraction or 0) > 0 and time.monotonic() < deadline:
        assert not runner.wait(0.05), f"the job ended before it could be cancelled: {runner.error!r}"
    assert runner.fraction and runner.fraction < 1, "no progress reported within 60 s"
    assert "iteration" in runner.text
    started = time.monotonic()
    runner.cancel()
    assert runner.wait(30), "the job did not stop within 30 s of Cancel"
    assert isinstance(runner.error, client_mod.JobCancelled), repr(runner.error)
    assert runner.result is None
    assert time.monotonic() - started < 30

    # the server is free again: a short job after it completes
    quick = build_params(iterations=2, strength=1.0, preserve_colors=False, size=32, seed=1)
    assert Image.open(io.BytesIO(client.run_job(content, style_png=style, params=quick))).size == (64, 48)
