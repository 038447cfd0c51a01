"""How long a job will take, before it runs and while it runs: the engine's plan for it times this server's speed.

Cost model: a level of `n` iterations whose plan processes `work` pixels per iteration (`memory.LevelPlan.work`:
halos and the Gram pass of tiled levels included) costs (n + 1) × work × seconds-per-unit; the extra iteration
stands for the level's set-up (content and style targets at that size). Seconds per unit are measured on this
server from finished jobs (elapsed / Σ (n + 1) × work), for each precision apart (bf16 runs about twice as fast as
fp32 on a CPU with AVX512-BF16); before the first job in a precision, what the engine timed when it loaded
(StyleEngine.calibrate), else a default for the device type.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ..core.memory import LevelPlan
from ..core.params import StyleParams

if TYPE_CHECKING:
    from PIL import Image

    from ..core.engine import Progress

# Seconds per unit (one pixel through one forward + backward pass) before this server has timed a job of its own.
# CPU: 1.1e-4 core-seconds per unit, measured with VGG19 at 256 and 512 px on a 2-core x86-64 VM (5.5e-5 s there),
# divided among this machine's cores (at most 16: convolutions stop scaling well beyond). GPU and Apple: rough
# figures for a current card (an H100 runs a 512x512 VGG19 iteration in a few milliseconds); the first finished
# job replaces them.
CPU_CORE_SECONDS_PER_UNIT = 1.1e-4
DEFAULT_SECONDS_PER_UNIT = {"cuda": 2e-8, "mps": 4e-7}
MIN_TIMED_S = 3.0  # shorter jobs are mostly fixed costs (decoding, encoding, warm-up): they teach nothing
MEMORY = 0.5  # weight of the speed measured so far against a newly finished job


@dataclass(frozen=True)
class JobCost:
    """What a job will do: each level's plan and iteration count, in coarse-to-fine order, and in which precision."""

    levels: list[tuple[LevelPlan, int]]
    precision: str

    @property
    def units(self) -> float:
        return sum((iterations + 1) * plan.work() for plan, iterations in self.levels)

    def units_done(self, iteration: int, level: int, tile: int, tiles: int) -> float:
        """Units behind a job that reported `iteration` (over all levels), `level` (1-based) and `tile` of `tiles`."""
        done, first = 0.0, 0
        for number, (plan, iterations) in enumerate(self.levels, 1):
            if number < level:
                done += (iterations + 1) * plan.work()
                first += iterations
            elif number == level:
                in_level = max(0, min(iterations, iteration - first)) + 1  # the set-up is behind once it reports
                if tiles > 0 and 0 < tile < tiles:
                    in_level += tile / tiles  # a tiled iteration reports each tile before the iteration ends
                done += min(in_level, iterations + 1) * plan.work()
        return done


def progress_and_eta(
    cost: JobCost, iteration: int, level: int, tile: int, tiles: int, elapsed: float
) -> tuple[float | None, float | None]:
    """(fraction done by work, seconds left at the job's own pace so far) of a running job; None before it reports."""
    total, done = cost.units, cost.units_done(iteration, level, tile, tiles)
    if iteration <= 0 or done <= 0 or total <= 0:
        return None, None
    fraction = min(1.0, done / total)
    return fraction, elapsed * (total - done) / done


def job_cost(engine: Any, content_size: tuple[int, int] | None, params: StyleParams) -> JobCost:
    """The plan of a job without running it (memory.BudgetError when a level cannot fit the memory budget)."""
    return JobCost(engine.plan_job(content_size, params), job_precision(engine, params))


def job_precision(engine: Any, params: StyleParams) -> str:
    """The precision `params` runs in on `engine` ('auto' resolved as the engine resolves it)."""
    return params.precision_on(str(engine.describe().get("auto_precision", "fp32")))


def device_type(device: object) -> str:
    """'cuda:0' -> 'cuda'."""
    return str(device).split(":", 1)[0]


def default_seconds_per_unit(device: str) -> float:
    if device == "cpu":
        return CPU_CORE_SECONDS_PER_UNIT / min(16, os.cpu_count() or 1)
    return DEFAULT_SECONDS_PER_UNIT.get(device, DEFAULT_SECONDS_PER_UNIT["mps"])


class SpeedMeter:
    """Seconds per unit on this server's device, per precision: measured from finished jobs (recent ones weigh
    more), else a default for the device type. Thread-safe: the worker records, request threads read.
    `state`/`restore` carry the measurement across a restart (the job store keeps it), for the device it was
    measured on only."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._measured: dict[str, tuple[float, float, int]] = {}  # precision -> (seconds, units, jobs), decayed
        self.device = ""  # the device type the measurement is of ('' before the first)

    def record(self, units: float, elapsed: float, device: str, precision: str) -> bool:
        """Count a finished job; False when it teaches nothing (too short) and nothing changed."""
        if units <= 0 or not math.isfinite(elapsed) or elapsed < MIN_TIMED_S:
            return False
        with self._lock:
            if device != self.device:  # another device: what was measured no longer applies
                self._measured, self.device = {}, device
            seconds, counted, jobs = self._measured.get(precision, (0.0, 0.0, 0))
            self._measured[precision] = (seconds * MEMORY + elapsed, counted * MEMORY + units, jobs + 1)
        return True

    def seconds_per_unit(self, device: str, precision: str) -> float | None:
        """What finished jobs in `precision` on `device` took per unit; None before the first."""
        with self._lock:
            seconds, units, _ = self._measured.get(precision, (0.0, 0.0, 0))
            return seconds / units if units > 0 and self.device == device else None

    def state(self) -> dict[str, Any]:
        with self._lock:
            measured = {p: {"seconds": s, "units": u, "jobs": j} for p, (s, u, j) in self._measured.items()}
            return {"device": self.device, "precisions": measured}

    def restore(self, state: dict[str, Any]) -> None:
        """Take back what `state` returned before a restart; anything malformed is ignored (defaults stay), and so
        is a file written before speeds were kept per precision."""
        try:
            device = str(state["device"])
            measured = {
                str(p): (float(m["seconds"]), float(m["units"]), int(m["jobs"]))
                for p, m in dict(state["precisions"]).items()
            }
        except (KeyError, TypeError, ValueError, AttributeError):
            return
        if all(math.isfinite(s) and math.isfinite(u) and s > 0 and u > 0 and j >= 0 for s, u, j in measured.values()):
            with self._lock:
                self._measured, self.device = measured, device


def engine_speed(engine: Any, speed: SpeedMeter, precision: str) -> tuple[float, str]:
    """(seconds per unit, source) of jobs in `precision` on `engine`: measured from finished jobs, else what the
    engine timed when it loaded (StyleEngine.calibrate), else the device type's default."""
    device = device_type(engine.describe().get("device", "cpu"))
    measured = speed.seconds_per_unit(device, precision)
    if measured is not None:
        return measured, "measured"
    calibrated = (getattr(engine, "seconds_per_unit", None) or {}).get(precision)
    if calibrated:
        return calibrated, "calibrated"
    return default_seconds_per_unit(device), "default"


class WaitingJob(Protocol):
    """What the queue's estimate reads of a job (`job.Job` has it; job.py imports this module, hence a protocol)."""

    state: str
    cost: JobCost | None
    content: Image.Image | None
    params: StyleParams
    progress: Progress


def queue_wait(engine: Any, jobs: Iterable[WaitingJob], speed: SpeedMeter, workers: int = 1) -> tuple[int, float]:
    """(jobs ahead, seconds until a new job would start): what the queued and running `jobs` have left at this
    server's speed in each job's precision, shared among `workers`. A running job's own pace so far counts once it
    has reported."""
    ahead, seconds = 0, 0.0
    for job in jobs:
        if job.state not in ("queued", "running"):
            continue
        ahead += 1
        cost = job.cost
        if cost is None:
            try:
                cost = job_cost(engine, job.content.size if job.content is not None else None, job.params)
            except ValueError:  # it will fail at once
                continue
        p = job.progress
        left = None
        if job.state == "running" and p.iteration > 0:
            left = progress_and_eta(cost, p.iteration, p.level, p.tile, p.tiles, p.elapsed)[1]
        seconds += left if left is not None else cost.units * engine_speed(engine, speed, cost.precision)[0]
    return ahead, seconds / max(1, workers)


def estimate_json(
    engine: Any,
    speed: SpeedMeter,
    content_size: tuple[int, int] | None,
    params: StyleParams,
    queue: tuple[int, float] = (0, 0.0),
) -> dict:
    """The answer of POST /v1/estimate (docs/openapi.yaml, schema Estimate); `queue` is queue_wait's answer."""
    precision = job_precision(engine, params)
    rate, source = engine_speed(engine, speed, precision)
    answer: dict[str, Any] = {
        "device": device_type(engine.describe().get("device", "cpu")),
        "speed": {"seconds_per_unit": rate, "source": source, "precision": precision},
        "jobs_ahead": queue[0],
        "wait_seconds": round(queue[1], 1),
    }
    try:
        cost = job_cost(engine, content_size, params)
    except ValueError as exc:  # memory.BudgetError, or a content too thin to stylise
        return {**answer, "fits": False, "problem": str(exc), "seconds": None, "iterations": None, "levels": []}
    last = cost.levels[-1][0]
    return {
        **answer,
        "fits": True,
        "problem": None,
        "seconds": round(cost.units * rate, 1),
        "iterations": sum(iterations for _, iterations in cost.levels),
        "work_size": [last.width, last.height],
        "memory_bytes": max(plan.estimate for plan, _ in cost.levels),
        "levels": [
            {
                "width": plan.width,
                "height": plan.height,
                "iterations": iterations,
                "tiled": plan.tiled,
                "plan": plan.describe(),
            }
            for plan, iterations in cost.levels
        ],
    }
