"""One job as the server knows it: the `Job` record, carried whole from the engine's progress through the queue and
the store to the JSON clients see.

The engine's latest `Progress` is one value in it (`job.progress`), copied by no layer field by field: the workers
pass it on (`workers.ProgressUpdate`, also from a Ray actor), the store keeps it as one JSON column
(`progress_fields`, `progress_of`) and `progress_json` shows each of its fields. A field added to `Progress` therefore
reaches `GET /v1/jobs/<id>` and survives a restart with no change here or in the layers between.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from PIL import Image

from ..core.engine import Progress
from ..core.params import StyleParams
from ..core.regions import Region
from .estimate import JobCost

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
STATES = (QUEUED, RUNNING, DONE, FAILED, CANCELLED)
TERMINAL = frozenset({DONE, FAILED, CANCELLED})

LossPoint = tuple[int, dict[str, float | None]]  # (iteration, {"content": ..., "style": ..., "tv": ..., "total": ...})

# Progress fields clients see under another name, or not at all (a preview is served by its own route).
_SHOWN_AS = {"elapsed": "elapsed_s"}
_NOT_SHOWN = frozenset({"preview"})


def no_progress() -> Progress:
    """The progress of a job that has not reported yet: level 0 of 0 says it has not started."""
    return Progress(iteration=0, total=0, losses={}, elapsed=0.0, level=0, levels=0)


@dataclass
class Job:
    params: StyleParams
    preview_every: int
    content: Image.Image | None = None
    styles: list[Image.Image] = field(default_factory=list)
    regions: list[Region] = field(default_factory=list)  # regions.py: masks, each with its styles
    sync: bool = False  # a POST /v1/stylize job: its caller waits on the connection, so it dies with it
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    state: str = QUEUED
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    progress: Progress = field(default_factory=no_progress)  # the engine's latest report (its preview: previews.py)
    error: dict[str, str] | None = None
    seed: int | None = None
    restarts: int = 0  # times the job started over because the server stopped while it ran
    preview_iteration: int | None = None
    result_bytes: int = 0  # size of the stored result PNG once done
    cost: JobCost | None = None  # the engine's plan for the job, once it starts: for progress, time left and speed
    abandon_after: float = 0.0  # seconds without a look at the job after which it is cancelled (0: never)
    last_seen: float = field(default_factory=time.monotonic)  # when a client last asked about the job
    client: str = ""  # who sent it (remote address; '' for jobs restored at start): the unit of fairness
    owner: str = ""  # digest of the key its client gave (job_routes.owner_of): who may see it listed in /v1/info
    style_key: str = ""  # digest of its style images (workers.style_key): the unit of style affinity
    lost_workers: int = 0  # workers that died while running it
    history: list[LossPoint] = field(default_factory=list)  # while queued or running; the store has it after
    cancel_requested: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)


def progress_fields(progress: Progress) -> dict[str, Any]:
    """Every field of a progress report but its preview image: what the store writes."""
    return {f.name: getattr(progress, f.name) for f in fields(progress) if f.name not in _NOT_SHOWN}


def progress_of(stored: Mapping[str, Any]) -> Progress:
    """`progress_fields` read back; a field another version wrote is ignored, one it lacks keeps its default."""
    names = {f.name for f in fields(Progress)} - _NOT_SHOWN
    return replace(no_progress(), **{name: value for name, value in stored.items() if name in names})


def progress_json(progress: Progress) -> dict[str, Any]:
    """The progress fields of a job's JSON (docs/openapi.yaml, schema Job): each field under its own name (elapsed
    as elapsed_s), losses that are not finite as null (JSON has no NaN)."""
    shown = progress_fields(progress)
    shown["losses"] = finite(progress.losses)
    shown["elapsed"] = round(progress.elapsed, 3)
    return {_SHOWN_AS.get(name, name): value for name, value in shown.items()}


def finite(losses: Mapping[str, float | None]) -> dict[str, float | None]:
    """JSON has no NaN or infinity; a diverged loss is reported as null."""
    return {k: (float(v) if v is not None and math.isfinite(float(v)) else None) for k, v in losses.items()}
