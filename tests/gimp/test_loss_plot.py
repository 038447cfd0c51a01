"""The GIMP plug-in's job as it runs it, without GIMP: the result, and the loss curves PNG when asked for."""

from __future__ import annotations

import io

import pytest
import stylelayer_logic as logic
from PIL import Image
from stylelayer_messages import PluginError
from stylelayer_params import build_params
from stylelayer_workflow import JobRunner, run_job
from testimages import real_image


def _png(name: str, size: int) -> bytes:
    buf = io.BytesIO()
    real_image(name, size).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("loss_plot", [True, False])
def test_the_job_returns_the_result_and_the_loss_curves_when_asked(client, loss_plot):
    params = build_params(iterations=3, strength=1.0, preserve_colors=False, size=32, seed=1)
    content, style = _png("tubingen", 64), _png("starry_night", 32)

    def work(on_progress, should_cancel):  # as the plug-in runs it (stylelayer_gimp._run_job)
        return run_job(client, content, style, None, params, on_progress, should_cancel, loss_plot=loss_plot)

    runner = JobRunner(work).start()
    assert runner.wait(120) and runner.error is None, repr(runner.error)
    result, plot = runner.result
    assert Image.open(io.BytesIO(result)).size == (64, 48)
    if loss_plot:
        assert Image.open(io.BytesIO(plot)).size == (800, 480)
    else:
        assert plot is None


def test_save_loss_plot_writes_the_file_or_says_which_it_could_not(tmp_path):
    logic.save_loss_plot(b"\x89PNG-bytes", str(tmp_path / "l.png"))
    assert (tmp_path / "l.png").read_bytes() == b"\x89PNG-bytes"
    with pytest.raises(PluginError, match="could not be saved to .*no-such-folder"):
        logic.save_loss_plot(b"x", str(tmp_path / "no-such-folder" / "l.png"))
