"""Who runs a job: the interface between the job queue and an engine, and the in-process worker.

The queue hands each job to a `Worker`. The in-process worker (the default) calls the engine in this process; the
Ray workers (`ray_workers.py`, imported only by `stylelayer serve --workers ray`) run it in an actor and stream its
progress back. Both run a job with `run_on_engine`, report the same `ProgressUpdate`s and return the same
`JobOutcome`, so the HTTP API, the job store and the plug-ins cannot tell them apart.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from PIL import Image

from ..core.engine import Progress, ShouldCancel
from ..core.imaging import encode_png
from ..core.params import StyleParams
from ..core.regions import Region


@dataclass
class JobSpec:
    """What a worker needs to run one job (picklable: it travels to a Ray actor)."""

    job_id: str
    content: Image.Image | None
    styles: list[Image.Image]
    params: StyleParams
    preview_every: int
    regions: list[Region] = field(default_factory=list)


class Preview:
    """A preview image, encoded as PNG only when someone asks for it, once.

    A job reports one every few iterations, and on a GPU encoding each as it came took longer than the iterations
    between them (30 previews of a 512 px job: ~0.9 s on top of a 1 s job); a client fetches only some of them.
    """

    def __init__(self, image: Image.Image):
        self._image: Image.Image | None = image
        self._png: bytes | None = None
        self._lock = threading.Lock()

    def png(self) -> bytes:
        with self._lock:
            if self._png is None:
                assert self._image is not None
                self._png, self._image = encode_png(self._image), None
            return self._png

    def __getstate__(self) -> dict[str, Any]:  # travels from a Ray actor: a lock does not pickle
        return {"_image": self._image, "_png": self._png}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


@dataclass
class ProgressUpdate:
    """One progress report of a running job: the engine's `Progress` whole, its preview image taken out and
    wrapped in a `Preview` (encoded only when asked for), so a new Progress field travels with no change here."""

    progress: Progress  # its `preview` is None
    preview: Preview | None

    @classmethod
    def of(cls, p: Progress) -> ProgressUpdate:
        preview = Preview(p.preview) if p.preview is not None else None
        return cls(replace(p, losses=dict(p.losses), preview=None), preview)


@dataclass
class JobOutcome:
    """A finished job: its result PNG (parameters and seed in its metadata) and final figures."""

    png: bytes
    seed: int
    iterations: int
    losses: dict[str, float]
    elapsed: float


class WorkerLost(Exception):
    """The worker's process died under a job (actor killed, node lost, killed for memory): the job itself did not
    fail, and the worker must be replaced before it takes another."""


Report = Callable[[ProgressUpdate], None]


class Worker(Protocol):
    """One place where jobs run, one at a time. `engine` (describe, cache_stats, plan_job) is None until started."""

    name: str
    engine: Any

    def start(self, stopping: ShouldCancel) -> None:
        """Load the engine (may take a while); raise when it cannot be loaded; give up once `stopping()`."""
        ...

    def run(self, spec: JobSpec, report: Report, should_cancel: ShouldCancel) -> JobOutcome:
        """Run a job; raises what the engine raises (Cancelled, OutOfMemory, ValueError, ...) or WorkerLost."""
        ...

    def replace(self, stopping: ShouldCancel) -> None:
        """Start afresh after WorkerLost."""
        ...

    def describe(self) -> dict[str, Any]:
        """name, kind, device and where it runs, for /v1/info."""
        ...

    def cache_stats(self) -> dict[str, int]: ...


def run_on_engine(engine: Any, spec: JobSpec, report: Report, should_cancel: ShouldCancel) -> JobOutcome:
    """Run a job on an engine in this process: what every worker does, wherever it lives."""
    result = engine.stylize(
        spec.content,
        spec.styles,
        spec.params,
        progress=lambda p: report(ProgressUpdate.of(p)),
        should_cancel=should_cancel,
        preview_every=spec.preview_every,
        **({"regions": spec.regions} if spec.regions else {}),  # engines without regions need not take them
    )
    png = encode_png(result.image, result.params, result.seed)
    return JobOutcome(png, result.seed, result.iterations, dict(result.losses), result.elapsed)


class InProcessWorker:
    """The engine in this process, on one device: the default, and what a laptop needs."""

    kind = "in-process"

    def __init__(self, engine: Any = None, factory: Callable[[], Any] | None = None, name: str = "local"):
        if (engine is None) == (factory is None):
            raise ValueError("give exactly one of engine or factory")
        self.name = name
        self.engine = engine
        self._factory = factory

    def start(self, stopping: ShouldCancel) -> None:
        if self.engine is None:
            assert self._factory is not None
            self.engine = self._factory()

    def run(self, spec: JobSpec, report: Report, should_cancel: ShouldCancel) -> JobOutcome:
        return run_on_engine(self.engine, spec, report, should_cancel)

    def replace(self, stopping: ShouldCancel) -> None:
        """Never needed: this process is the worker (if it dies, so does the server)."""

    def describe(self) -> dict[str, Any]:
        described = self.engine.describe() if self.engine is not None else {}
        return {"name": self.name, "kind": self.kind, "device": str(described.get("device", "")), "node": None}

    def cache_stats(self) -> dict[str, int]:
        return dict(self.engine.cache_stats()) if self.engine is not None else {}


def style_key(styles: list[Image.Image]) -> str:
    """A digest of a job's style images: jobs with the same key reuse the Gram targets a worker has cached."""
    digest = hashlib.blake2b(digest_size=16)
    for style in styles:
        digest.update(f"{style.mode}{style.size}".encode())
        digest.update(style.tobytes())
    return digest.hexdigest()
