"""How long a job will take, before it runs and while it runs: the engine's plan for it times this server's speed.

Cost model: a level of `n` iterations whose plan processes `work` pixels per iteration (`memory.LevelPlan.work`:
halos and the Gram pass of tiled levels included) costs (n + 1) × work × seconds-per-unit; the extra iteration
stands for the level's set-up (content and style targets at that size). Seconds per unit are measured on this
server from finished jobs (elapsed / Σ (n + 1) × work); before the first one, a default for the device type.
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
    """What a job will do: each level's plan and iteration count, in coarse-to-fine order."""

    levels: list[tuple[LevelPlan, int]]

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
    return JobCost(engine.plan_job(content_size, params))


def device_type(device: object) -> str:
    """'cuda:0' -> 'cuda'."""
    return str(device).split(":", 1)[0]


def default_seconds_per_unit(device: str) -> float:
    if device == "cpu":
        return CPU_CORE_SECONDS_PER_UNIT / min(16, os.cpu_count() or 1)
    return DEFAULT_SECONDS_PER_UNIT.get(device, DEFAULT_SECONDS_PER_UNIT["mps"])


class SpeedMeter:
    """Seconds per unit on this server's device: measured from finished jobs (recent ones weigh more), else a
    default for the device type. Thread-safe: the worker records, request threads read. `state`/`restore` carry
    the measurement across a restart (the job store keeps it), for the device it was measured on only."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seconds = 0.0
        self._units = 0.0
        self.jobs = 0
        self.device = ""  # the device type the measurement is of ('' before the first)

    def record(self, units: float, elapsed: float, device: str = "") -> bool:
        """Count a finished job; False when it teaches nothing (too short) and nothing changed."""
        if units <= 0 or not math.isfinite(elapsed) or elapsed < MIN_TIMED_S:
            return False
        with self._lock:
            if device and device != self.device:  # another device: what was measured no longer applies
                self._seconds, self._units, self.jobs, self.device = 0.0, 0.0, 0, device
            self._seconds = self._seconds * MEMORY + elapsed
            self._units = self._units * MEMORY + units
            self.jobs += 1
        return True

    def seconds_per_unit(self, device: str) -> tuple[float, str]:
        """(seconds per unit, 'measured' or 'default')."""
        with self._lock:
            if self._units > 0 and self.device in ("", device):
                return self._seconds / self._units, "measured"
        return default_seconds_per_unit(device), "default"

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {"device": self.device, "seconds": self._seconds, "units": self._units, "jobs": self.jobs}

    def restore(self, state: dict[str, Any]) -> None:
        """Take back what `state` returned before a restart; anything malformed is ignored (defaults stay)."""
        try:
            seconds, units, jobs = float(state["seconds"]), float(state["units"]), int(state["jobs"])
            device = str(state["device"])
        except (KeyError, TypeError, ValueError):
            return
        if all(math.isfinite(v) and v >= 0 for v in (seconds, units)) and seconds > 0 and units > 0:
            with self._lock:
                self._seconds, self._units, self.jobs, self.device = seconds, units, max(0, jobs), device


def engine_speed(engine: Any, speed: SpeedMeter) -> tuple[float, str]:
    """(seconds per unit, source) for `engine`: measured from finished jobs, else what the engine timed when it
    loaded (StyleEngine.calibrate), else the device type's default."""
    rate, source = speed.seconds_per_unit(device_type(engine.describe().get("device", "cpu")))
    calibrated = getattr(engine, "seconds_per_unit", None)
    if source == "default" and calibrated:
        return calibrated, "calibrated"
    return rate, source


class WaitingJob(Protocol):
    """What the queue's estimate reads of a job (`job.Job` has it; job.py imports this module, hence a protocol)."""

    state: str
    cost: JobCost | None
    content: Image.Image | None
    params: StyleParams
    progress: Progress


def queue_wait(engine: Any, jobs: Iterable[WaitingJob], rate: float, workers: int = 1) -> tuple[int, float]:
    """(jobs ahead, seconds until a new job would start): what the queued and running `jobs` have left at `rate`
    seconds per unit, shared among `workers`. A running job's own pace so far counts once it has reported."""
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
        if job.state == "running" and p.iteration > 0:
            left = progress_and_eta(cost, p.iteration, p.level, p.tile, p.tiles, p.elapsed)[1]
            seconds += left if left is not None else cost.units * rate
        else:
            seconds += cost.units * rate
    return ahead, seconds / max(1, workers)


def estimate_json(
    engine: Any,
    speed: SpeedMeter,
    content_size: tuple[int, int] | None,
    params: StyleParams,
    queue: tuple[int, float] = (0, 0.0),
) -> dict:
    """The answer of POST /v1/estimate (docs/openapi.yaml, schema Estimate); `queue` is queue_wait's answer."""
    device = device_type(engine.describe().get("device", "cpu"))
    rate, source = engine_speed(engine, speed)
    answer: dict[str, Any] = {
        "device": device,
        "speed": {"seconds_per_unit": rate, "source": source},
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
