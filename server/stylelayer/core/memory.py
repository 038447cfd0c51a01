"""The planner: a memory budget instead of a size limit, and for each level the fastest plan that fits.

Everything that grows with the canvas is counted: the network's activations for one forward and backward pass
(whole image, or one tile plus its halo), the image-sized vectors of the optimiser (L-BFGS keeps two per history
entry), and the content target. The planner prefers the whole image (fastest), then tiles as large as fit, and
shortens L-BFGS's history, or falls back to Adam, when its vectors alone would not leave room for a tile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .activation_cost import activation_bytes
from .sizes import format_size
from .tiling import GRID, halo_for, spans
from .vgg import conv_channels, layer_stride

MIN_TILE = 64  # below this the halo dwarfs the core and a tiled iteration costs many times an untiled one
FAIR_TILE = 256  # smallest tile worth keeping L-BFGS for (a 256 px core with its halo is 2.6x the core's pixels)
GOOD_TILE = 512  # tile size the planner reserves room for before it gives L-BFGS its history
# ... and this one, where a history of WHOLE_MIN_HISTORY still fits beside it. At 4000x3000 in 8 GB (bf16), 12 tiles
# of 1056 px with history 14 cost 1.67x the whole image's work where 48 of 560 px with history 19 cost 2.19x; on 2
# CPU cores a 2048x1536 iteration took 2.83x an untiled one in 1088 px tiles, 3.45x in 576 px tiles. The shorter
# history costs little: on a 512 px finest level (55 iterations, bf16) history 16 ended 0.3% above a full history,
# 6 at +1.6%, 3 at +3.4%.
LARGE_TILE = 1024
FORWARD_SHARE = 0.35  # cost of a pass without gradients relative to one with them
HEADROOM = 0.85  # share of the budget planned for: the allocator's fragmentation and small tensors take the rest
MAX_HISTORY = 100  # L-BFGS history when memory allows (PyTorch's default)
MIN_HISTORY = 3  # shorter than this and Adam does as well with fewer vectors
WHOLE_MIN_HISTORY = 10  # the whole image is preferred over tiles only with at least this much history


class BudgetError(ValueError):
    """The memory budget cannot hold even the smallest plan for a level; the message says what to change."""


@dataclass(frozen=True)
class LevelPlan:
    """How one level runs: whole image or tiles of `tile`×`tile` core pixels, with which optimiser state."""

    width: int
    height: int
    tile: int | None  # None: the whole image at once
    halo: int
    optimizer: str  # "lbfgs" or "adam" (L-BFGS's history would not fit)
    history: int  # L-BFGS history size (0 for Adam)
    estimate: int  # bytes the plan needs at its peak, beyond what the process held when planned

    @property
    def tiled(self) -> bool:
        return self.tile is not None

    def work(self) -> float:
        """Pixels the network processes per iteration, in units of one forward + backward pass over one pixel.

        Whole image: its pixels. Tiled: every crop (core + halo) once with gradients, plus the Gram pass without
        (a forward pass costs about a third of a forward + backward pass: measured 5.5 s vs 16 s at 1024²).
        """
        if self.tile is None:
            return float(self.width * self.height)
        crops = 0
        for y0, y1 in spans(self.height, self.tile, 0):
            for x0, x1 in spans(self.width, self.tile, 0):
                h = min(self.height, y1 + self.halo) - max(0, y0 - self.halo)
                w = min(self.width, x1 + self.halo) - max(0, x0 - self.halo)
                crops += h * w
        return crops * (1 + FORWARD_SHARE)

    def describe(self) -> str:
        how = f"tiles of {self.tile} px (+{self.halo} px halo)" if self.tile else "whole image"
        opt = f"L-BFGS, history {self.history}" if self.optimizer == "lbfgs" else "Adam"
        return f"{self.width}x{self.height}: {how}, {opt}, ~{format_size(self.estimate)}"


def plan_level(
    width: int,
    height: int,
    *,
    budget: int,
    deepest: str,
    content_layer: str | None,
    optimizer: str,
    precision: str,
    pooling: str,
    halo: int,
    force_tile: int | None = None,
    iterations: int | None = None,
    scale: float = 1.0,
) -> LevelPlan:
    """The fastest way to run a `width`×`height` level within `budget` bytes (beyond what the process holds).

    `iterations`: how many the level runs. L-BFGS stores one pair per iteration after the first, so a longer history
    than that would hold only empty slots (a 4000x3000 level of 37 iterations needs 36, not 100: 20 GB less).
    `scale`: this machine's passes against the cost model (activation_cost.pass_scale).
    """
    pixels = width * height
    pairs = MAX_HISTORY if iterations is None else max(1, min(MAX_HISTORY, iterations - 1))
    enough = min(WHOLE_MIN_HISTORY, pairs)  # a history this long counts as full for the whole image ...
    least = min(MIN_HISTORY, pairs)  # ... and this long as enough for tiles
    vector = 3 * pixels * 4  # one image-sized float32 vector
    fixed = 3 * vector  # the image, its gradient, and one in flight (the content tensor, a step's temporary)
    if content_layer is not None:  # the content target, in the features' precision
        target = conv_channels(content_layer)[-1][1] * pixels // layer_stride(content_layer) ** 2
        fixed += target * (2 if precision == "bf16" else 4)

    def state(opt: str, history: int) -> int:
        """L-BFGS: its flat gradient, previous gradient and direction, plus two vectors per history entry."""
        return (3 + 2 * history) * vector if opt == "lbfgs" else 3 * vector  # Adam: two moments, one temporary

    whole = int(activation_bytes(pixels, deepest, precision, pooling, grad=True, scale=scale))
    if force_tile is None:
        if optimizer == "adam" and fixed + state("adam", 0) + whole <= budget:
            return LevelPlan(width, height, None, 0, "adam", 0, fixed + state("adam", 0) + whole)
        if optimizer == "lbfgs":
            history = min(pairs, (budget - fixed - whole) // (2 * vector))
            if history >= enough:
                return LevelPlan(width, height, None, 0, "lbfgs", history, fixed + state("lbfgs", history) + whole)

    # Tiled. Tiles of LARGE_TILE px where a full history still fits beside them, else of GOOD_TILE px, keep the
    # halo's overhead moderate: L-BFGS gets the history that leaves room for them; if not even MIN_HISTORY does,
    # L-BFGS runs with MIN_HISTORY and smaller tiles, or Adam with larger ones.
    def fit(opt: str, history: int, smallest: int) -> LevelPlan | None:
        left = budget - fixed - state(opt, history)
        tile = force_tile or _largest_tile(left, width, height, halo, deepest, precision, pooling, scale)
        if tile is None or (tile < smallest and not force_tile):
            return None
        estimate = fixed + state(opt, history) + _tile_bytes(tile, halo, deepest, precision, pooling, scale)
        return LevelPlan(width, height, tile, halo, opt, history, estimate)

    def history_beside(tile: int) -> int:
        room = budget - fixed - state("lbfgs", 0) - _tile_bytes(tile, halo, deepest, precision, pooling, scale)
        return min(pairs, room // (2 * vector))

    longest = math.ceil(max(width, height) / GRID) * GRID
    large, good = min(LARGE_TILE, longest), min(GOOD_TILE, longest)
    candidates: list[tuple[str, int, int]] = [("adam", 0, MIN_TILE)]
    if optimizer == "lbfgs":
        candidates = [("lbfgs", history_beside(good), good), ("lbfgs", least, FAIR_TILE), *candidates]
        if history_beside(large) >= enough:
            candidates.insert(0, ("lbfgs", history_beside(large), large))
        candidates = [c for c in candidates if c[0] == "adam" or c[1] >= least]
    for opt, history, smallest in candidates:
        plan = fit(opt, history, smallest)
        if plan is not None:
            return plan
    need = fixed + state("adam", 0) + _tile_bytes(MIN_TILE, halo, deepest, precision, pooling, scale)
    raise BudgetError(
        f"a {width}x{height} level needs at least {format_size(need)} beyond what is already in use, but the "
        f"memory budget leaves {format_size(budget)}: raise --max-memory, or lower the size"
    )


def style_tile(
    width: int, height: int, budget: int, deepest: str, precision: str, pooling: str, scale: float = 1.0
) -> int | None:
    """Tile size for a style image's Gram pass (no gradients) within half the budget; None: in one pass."""

    def fits(pixels: int) -> bool:
        return activation_bytes(pixels, deepest, precision, pooling, grad=False, scale=scale) <= budget / 2

    if fits(width * height):
        return None
    halo = halo_for([deepest])
    tile = GRID
    while fits((tile + GRID + 2 * halo) ** 2):
        tile += GRID
    return max(MIN_TILE, tile)


def _tile_bytes(tile: int, halo: int, deepest: str, precision: str, pooling: str, scale: float) -> int:
    crop = (tile + 2 * halo) ** 2
    return int(activation_bytes(crop, deepest, precision, pooling, grad=True, scale=scale))


def _largest_tile(
    left: int, width: int, height: int, halo: int, deepest: str, precision: str, pooling: str, scale: float
) -> int | None:
    """The largest core size on the 16-px grid whose pass fits in `left` bytes (None when not even MIN_TILE)."""
    cap = math.ceil(max(width, height) / GRID) * GRID
    best = None
    tile = MIN_TILE
    while tile <= cap and _tile_bytes(tile, halo, deepest, precision, pooling, scale) <= left:
        best = tile
        tile += GRID
    return best
