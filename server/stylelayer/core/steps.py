"""One optimisation iteration of a level: the loss, its gradient and the optimiser's step.

On a GPU a small level's iteration is a few hundred short kernels: launched one by one from Python, and with the
host waiting for the device wherever a number is read, the card sat idle most of the time (13-19 ms per 512 px
iteration on an H200). Here a whole-image L-BFGS iteration never reads the device (see `lbfgs.LBFGS`), and on CUDA
it is captured once per level as a CUDA graph and replayed: one launch per iteration, one read of the losses.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from .lbfgs import LBFGS
from .memory import LevelPlan
from .objective import Objective, tiled_loss_and_grad
from .tiling import RaiseIfCancelled, Tile, TileProgress

log = logging.getLogger(__name__)

GRAPH_MAX_PIXELS = 2048 * 2048  # above this an iteration's kernels run long enough that launching them costs nothing
GRAPH_WARMUP = 2  # eager iterations on a side stream before capture, as CUDA graphs require


class LevelSteps:
    """Steps the image `x` of one level in place; each call runs one iteration and returns its losses.

    The optimiser sees the loss relative to its value at the first iteration: in the paper's units losses reach
    1e11, and PyTorch's L-BFGS (whose first step is 1/|g|₁) then takes a uselessly tiny step and diverges after it.
    """

    def __init__(
        self,
        objective: Objective,
        x: Tensor,
        plan: LevelPlan,
        lr: float,
        tiles: Callable[[], Sequence[Tile]] | None = None,
        check: RaiseIfCancelled | None = None,
        on_tile: TileProgress | None = None,
    ):
        self.objective, self.x, self.plan = objective, x, plan
        self.tiles, self.check, self.on_tile = tiles, check, on_tile
        self.scale = torch.zeros((), device=x.device)
        self.done = 0
        self.lbfgs: LBFGS | None = None
        self.adam: torch.optim.Adam | None = None
        if plan.optimizer == "lbfgs":
            self.lbfgs = LBFGS(x, plan.history, lr)
        else:
            x.requires_grad_(True)
            self.adam = torch.optim.Adam([x], lr=lr)
        small = x.numel() <= 3 * GRAPH_MAX_PIXELS
        self.graphed = x.device.type == "cuda" and plan.tile is None and self.lbfgs is not None and small
        if self.graphed:
            assert self.lbfgs is not None
            self.lbfgs.fixed_shapes = True  # the warm-up runs the kernels the graph will hold
        self.graph: torch.cuda.CUDAGraph | None = None
        self.graph_losses: Tensor | None = None

    def __call__(self) -> dict[str, float]:
        if self.graphed and self.graph is None and self.done == 1 + GRAPH_WARMUP:
            self._capture()
        if self.graph is not None:
            self.graph.replay()
            assert self.graph_losses is not None
            losses = self.graph_losses
        elif self.graphed and self.done >= 1:
            side = torch.cuda.Stream(self.x.device)
            side.wait_stream(torch.cuda.current_stream(self.x.device))
            with torch.cuda.stream(side):
                losses = self._iteration()
            torch.cuda.current_stream(self.x.device).wait_stream(side)
        else:
            losses = self._iteration()
        self.done += 1
        return self.objective.totals(losses.tolist())  # the one read from the device per iteration

    def close(self) -> None:
        """Free the graph's memory pool (the level's activations) before the next level plans its memory."""
        self.graph = self.graph_losses = None

    def _iteration(self) -> Tensor:
        losses, grad = self._whole() if self.plan.tile is None else self._tiled()
        if self.lbfgs is not None:
            self.lbfgs.step(grad)
        else:
            assert self.adam is not None
            self.x.grad = grad
            self.adam.step()
            with torch.no_grad():  # clamping under L-BFGS would corrupt its curvature history: it clamps at the end
                self.x.clamp_(0, 1)
        return losses

    def _whole(self) -> tuple[Tensor, Tensor]:
        """The terms' losses and the gradient of the scaled weighted total, without reading the device."""
        leaf = self.x.detach().requires_grad_(True)
        values = self.objective.whole_losses(leaf)
        total = self.objective.total(values)
        if self.done == 0:
            self.scale.copy_(1.0 / total.detach().clamp(min=1e-12))
        (grad,) = torch.autograd.grad(total * self.scale, leaf)
        # channels_last inside the network hands back a channels_last gradient; the optimisers step it flat (NCHW).
        return torch.stack(values).detach(), grad.contiguous()

    def _tiled(self) -> tuple[Tensor, Tensor]:
        """As `_whole`, tile by tile: without reading the device either."""
        assert self.tiles is not None
        values, grad = tiled_loss_and_grad(self.objective, self.x, self.tiles(), self.check, self.on_tile)
        if self.done == 0:
            self.scale.copy_(1.0 / self.objective.total(list(values)).clamp(min=1e-12))
        return values, grad.mul_(self.scale)

    def _capture(self) -> None:
        """Record one iteration as a CUDA graph; where capture fails the level goes on eagerly (only slower)."""
        device = self.x.device
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()  # the warm-up's activations, so the graph's pool does not double the level's memory
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                self.graph_losses = self._iteration()
        except RuntimeError as exc:
            log.warning("CUDA graph capture failed, running the level without it: %s", exc)
            self.graphed = False
            self.graph_losses = None
            return
        self.graph = graph
