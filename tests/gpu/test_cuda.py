"""On a CUDA GPU: the server runs real jobs there, survives running out of GPU memory, and seeds reproduce.

Skipped where there is no GPU (CI has none); run on a GPU machine with `pytest tests/gpu`.
"""

from __future__ import annotations

import io
import sys

import pytest
import torch
from PIL import Image
from testimages import REPO, real_image

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

sys.path.insert(0, str(REPO / "plugins" / "common"))
from stylelayer_client import JobFailed, StylelayerClient  # noqa: E402


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def cuda_engine():
    from stylelayer.core.engine import StyleEngine

    return StyleEngine(device="cuda")


def test_server_on_gpu_runs_jobs_and_survives_out_of_memory(cuda_engine):
    from server_thread import ServerThread

    from stylelayer.api import create_app

    photo = real_image("tubingen")
    big = _png(photo.resize((2048, 1536), Image.Resampling.BICUBIC))
    content, style = _png(photo), _png(real_image("starry_night", 512))
    with ServerThread(create_app({}, engine=cuda_engine)) as server:
        client = StylelayerClient(server.url, timeout=60)
        assert client.info()["device"].startswith("cuda")
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(2**30 / total)  # pretend the GPU has 1 GiB
        try:
            with pytest.raises(JobFailed) as failed:
                client.run_job(
                    big, style, params={"size": 2048, "iterations": 5, "precision": "fp32"}, poll_interval=0.1
                )
            assert failed.value.code == "out_of_memory"
            assert "size" in str(failed.value)
        finally:
            torch.cuda.set_per_process_memory_fraction(1.0)
        result = client.run_job(content, style, params={"size": 512, "iterations": 20, "seed": 3}, poll_interval=0.1)
        img = Image.open(io.BytesIO(result))
        assert img.size == photo.size  # the result has the content's size, whatever the working size
        assert img.text["stylelayer:seed"] == "3"


def test_seed_reproduces_on_gpu(cuda_engine):
    from stylelayer.core.params import StyleParams

    content, style = real_image("tubingen", 256), real_image("starry_night", 256)
    params = StyleParams.from_dict({"size": 256, "iterations": 15, "init": "noise", "seed": 11})
    first = cuda_engine.stylize(content, [style], params)
    again = cuda_engine.stylize(content, [style], params)
    assert first.image.tobytes() == again.image.tobytes()
    assert first.history[-1]["total"] < 0.2 * first.history[0]["total"]


def test_lbfgs_steps_without_waiting_for_the_gpu():
    """Every quantity stays on the device: with sync debugging on 'error', any read back to the host would raise."""
    from stylelayer.core.lbfgs import LBFGS

    x = torch.randn(10_000, device="cuda")
    optimiser = LBFGS(x, 5)
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(12):  # past the ring's wrap
            optimiser.step(2 * x - 1)  # the gradient of |x|² - Σx
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert torch.allclose(x, torch.full_like(x, 0.5), atol=1e-4)


def test_whole_image_levels_replay_a_cuda_graph_with_the_eager_result(cuda_engine, monkeypatch):
    from stylelayer.core import steps
    from stylelayer.core.params import StyleParams

    captured = []
    capture = steps.LevelSteps._capture

    def spy(self):
        capture(self)
        captured.append(self.graph is not None)

    monkeypatch.setattr(steps.LevelSteps, "_capture", spy)
    content, style = real_image("tubingen", 256), real_image("starry_night", 256)
    params = StyleParams.from_dict({"size": 256, "iterations": 30, "seed": 5, "precision": "fp32"})
    graphed = cuda_engine.stylize(content, [style], params)
    assert captured == [True]
    monkeypatch.setattr(steps, "GRAPH_MAX_PIXELS", 0)
    eager = cuda_engine.stylize(content, [style], params)
    assert captured == [True]  # no second capture: the eager run did not use one
    # The same iterations, summed in another order (the eager run reads only the pairs stored so far): equal up to
    # rounding at first, then as close as two runs of a non-convex optimisation can stay.
    for a, b in zip(graphed.history[:5], eager.history[:5], strict=True):
        assert abs(a["total"] - b["total"]) <= 1e-4 * b["total"]
    assert abs(graphed.losses["total"] - eager.losses["total"]) <= 0.02 * eager.losses["total"]
