"""The protocol with the real engine at a tiny size: real VGG, real images, alpha kept, Gram cache used."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from protocol_helpers import png_bytes
from testimages import real_image

from stylelayer.core.engine import StyleEngine


@pytest.fixture(scope="module")
def engine() -> StyleEngine:
    return StyleEngine(weights="caffe", device="cpu")


def test_real_engine_job_through_the_client(make_server, engine) -> None:
    _, client = make_server(engine)
    content = real_image("tubingen", 48, "RGBA")
    alpha = Image.linear_gradient("L").resize(content.size)
    content.putalpha(alpha)
    style = png_bytes(real_image("starry_night", 48))
    params = {"size": 48, "iterations": 3, "seed": 5}
    seen = []
    out = client.run_job(
        png_bytes(content),
        style,
        params=params,
        preview_every=1,
        poll_interval=0.05,
        on_progress=lambda status, preview: seen.append(status),
    )
    image = Image.open(io.BytesIO(out))
    assert image.mode == "RGBA" and image.size == content.size
    assert image.getchannel("A").tobytes() == alpha.tobytes()
    assert image.convert("RGB").tobytes() != content.convert("RGB").tobytes()  # it did change the pixels
    assert image.text["stylelayer:seed"] == "5" and '"iterations": 3' in image.text["stylelayer:params"]
    assert seen[-1]["state"] == "done" and seen[-1]["losses"]["total"] > 0

    before = client.info()["cache"]
    client.stylize(png_bytes(content), style, params={**params, "seed": 6})  # same style and size again
    after = client.info()["cache"]
    assert after["hits"] > before["hits"] and after["misses"] == before["misses"]
    info = client.info()
    assert info["device"] == "cpu" and info["weights"] == "caffe"


def test_a_jobs_json_counts_the_iterations_of_its_current_level(make_server, engine) -> None:
    """GET /v1/jobs/<id> says where a coarse-to-fine job is within its level: 4 iterations at 32 px, then 2 at 64."""
    _, client = make_server(engine)
    content = png_bytes(real_image("tubingen", 64))
    style = png_bytes(real_image("starry_night", 48))
    seen: list[dict] = []
    client.run_job(
        content,
        style,
        params={"size": 64, "scales": 2, "iterations": 4, "seed": 5},
        poll_interval=0.02,
        on_progress=lambda status, preview: seen.append(status),
    )
    for status in seen:
        if status["state"] == "running" and status["iteration"] > 0:
            before = 0 if status["level"] == 1 else 4
            expected = (status["iteration"] - before, [4, 2][status["level"] - 1])
            assert (status["level_iteration"], status["level_iterations"]) == expected, status
    done = seen[-1]
    assert done["state"] == "done" and done == client.status(done["id"])  # what GET /v1/jobs/<id> answers
    assert (done["level"], done["levels"], done["total"]) == (2, 2, 6)
    assert (done["level_iteration"], done["level_iterations"]) == (2, 2)
