"""The optimisation of Gatys et al.: pixels of a generated image are optimised against a frozen VGG19.

`StyleEngine` loads the network once and runs any number of jobs; it knows nothing of HTTP, files or hosts.
Callers get per-iteration `Progress` (losses, elapsed time, optional preview) and may cancel between iterations.
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from ..limits import MAX_SIZE
from . import imaging
from .activation_cost import PROBE_SIDE, pass_scale
from .colours import Colours, StyleColours, colours_for, final_colours
from .device_memory import (
    cap_cuda_allocator,
    default_budget,
    in_use,
    measure_cuda_runtime,
    peak_private_rise,
    return_freed_memory_to_the_system,
)
from .losses import gram_matrix, pixel_scale, positions, style_target
from .memory import HEADROOM, BudgetError, LevelPlan, plan_level, style_tile
from .objective import Objective
from .params import VGG_LAYERS, StyleParams
from .regions import Region, check_regions, layer_masks, level_mask, uncovered
from .sizes import format_size
from .steps import LevelSteps
from .terms import Content, GramStyle, GuidedGramStyle, Term, TotalVariation
from .tiling import Tile, halo_for, random_offset, tile_grid, tiled_features, tiled_grams
from .vgg import VGG19Features, layer_stride, load_vgg19

_GRAM_CACHE_SIZE = 16
_PROBE_LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv4_2", "conv5_1")
_pass_scales: dict[tuple[str, str], float] = {}  # (precision, pooling) -> this process's CPU passes vs the model


class Cancelled(Exception):
    """Raised from `StyleEngine.stylize` when the caller's cancel check returned True."""


class OutOfMemory(RuntimeError):
    """Raised from `StyleEngine.stylize` when the device ran out of memory; the message says what to lower.

    The engine has already freed its cached device memory, so callers need not know torch to recover."""


class MissingInput(ValueError):
    """A job lacks an image it needs; `image` ('content' or 'style') lets each front end say how to give it."""

    def __init__(self, image: str, message: str):
        super().__init__(message)
        self.image = image


@dataclass
class Progress:
    """Reported after every iteration, and after every tile of a tiled level (`tile` > 0, same iteration)."""

    iteration: int  # 1-based, counted over all levels
    total: int
    losses: dict[str, float]
    elapsed: float
    preview: Image.Image | None = None
    level: int = 1  # 1-based, coarse to fine
    levels: int = 1
    tile: int = 0  # tiles done in the current iteration (0 for whole-image levels)
    tiles: int = 0  # tiles per iteration, over both passes
    plan: str = ""  # how the current level runs (memory.LevelPlan.describe)
    level_iteration: int = 0  # iterations done in the current level, of `level_iterations`: a level's own progress
    level_iterations: int = 0


@dataclass
class StyleResult:
    image: Image.Image  # same size as the content; RGBA with the content's alpha re-attached exactly
    seed: int
    losses: dict[str, float]
    iterations: int
    elapsed: float
    params: StyleParams
    history: list[dict[str, float]] = field(default_factory=list)  # losses per iteration, for plots
    plans: list[str] = field(default_factory=list)  # how each level ran: size, whole or tiled, optimiser, memory


ProgressCallback = Callable[[Progress], None]
ShouldCancel = Callable[[], bool]  # returns True when the caller wants the job stopped


def use_cpu_threads(threads: int) -> None:
    """Several engines in one machine (Ray actors) each take a share of its cores instead of all of them."""
    torch.set_num_threads(threads)


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' prefers CUDA, then Apple's MPS, then the CPU; naming an absent device is an error."""
    mps = getattr(torch.backends, "mps", None)
    has_mps = bool(mps and mps.is_available())
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but no CUDA GPU is available (try --device auto or cpu)")
    if name == "mps" and not has_mps:
        raise ValueError("device 'mps' was requested but Apple's Metal backend is not available")
    if name not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unknown device {name!r}: choose auto, cuda, mps or cpu")
    return torch.device(name)


def bf16_supported(device: torch.device) -> bool:
    """True where bf16 autocast is fast: CUDA GPUs with bf16, CPUs with native bf16 (AVX512-BF16/AMX)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


class StyleEngine:
    """Holds VGG19 on one device and runs style-transfer jobs with it, one at a time."""

    def __init__(
        self,
        weights: str = "caffe",
        device: str = "auto",
        preprocess: str | None = None,
        max_memory: int | None = None,
        tile_size: int | None = None,
    ):
        """`max_memory`: bytes this process may use on the device (None: from the free RAM/VRAM at each job);
        `tile_size`: force tiled levels with cores of this many pixels (tests, benchmarks)."""
        self.device = resolve_device(device)
        self.max_memory = max_memory
        self.tile_size = tile_size
        self.weights_name = weights
        model = load_vgg19(weights, preprocess)
        if self.device.type == "cpu":  # on CUDA the weights stay NCHW: large levels run faster so (vgg.channels_last)
            model = model.to(memory_format=torch.channels_last)
            return_freed_memory_to_the_system()
        self.model: VGG19Features = model.to(self.device)
        self._grams: OrderedDict[tuple, dict[str, tuple[Tensor, int]]] = OrderedDict()
        self._hits = 0
        self._misses = 0
        self.auto_precision = "bf16" if bf16_supported(self.device) else "fp32"  # what precision "auto" runs in
        self.seconds_per_unit: dict[str, float] = {}  # per precision, measured by `calibrate`
        if self.device.type == "cuda":
            self._load_cuda_libraries()
            measure_cuda_runtime(self.device)
            if max_memory is not None:
                cap_cuda_allocator(self.device, max_memory)

    def _load_cuda_libraries(self) -> None:
        """Forward and backward passes through every layer in both precisions, so that cuDNN's and cuBLAS's code
        (loaded lazily, kernel by kernel) is mostly in memory before the runtime is measured."""
        x = torch.rand(1, 3, 256, 256, device=self.device, requires_grad=True)
        for precision in self.precisions():
            self._gram_pass(x, precision, VGG_LAYERS, "avg")

    def _gram_pass(self, x: Tensor, precision: str, layers: Sequence[str], pooling: str) -> None:
        """One forward and backward pass through `layers` with Gram losses, as a job's pass: for loading and probing."""
        with _autocast(self.device, precision):
            feats = self.model(x, layers, pooling)
        torch.autograd.grad(torch.stack([gram_matrix(f).sum() for f in feats.values()]).sum(), x)

    def pass_scale(self, precision: str, pooling: str, measure: bool = True) -> float:
        """How much more memory than the cost model this machine's passes take (1: as modelled), measured once per
        process and precision by one pass of PROBE_SIDE px (about a second on 2 cores): on a CPU, oneDNN's
        convolution algorithms and their buffers depend on the instruction set.

        Only where jobs run (`measure`): an estimate asked for while a job runs would count the job's tensors as the
        probe's, so it takes the scale measured so far, or the model as it is. Not measured on GPUs, where the
        allocator's cap and the OOM retry keep a job inside its budget."""
        if self.device.type != "cpu" or self.tile_size:
            return 1.0
        key = (precision, pooling)
        if key not in _pass_scales:
            if not measure:
                return 1.0
            x = torch.rand(1, 3, PROBE_SIDE, PROBE_SIDE, requires_grad=True)
            peak = peak_private_rise(lambda: self._gram_pass(x, precision, _PROBE_LAYERS, pooling))
            _pass_scales[key] = 1.0 if peak is None else pass_scale(peak, precision, pooling)
        return _pass_scales[key]

    def precisions(self) -> tuple[str, ...]:
        """The precisions jobs run in on this device, the one `auto` picks first."""
        return ("bf16", "fp32") if self.auto_precision == "bf16" else ("fp32",)

    def calibrate(self) -> dict[str, float]:
        """Seconds per unit of work (one pixel through one forward and backward pass; see `LevelPlan.work`) on this
        device, per precision, so that estimates before the first job use this machine's speed, not a guess for its
        device type; bf16 runs about twice as fast as fp32 on a CPU with AVX512-BF16, 1.4x on an H100.

        Timed as the difference between two small jobs that differ only in their iteration count, after a warm-up
        job (about a second per precision on a GPU, one to three on a CPU): what one more iteration costs, optimiser
        and graphs included, without the set-up (targets, cuDNN, graph capture) that a painter's longer jobs spread
        over more iterations. On a CPU it is timed at the preview preset's 256 px: at 160 px a pixel cost 1.5x what it
        costs at 256-512 px (2 cores, AVX512-BF16), and the first estimates were that much too long.
        """
        shape = (256, 1, 4) if self.device.type == "cpu" else (512, 10, 40)
        self.seconds_per_unit = {precision: self._time_two_jobs(*shape, precision) for precision in self.precisions()}
        return self.seconds_per_unit

    def _time_two_jobs(self, side: int, few: int, more: int, precision: str) -> float:
        """Seconds per unit of what `more - few` iterations add to a `side` px job (after a warm-up job).

        Twice, keeping the faster: other work on the machine only ever slows a run down, and a first measurement
        just after start-up came out 1.8-2.8x slow in 3 of 12 trials on a 2-core VM; the second did not.
        """
        noise = torch.Generator().manual_seed(0)
        content = imaging.to_image(torch.rand(1, 3, side * 3 // 4, side, generator=noise))
        style = imaging.to_image(torch.rand(1, 3, side, side, generator=noise))
        cached, counts = set(self._grams), (self._hits, self._misses)
        timed: dict[int, list[float]] = {few: [], more: []}
        units: dict[int, float] = {}
        for iterations in (few, few, more, few, more):  # the first run warms up: cuDNN's set-up, the Gram matrices
            params = StyleParams.from_dict({"size": side, "iterations": iterations, "seed": 0, "precision": precision})
            units[iterations] = sum((n + 1) * plan.work() for plan, n in self.plan_job(content.size, params))
            started = time.perf_counter()
            self.stylize(content, [style], params)
            timed[iterations].append(time.perf_counter() - started)
        for key in set(self._grams) - cached:  # the cache and its counts are for painters' styles
            del self._grams[key]
        self._hits, self._misses = counts
        seconds = min(timed[more]) - min(timed[few][1:])
        return max(seconds, 1e-9) / (units[more] - units[few])

    def describe(self) -> dict[str, object]:
        return {
            "device": str(self.device),
            "weights": self.weights_name,
            "preprocessing": self.model.preprocess.name,
            "bf16_supported": bf16_supported(self.device),
            "auto_precision": self.auto_precision,
            "max_memory": self.max_memory,
        }

    def cache_stats(self) -> dict[str, int]:
        return {"hits": self._hits, "misses": self._misses, "entries": len(self._grams)}

    def precision(self, params: StyleParams) -> str:
        return params.precision_on(self.auto_precision)

    # ---- public entry point ---------------------------------------------------------------------------------
    def stylize(
        self,
        content: Image.Image | None,
        styles: Sequence[Image.Image],
        params: StyleParams,
        progress: ProgressCallback | None = None,
        should_cancel: ShouldCancel | None = None,
        preview_every: int = 0,
        regions: Sequence[Region] = (),
    ) -> StyleResult:
        """Optimise an image so its VGG features match `content` and its Gram matrices match `styles`; with
        `regions`, each region's guided Gram matrices match its own styles (see regions.py)."""
        started = time.perf_counter()
        styles = list(styles)
        check_inputs(content, styles, params, regions)
        seed = params.seed if params.seed is not None else random.randrange(2**31)
        generator = torch.Generator().manual_seed(seed)

        alpha = None
        if content is not None:
            content_rgb, alpha = imaging.split_alpha(content)
            out_size = content_rgb.size
            work_size = job_working_size(out_size, params)
            work = content_rgb if work_size == out_size else content_rgb.resize(work_size, Image.Resampling.LANCZOS)
        else:
            assert params.output_size is not None  # check_inputs: texture mode without content gives output_size
            content_rgb = work = None
            out_size = work_size = params.output_size

        levels = _level_sizes(work_size, params.scales)
        inputs = JobInputs(work, styles, tuple(regions), generator)
        run = _Run(self, params, seed, levels, started, progress, should_cancel, preview_every, inputs)
        try:
            with _deterministic(self.device):
                image = self._optimise(run, levels)
        except RuntimeError as exc:
            if not _is_out_of_memory(exc):
                raise
            exc.__traceback__ = None  # its frames hold the failed job's tensors: let them go before freeing the cache
            _free_cached_memory(self.device)
            what = "memory" if self.device.type == "cpu" else "GPU memory"
            raise OutOfMemory(
                f"ran out of {what} at {work_size[0]}x{work_size[1]} px: reduce size (the working size),"
                f" or close other programs that need {what}"
            ) from None
        result = imaging.to_image(image)
        if result.size != out_size:
            result = result.resize(out_size, Image.Resampling.LANCZOS)
        result = final_colours(result, content_rgb, params.preserve_colors)
        if alpha is not None:
            result.putalpha(alpha)
        return StyleResult(
            image=result,
            seed=seed,
            losses=run.history[-1] if run.history else {},
            iterations=run.iteration,
            elapsed=time.perf_counter() - started,
            params=params,
            history=run.history,
            plans=run.plans,
        )

    def _optimise(self, run: _Run, levels: list[tuple[int, int]]) -> Tensor:
        image: Tensor | None = None
        for number, size in enumerate(levels, 1):
            image = run.level(number, size, image)
        assert image is not None
        return image

    def plan_job(self, content_size: tuple[int, int] | None, params: StyleParams) -> list[tuple[LevelPlan, int]]:
        """How a job would run, without running it: each level's plan and iteration count.

        For estimates before a job starts (time, memory); `content_size` None is texture mode's `output_size`.
        """
        if content_size is None:
            assert params.output_size is not None
            work_size = params.output_size
        else:
            work_size = job_working_size(content_size, params)
        levels = _level_sizes(work_size, params.scales)
        run = _Run(self, params, 0, levels, 0.0, None, None, 0)
        has_content = content_size is not None
        return [(run._plan(w, h, has_content, n), n) for (w, h), n in zip(levels, run.level_iterations, strict=True)]

    def budget(self) -> int:
        """Bytes a job may use beyond what the process holds now: from `max_memory`, else the free RAM/VRAM."""
        limit = self.max_memory if self.max_memory is not None else default_budget(self.device)
        held = in_use(self.device)
        if limit <= held:
            raise BudgetError(
                f"the memory budget of {format_size(limit)} is less than the {format_size(held)} this process already"
                " holds (the network and the runtime): give a larger --max-memory"
            )
        return int((limit - held) * HEADROOM)

    # ---- style targets --------------------------------------------------------------------------------------
    def style_grams(self, style: Image.Image, params: StyleParams, precision: str) -> dict[str, tuple[Tensor, int]]:
        """Gram matrices and position counts of one prepared style image, cached: a style reused across jobs (or
        levels of one size) skips its forward pass. Large styles are passed through the network tile by tile."""
        key = (
            hashlib.sha256(style.tobytes()).hexdigest(),
            style.size,
            params.style_layers,
            params.pooling,
            precision,
        )
        cached = self._grams.get(key)
        if cached is not None:
            self._hits += 1
            self._grams.move_to_end(key)
            return cached
        self._misses += 1
        image = imaging.to_tensor(style, self.device)
        layers = list(params.style_layers)
        deepest = max(layers, key=VGG_LAYERS.index)
        tile = self.tile_size or style_tile(
            style.width,
            style.height,
            self.budget(),
            deepest,
            precision,
            params.pooling,
            self.pass_scale(precision, params.pooling),
        )
        if tile is None:
            with torch.no_grad(), _autocast(self.device, precision):
                feats = self.model(image, layers, params.pooling)
                grams = {name: (gram_matrix(f), positions(f)) for name, f in feats.items()}
        else:
            tiles = tile_grid(style.height, style.width, tile, halo_for(layers))
            autocast = lambda: _autocast(self.device, precision)  # noqa: E731 - a factory for fresh contexts
            grams = tiled_grams(self.model, image, layers, params.pooling, tiles, autocast)
        self._grams[key] = grams
        if len(self._grams) > _GRAM_CACHE_SIZE:
            self._grams.popitem(last=False)
        return grams


@dataclass(frozen=True)
class JobInputs:
    """What one job optimises against, the same at every level."""

    work: Image.Image | None  # the content at the working size (None: a texture)
    styles: Sequence[Image.Image]
    regions: tuple[Region, ...]
    generator: torch.Generator  # the job's seed: noise, the tiles' offsets


class _Run:
    """State of one `stylize` call across its levels: iteration count, history, plans, callbacks.

    `inputs` None: a run that only plans (`plan_job`)."""

    def __init__(
        self,
        engine: StyleEngine,
        params: StyleParams,
        seed: int,
        levels: list[tuple[int, int]],
        started: float,
        progress: ProgressCallback | None,
        should_cancel: ShouldCancel | None,
        preview_every: int,
        inputs: JobInputs | None = None,
    ):
        self.engine = engine
        self.params = params
        self.seed = seed
        self.levels = len(levels)
        self.level_iterations = _level_iterations(params.iterations, len(levels))
        self.total = sum(self.level_iterations)
        self.started = started
        self.progress = progress
        self.should_cancel = should_cancel
        self.preview_every = preview_every
        self.precision = engine.precision(params)
        self.iteration = 0
        self.level_number = 1
        self.plan = ""
        self.history: list[dict[str, float]] = []
        self.plans: list[str] = []
        self.budget_share = 1.0  # of the engine's budget this job plans with (halved after running out on a GPU)
        self.inputs = inputs
        self.regions = inputs.regions if inputs is not None else ()

    def check_cancel(self) -> None:
        if self.should_cancel is not None and self.should_cancel():
            raise Cancelled("cancelled")

    def level(self, number: int, size: tuple[int, int], previous: Tensor | None) -> Tensor:
        """Optimise at one resolution; where the device runs out of memory, once more with half the budget.

        The planner's activation model is measured on the CPU; on a GPU cuDNN's workspaces and the allocator's
        fragmentation come on top, and with --max-memory the allocator is capped (device_memory.cap_cuda_allocator). A
        level that passes the cap starts again with smaller tiles instead of failing the painter's job.
        """
        started, history, plans = self.iteration, len(self.history), len(self.plans)
        try:
            return self._level(number, size, previous)
        except RuntimeError as exc:
            if not _is_out_of_memory(exc) or self.budget_share < 1:
                raise
            exc.__traceback__ = None  # its frames hold the level's tensors
        _free_cached_memory(self.engine.device)
        self.iteration = started
        del self.history[history:], self.plans[plans:]
        self.budget_share = 0.5
        return self._level(number, size, previous)

    def _level(self, number: int, size: tuple[int, int], previous: Tensor | None) -> Tensor:
        """Optimise at one resolution, starting from the upsampled previous level if there is one.

        The content tensor lives only until the content target is computed: at full resolution every image-sized
        tensor held through the iterations is memory a tile cannot use.
        """
        assert self.inputs is not None, "a planning run has no inputs"
        work, styles, generator = self.inputs.work, self.inputs.styles, self.inputs.generator
        width, height = size
        self.level_number = number
        iterations = self.level_iterations[number - 1]
        content = None
        if work is not None:
            content = imaging.to_tensor(work.resize(size, Image.Resampling.LANCZOS), self.engine.device)
        colours = colours_for(self.params.preserve_colors, content)
        if content is not None:
            content = colours.content(content)

        plan = self._plan(width, height, content is not None, iterations)
        self.plan = plan.describe()
        self.plans.append(self.plan)
        terms = self._terms(content, styles, size, colours, plan)
        image = self._start_image(previous, content, styles, size, colours, generator).detach().clone().contiguous()
        del content, previous
        shown = colours if self.preview_every else StyleColours()  # only previews still need the content's colours
        del colours

        def tiles() -> list[Tile]:
            return tile_grid(height, width, plan.tile or 0, plan.halo, random_offset(plan.tile or 0, generator))

        steps = LevelSteps(terms, image, plan, self._step_length(plan), tiles, self.check_cancel, self._report_tile)
        try:
            for _ in range(iterations):
                self.check_cancel()
                losses = steps()
                self.iteration += 1
                self.history.append(losses)
                self._report(image, shown, dict(losses))
        finally:
            steps.close()
        return image.detach()

    def _start_image(
        self,
        previous: Tensor | None,
        content: Tensor | None,
        styles: Sequence[Image.Image],
        size: tuple[int, int],
        colours: Colours,
        generator: torch.Generator,
    ) -> Tensor:
        """The level's first iterate: the coarser level's result upsampled, or the job's `init` at the first."""
        width, height = size
        if previous is not None:
            return F.interpolate(previous, size=(height, width), mode="bicubic", align_corners=False).clamp(0, 1)
        p, device = self.params, self.engine.device
        init = p.init
        if init in ("content", "varied") and (content is None or p.mode != "transfer"):
            init = "noise"  # inversion/texture from the content would start at (or near) the answer
        if init == "varied":  # the content, lightly jittered by the seed: each seed another variation
            jitter = (torch.rand((1, 3, height, width), generator=generator) - 0.5) * VARIED_JITTER
            return (content + jitter.to(device)).clamp(0, 1)  # type: ignore[operator]
        if init == "content":
            return content.clone()  # type: ignore[union-attr]
        first = styles[0] if styles else self.regions[0].styles[0] if self.regions else None
        if init == "style" and first is not None:
            style = imaging.split_alpha(first)[0].resize((width, height), Image.Resampling.LANCZOS)
            style_t = imaging.to_tensor(style, device)
            return colours.start(style_t)
        noise = torch.rand((1, 3, height, width), generator=generator)
        return noise.to(device)

    def _step_length(self, plan: LevelPlan) -> float:
        if plan.optimizer == "adam" and self.params.optimizer != "adam":
            return 0.02  # the planner fell back to Adam: a step length given for L-BFGS would be far too long for it
        return self.params.effective_lr

    def _plan(self, width: int, height: int, has_content: bool, iterations: int) -> LevelPlan:
        p = self.params
        layers = [*p.style_layers] if p.effective_style_weight else []
        content_layer = p.content_layer if has_content and p.effective_content_weight else None
        if content_layer:
            layers.append(content_layer)
        deepest = max(layers, key=VGG_LAYERS.index) if layers else "conv1_1"
        return plan_level(
            width,
            height,
            budget=int(self.engine.budget() * self.budget_share),
            deepest=deepest,
            content_layer=content_layer,
            optimizer=p.optimizer,
            precision=self.precision,
            pooling=p.pooling,
            halo=halo_for([deepest]),
            force_tile=self.engine.tile_size,
            iterations=iterations,
            scale=self.engine.pass_scale(self.precision, p.pooling, measure=self.inputs is not None),
        )

    def _terms(
        self,
        content: Tensor | None,
        styles: Sequence[Image.Image],
        size: tuple[int, int],
        colours: Colours,
        plan: LevelPlan,
    ) -> Objective:
        """The loss terms of one level, in the order reported; the content target is computed tile by tile when
        tiled."""
        p, engine = self.params, self.engine
        width, height = size
        autocast = lambda: _autocast(engine.device, self.precision)  # noqa: E731 - a factory for fresh contexts
        content_target = None
        if content is not None and p.effective_content_weight:
            if plan.tile is None:
                with torch.no_grad(), autocast():
                    content_target = engine.model(content, [p.content_layer], p.pooling)[p.content_layer]
            else:
                tiles = tile_grid(height, width, plan.tile, plan.halo)
                content_target = tiled_features(engine.model, content, p.content_layer, p.pooling, tiles, autocast)
        scale = pixel_scale(p.loss_units, height, width)
        terms: list[Term] = []
        if content_target is not None:
            terms.append(Content(p.effective_content_weight, p.content_layer, content_target, scale))
        if p.effective_style_weight:
            terms += self._style_terms(styles, size, colours)
        terms.append(TotalVariation(p.tv_weight, scale))
        return Objective(engine.model, p.pooling, autocast, terms)

    def _style_terms(self, styles: Sequence[Image.Image], size: tuple[int, int], colours: Colours) -> list[Term]:
        """The style over the whole image; with regions, a guided term per region, and the global styles (if any)
        over what the regions leave uncovered, where some pixel is less than half covered."""
        p = self.params
        if not self.regions:
            targets = self._style_targets(styles, p.blend_weights(len(styles)), size, colours)
            return [GramStyle(p.effective_style_weight, targets, p.layer_weights)]
        masks = [level_mask(region.mask, size, self.engine.device) for region in self.regions]
        weights = p.region_weight_list(len(self.regions))
        guided = [
            (f"region{number}", weight, region.styles, region.blend_weights(), mask)
            for number, (region, weight, mask) in enumerate(zip(self.regions, weights, masks, strict=True), 1)
        ]
        rest = uncovered(masks)
        if styles and float(rest.max()) > 0.5:
            guided.append(("style", 1.0, tuple(styles), p.blend_weights(len(styles)), rest))
        terms: list[Term] = []
        for name, weight, images, blend, mask in guided:
            by_layer = layer_masks(mask, p.style_layers)
            areas = {layer: float(m.square().sum()) for layer, m in by_layer.items()}
            by_layer = {layer: m for layer, m in by_layer.items() if areas[layer] > 0}  # a sliver lost to flooring
            targets = self._style_targets(images, blend, size, colours, areas)
            targets = {layer: targets[layer] for layer in by_layer}
            if targets:
                style_weight = p.effective_style_weight * weight
                terms.append(GuidedGramStyle(name, style_weight, targets, p.layer_weights, by_layer))
        return terms

    def _progress(
        self, losses: dict[str, float], preview: Image.Image | None = None, tile: int = 0, tiles: int = 0
    ) -> Progress:
        """The one place a progress report is made: where the run is now, with what only the caller knows."""
        return Progress(
            self.iteration,
            self.total,
            losses,
            time.perf_counter() - self.started,
            preview,
            level=self.level_number,
            levels=self.levels,
            tile=tile,
            tiles=tiles,
            plan=self.plan,
            level_iteration=self.iteration - sum(self.level_iterations[: self.level_number - 1]),
            level_iterations=self.level_iterations[self.level_number - 1],
        )

    def _report_tile(self, done: int, total: int) -> None:
        if self.progress is None:
            return
        losses = self.history[-1] if self.history else {}
        self.progress(self._progress(dict(losses), tile=done, tiles=total))

    def _style_targets(
        self,
        styles: Sequence[Image.Image],
        weights: Sequence[float],
        size: tuple[int, int],
        colours: Colours,
        areas: dict[str, float] | None = None,
    ) -> dict[str, Tensor]:
        """Blended targets T per layer: each style scaled to style_scale × the working image's longest side.
        `areas`: a region's mask area per layer, which the paper's units divide by instead of the position count."""
        p = self.params
        width, height = size
        longest = max(1, round(max(size) * p.style_scale))
        blended: dict[str, Tensor] = {}
        for weight, style in zip(weights, styles, strict=True):
            prepared = colours.style(_resized(imaging.split_alpha(style)[0], longest, "style"))
            for name, (gram, m) in self.engine.style_grams(prepared, p, self.precision).items():
                image_positions = (height // layer_stride(name)) * (width // layer_stride(name))
                if areas is not None:
                    image_positions = areas[name]
                target = style_target(gram, m, image_positions, p.loss_units)
                blended[name] = blended[name] + weight * target if name in blended else weight * target
        return blended

    def _report(self, image: Tensor, colours: Colours, losses: dict[str, float]) -> None:
        if self.progress is None:
            return
        preview = None
        if self.preview_every and (self.iteration % self.preview_every == 0 or self.iteration == self.total):
            preview = imaging.to_image(colours.shown(image.detach()))
        self.progress(self._progress(losses, preview=preview))


def check_inputs(
    content: Image.Image | None, styles: Sequence[Image.Image], params: StyleParams, regions: Sequence[Region] = ()
) -> None:
    """Refuse a job that cannot run, before anything slow starts (ValueError/ParamError naming the problem)."""
    if content is None and not (params.mode == "texture" and params.output_size):
        raise MissingInput("content", "a content image is required (texture mode may instead give output_size)")
    if not styles and not regions and params.effective_style_weight > 0:
        raise MissingInput("style", "at least one style image is required (or use mode 'inversion')")
    if params.init == "style" and not styles and not regions:
        raise MissingInput("style", "init 'style' needs a style image")
    params.blend_weights(max(1, len(styles)))  # raises ParamError when the counts differ
    if regions or params.region_weights is not None:
        params.region_weight_list(len(regions))
    check_regions(regions)
    for img in [content, *styles, *(style for region in regions for style in region.styles)]:
        if img is not None and min(img.size) < 1:
            raise ValueError("images must be at least 1x1 pixels")


VARIED_JITTER = 0.2  # init "varied": the content plus seeded noise of this range (of 0..1), enough for other strokes
AUTO_BASE = 512  # longest side of the coarsest level when the levels are automatic (scales 0)
MIN_SIDE = 16  # conv5_1 sits behind four 2x2 poolings: 16 px become 1


def job_working_size(content_size: tuple[int, int], params: StyleParams) -> tuple[int, int]:
    """The size a job optimises at: the content's longest side down to `params.size` (0: the content's own size)."""
    longest = max(content_size) if params.size == 0 else min(params.size, max(content_size))
    return working_size(content_size, longest, "content")


def working_size(size: tuple[int, int], longest: int, what: str) -> tuple[int, int]:
    """`size` scaled so its longest side is `longest`, then up so its short side is at least MIN_SIDE (a tiny
    selection, a thin strip); refused when that makes the long side over MAX_SIZE. One rule for running a job and
    for planning it."""
    scale = longest / max(size)
    fitted = (max(1, round(size[0] * scale)), max(1, round(size[1] * scale)))
    short = min(fitted)
    if short >= MIN_SIDE:
        return fitted
    up = MIN_SIDE / short
    grown = (max(MIN_SIDE, round(fitted[0] * up)), max(MIN_SIDE, round(fitted[1] * up)))
    if max(grown) > MAX_SIZE:
        raise ValueError(
            f"{what} is {fitted[0]}x{fitted[1]}: too thin to stylise (its short side would need "
            f"{MIN_SIDE} px, making the long side over {MAX_SIZE} px)"
        )
    return grown


def _resized(img: Image.Image, longest: int, what: str) -> Image.Image:
    """`img` at its `working_size`."""
    size = working_size(img.size, longest, what)
    return img if size == img.size else img.resize(size, Image.Resampling.LANCZOS)


def _level_sizes(size: tuple[int, int], scales: int) -> list[tuple[int, int]]:
    """Coarse-to-fine sizes, halving per level down from `size` (never below 16 px on the short side).

    `scales` 0 picks the levels itself: from about AUTO_BASE px on the longest side up to `size`, so a big canvas is
    laid out where it is cheap and every finer level only refines it.
    """
    width, height = size
    if scales == 0:
        scales = 1 + max(0, math.ceil(math.log2(max(width, height) / AUTO_BASE - 1e-9)))
    levels = []
    for i in reversed(range(scales)):
        factor = 2**i
        if min(width, height) // factor < 16 and i > 0:
            continue
        levels.append((max(1, round(width / factor)), max(1, round(height / factor))))
    return levels


def _level_iterations(iterations: int, levels: int) -> list[int]:
    """The coarsest level runs `iterations`; each finer level half as many as the one before (at least one).

    A finer level starts from the level below and only refines it, while each iteration costs four times more.
    """
    return [max(1, iterations >> i) for i in range(levels)]


@contextmanager
def _deterministic(device: torch.device) -> Iterator[None]:
    """The reported seed reproduces a result on CUDA too: cuDNN's autotuned kernels are not bit-reproducible."""
    if device.type != "cuda":
        yield
        return
    cudnn = torch.backends.cudnn
    saved = cudnn.deterministic, cudnn.benchmark
    cudnn.deterministic, cudnn.benchmark = True, False
    try:
        yield
    finally:
        cudnn.deterministic, cudnn.benchmark = saved


def _is_out_of_memory(exc: RuntimeError) -> bool:
    """CUDA raises torch's OutOfMemoryError; MPS and the CPU allocator raise plain RuntimeErrors that say so."""
    text = str(exc).lower()
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in text or "can't allocate memory" in text


def _free_cached_memory(device: torch.device) -> None:
    """Hand the allocator's cached blocks back, so the next job and other programs can have them."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        torch.mps.empty_cache()


def _autocast(device: torch.device, precision: str):
    if precision == "bf16":
        # No cast cache: every pass casts each weight once anyway, and CUDA graphs cannot capture a cached cast.
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16, cache_enabled=False)
    return nullcontext()
