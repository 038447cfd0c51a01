"""The memory budget: sizes parsed, levels planned whole or tiled, optimiser state shrunk, the budget honoured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from testimages import real_image

from stylelayer.cli import main
from stylelayer.core import engine as engine_module
from stylelayer.core.activation_cost import PROBE_MARGIN, PROBE_SIDE, activation_bytes, pass_scale
from stylelayer.core.device_memory import in_use, peak_private_rise
from stylelayer.core.engine import StyleEngine
from stylelayer.core.memory import HEADROOM, MAX_HISTORY, BudgetError, plan_level
from stylelayer.core.params import StyleParams
from stylelayer.core.sizes import parse_size

GB = 2**30


def test_parse_size():
    assert parse_size("4GB") == 4 * GB == parse_size("4g") == parse_size(" 4 GiB ")
    assert parse_size("512MB") == 512 * 2**20
    assert parse_size("2.5G") == int(2.5 * GB)
    assert parse_size(3 * GB) == 3 * GB
    for bad in ("four GB", "4XB", "", "-1GB"):
        with pytest.raises(ValueError, match="not a memory size"):
            parse_size(bad)
    with pytest.raises(ValueError, match="too small"):
        parse_size("100MB")


def _plan(width: int, height: int, budget: int, optimizer: str = "lbfgs"):
    return plan_level(
        width,
        height,
        budget=budget,
        deepest="conv5_1",
        content_layer="conv4_2",
        optimizer=optimizer,
        precision="fp32",
        pooling="avg",
        halo=80,
    )


def test_plans_whole_image_while_it_fits_then_tiles():
    small = _plan(512, 384, 8 * GB)
    assert not small.tiled and small.optimizer == "lbfgs" and small.history == MAX_HISTORY
    # 4000x3000 in 3 GB: tiled, with L-BFGS's history cut so its 2 x history image-sized vectors fit.
    big = _plan(4000, 3000, 3 * GB)
    assert big.tiled and big.tile is not None and big.tile % 16 == 0 and big.halo == 80
    assert big.optimizer == "lbfgs" and 3 <= big.history < 10
    assert big.estimate <= 3 * GB
    assert "4000x3000: tiles of" in big.describe() and "history" in big.describe()
    # 8000x6000 in 6 GB: L-BFGS's vectors alone would not leave room for a tile: Adam.
    huge = _plan(8000, 6000, 6 * GB)
    assert huge.tiled and huge.optimizer == "adam" and huge.history == 0 and huge.estimate <= 6 * GB
    with pytest.raises(BudgetError, match="raise --max-memory"):
        _plan(8000, 6000, 2 * GB)


def test_whole_image_estimate_grows_with_pixels_and_halves_in_bf16():
    fp32 = activation_bytes(1_000_000, "conv5_1", "fp32", "avg", grad=True)
    assert activation_bytes(4_000_000, "conv5_1", "fp32", "avg", grad=True) == pytest.approx(4 * fp32)
    assert activation_bytes(1_000_000, "conv5_1", "bf16", "avg", grad=True) < 0.65 * fp32
    assert activation_bytes(1_000_000, "conv5_1", "fp32", "avg", grad=False) < 0.5 * fp32


def test_engine_tiles_a_level_that_does_not_fit_its_budget(starry64):
    """A 400x300 job given room for only 60% of its untiled pass runs tiled, reports tiles, and converges.
    (Layers up to conv3_1 keep the halo at 16 px so that this takes seconds.)"""
    engine = StyleEngine(device="cpu")
    whole = activation_bytes(400 * 300, "conv3_1", "fp32", "avg", grad=True)
    engine.max_memory = in_use(engine.device) + int(0.6 * whole / HEADROOM)
    content = real_image("tubingen").resize((400, 300))
    params = StyleParams.from_dict(
        {
            "size": 0,
            "iterations": 2,
            "seed": 0,
            "precision": "fp32",
            "scales": 1,
            "style_layers": ["conv1_1", "conv2_1", "conv3_1"],
            "content_layer": "conv3_1",
        }
    )
    seen = []
    result = engine.stylize(content, [starry64], params, progress=seen.append)
    assert "tiles of" in result.plans[0], result.plans
    tile_reports = [p for p in seen if p.tile]
    assert tile_reports and tile_reports[-1].tile == tile_reports[-1].tiles  # both passes, every tile
    assert result.history[-1]["total"] < result.history[0]["total"]
    assert result.image.size == content.size


def test_cancel_is_honoured_between_tiles(starry64):
    engine = StyleEngine(device="cpu", tile_size=32)
    content = real_image("tubingen", 128)
    tiles_seen = []

    def cancel() -> bool:
        return len(tiles_seen) >= 3  # cancel in the middle of the first iteration

    params = StyleParams.from_dict({"size": 0, "iterations": 5, "precision": "fp32", "scales": 1})
    from stylelayer.core.engine import Cancelled

    with pytest.raises(Cancelled):
        engine.stylize(
            content, [starry64], params, progress=lambda p: p.tile and tiles_seen.append(p.tile), should_cancel=cancel
        )
    assert len(tiles_seen) == 3  # stopped at the next tile, not at the end of the iteration


def test_cli_max_memory_and_budget_errors(tmp_path, capsys):
    content, style = tmp_path / "c.png", tmp_path / "s.png"
    real_image("tubingen", 96).save(content)
    real_image("starry_night", 64).save(style)
    out = tmp_path / "out.png"
    code = main(
        [
            "run",
            str(content),
            str(style),
            "-o",
            str(out),
            "--size",
            "0",
            "--iterations",
            "1",
            "--device",
            "cpu",
            "--max-memory",
            "300MB",
        ]
    )
    assert code == 2
    assert "less than the" in capsys.readouterr().err  # the process itself holds more than 300 MB
    with pytest.raises(SystemExit) as exited:  # a flag's own error: argparse exits while parsing, as for --size x
        main(["run", str(content), str(style), "-o", str(out), "--iterations", "1", "--max-memory", "lots"])
    assert exited.value.code == 2 and "not a memory size" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="private memory is read from Linux's /proc")
@pytest.mark.parametrize("isa", [None, "SSE41"], ids=["this-cpu", "onednn-sse41"])
def test_peak_memory_stays_within_the_budget(isa):
    """A 1000x750 job (~2.7 GB untiled) in a fresh process capped at 1.4 GB: its private memory stays under it.

    Private memory, sampled every millisecond: shared library code also counts in RSS, by however much of it the page
    cache holds (a fresh clone's venv: 0.45 GB at start-up, 0.13 GB more during this job; this failed CI at 1.42 GB).
    Also with oneDNN limited to SSE4.1, where its convolutions fall back to im2col + GEMM and a pass takes ~1.6x the
    memory: the engine's probe must notice.
    """
    script = """
import json, os, sys, threading
from testimages import real_image
from stylelayer.core.engine import StyleEngine
from stylelayer.core.params import StyleParams
def private():
    with open("/proc/self/statm") as f:
        fields = f.read().split()
    return (int(fields[1]) - int(fields[2])) * os.sysconf("SC_PAGE_SIZE")
peak, done = [private()], threading.Event()
def sample():
    while not done.wait(0.001):
        peak.append(max(peak.pop(), private()))
budget = int(sys.argv[1])
engine = StyleEngine(device="cpu", max_memory=budget)
threading.Thread(target=sample, daemon=True).start()
params = StyleParams.from_dict({"size": 0, "iterations": 1, "seed": 0, "precision": "fp32", "scales": 1})
content = real_image("tubingen").resize((1000, 750))
result = engine.stylize(content, [real_image("starry_night", 500)], params)
done.set()
print(json.dumps({"plans": result.plans, "peak": peak[0], "loaded": private()}))
"""
    budget = int(1.4 * GB)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    if isa:
        env["ONEDNN_MAX_CPU_ISA"] = isa
    out = subprocess.run(
        [sys.executable, "-c", script, str(budget)], capture_output=True, text=True, check=True, env=env, timeout=900
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert "tiles of" in report["plans"][0]
    assert report["peak"] > report["loaded"] + 0.2 * GB  # the sampler saw the job's tiles
    assert report["peak"] <= budget, f"peak {report['peak'] / GB:.2f} GB over the {budget / GB:.2f} GB budget"


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="peak memory is read from Linux's /proc")
def test_peak_private_rise_counts_what_runs_inside_it():
    """200 MB touched inside the call are counted; what the process held before is not."""
    held = bytearray(300 * 2**20)  # resident before the call: not part of its peak
    held[::4096] = b"x" * len(held[::4096])

    def allocate() -> None:
        block = bytearray(200 * 2**20)
        block[::4096] = b"x" * len(block[::4096])

    peak = peak_private_rise(allocate)
    assert peak is not None and 190 * 2**20 <= peak <= 260 * 2**20, peak
    del held


def test_a_machine_with_heavier_passes_plans_smaller_tiles(monkeypatch):
    """Where the probe's pass takes twice what the model allows for, the engine plans with twice the bytes per
    pixel: smaller tiles for the same budget."""
    engine = StyleEngine(device="cpu")
    engine.max_memory = in_use(engine.device) + 2 * GB
    params = StyleParams.from_dict({"size": 0, "iterations": 5, "precision": "fp32", "scales": 1})

    def plan_with_probe(probe_bytes: int):
        monkeypatch.setattr(engine_module, "_pass_scales", {})
        monkeypatch.setattr(engine_module, "peak_private_rise", lambda run: probe_bytes)
        engine.pass_scale("fp32", "avg")  # measured where a job first plans; estimates then use it
        return engine.plan_job((1600, 1200), params)[0][0]

    model = activation_bytes(PROBE_SIDE**2, "conv5_1", "fp32", "avg", grad=True)
    as_modelled = plan_with_probe(int(0.5 * model / PROBE_MARGIN))
    heavier = plan_with_probe(int(2 * model / PROBE_MARGIN))
    assert pass_scale(int(2 * model / PROBE_MARGIN), "fp32", "avg") == pytest.approx(2, rel=1e-3)
    assert as_modelled.tiled and heavier.tiled
    assert heavier.tile < as_modelled.tile


def test_an_estimate_does_not_probe_while_a_job_may_run(monkeypatch):
    """plan_job (what /v1/estimate calls from a request thread) takes the scale measured so far and runs no pass:
    a probe beside a running job would count the job's tensors as its own."""
    engine = StyleEngine(device="cpu")
    engine.max_memory = in_use(engine.device) + 2 * GB
    probes = []
    monkeypatch.setattr(engine_module, "_pass_scales", {})
    monkeypatch.setattr(engine_module, "peak_private_rise", lambda run: probes.append(run) or 0)
    params = StyleParams.from_dict({"size": 0, "iterations": 5, "precision": "fp32", "scales": 1})
    engine.plan_job((1600, 1200), params)
    assert probes == []
    engine.pass_scale("fp32", "avg")  # where a job plans, it measures once ...
    engine.pass_scale("fp32", "avg")
    assert len(probes) == 1  # ... and only once per process


def test_history_no_longer_than_the_level_has_iterations():
    """A level of n iterations stores n - 1 pairs: the planner neither reserves nor allocates more."""
    full = _plan(4000, 3000, 100 * GB)
    short = plan_level(
        4000,
        3000,
        budget=100 * GB,
        deepest="conv5_1",
        content_layer="conv4_2",
        optimizer="lbfgs",
        precision="fp32",
        pooling="avg",
        halo=80,
        iterations=37,
    )
    assert not full.tiled and full.history == MAX_HISTORY
    assert not short.tiled and short.history == 36
    assert full.estimate - short.estimate == (MAX_HISTORY - 36) * 2 * 3 * 4000 * 3000 * 4
    # Even a one-iteration level keeps a (one-pair) L-BFGS and the whole image where that fits.
    one = plan_level(
        512,
        384,
        budget=8 * GB,
        deepest="conv5_1",
        content_layer=None,
        optimizer="lbfgs",
        precision="fp32",
        pooling="avg",
        halo=80,
        iterations=1,
    )
    assert not one.tiled and one.optimizer == "lbfgs" and one.history == 1
