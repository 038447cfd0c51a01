"""The device-side L-BFGS steps exactly as PyTorch's LBFGS (max_iter=1, no line search) does, history and all."""

from __future__ import annotations

import pytest
import torch

from stylelayer.core.lbfgs import LBFGS


def rosenbrock(x: torch.Tensor) -> torch.Tensor:
    """Curved and badly conditioned: a small difference in any direction would show within a few iterations."""
    return (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum() + 0.1 * (x**4).sum()


def _grad(f, x: torch.Tensor) -> torch.Tensor:
    leaf = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(f(leaf), leaf)
    return g


def _trajectories(f, x0: torch.Tensor, history: int, iterations: int, fixed_shapes: bool):
    theirs = x0.clone().requires_grad_(True)
    reference = torch.optim.LBFGS(
        [theirs], lr=1, max_iter=1, history_size=history, tolerance_grad=0.0, tolerance_change=0.0
    )

    def closure():
        reference.zero_grad()
        loss = f(theirs)
        loss.backward()
        return loss

    ours = x0.clone()
    optimiser = LBFGS(ours, history)
    optimiser.fixed_shapes = fixed_shapes
    for _ in range(iterations):
        reference.step(closure)
        optimiser.step(_grad(f, ours))
        yield theirs.detach().clone(), ours.clone()


@pytest.mark.parametrize("history", [1, 3, 10, 100])
@pytest.mark.parametrize("fixed_shapes", [False, True])
def test_same_iterates_as_pytorch_in_float64(history, fixed_shapes):
    torch.manual_seed(0)
    x0 = (torch.randn(40) * 0.5).double()
    worst = 0.0
    for theirs, ours in _trajectories(rosenbrock, x0, history, 60, fixed_shapes):
        worst = max(worst, float((theirs - ours).norm() / theirs.norm()))
    assert worst < 1e-5, worst


def test_same_iterates_as_pytorch_in_float32_on_a_convex_problem():
    """In the precision the engine uses, on a problem where rounding does not grow: a fixed history wraps twice."""
    torch.manual_seed(1)
    a = torch.randn(64, 64)
    hessian = a @ a.t() / 64 + 0.1 * torch.eye(64)
    target = torch.randn(64)

    def quadratic(x):
        diff = x - target
        return 0.5 * diff @ (hessian @ diff) + 0.01 * (x**4).sum()

    worst = 0.0
    for theirs, ours in _trajectories(quadratic, torch.zeros(64), 5, 20, fixed_shapes=False):
        worst = max(worst, float((theirs - ours).norm() / theirs.norm()))
    assert worst < 1e-4, worst


def test_a_pair_without_curvature_is_skipped():
    """PyTorch skips a pair with yᵀs <= 1e-10: the history stays empty and the direction is -γg with γ = 1."""
    x = torch.zeros(3, dtype=torch.float64)
    optimiser = LBFGS(x, 4)
    g = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    optimiser.step(g)
    optimiser.step(g)  # the same gradient after a move: y = 0, so no curvature; the direction stays -γg with γ = 1
    assert torch.equal(optimiser.pairs, torch.zeros_like(optimiser.pairs))
    assert int(optimiser.head) == 0
    assert torch.allclose(optimiser.direction, -g)


def test_refuses_what_it_cannot_step():
    with pytest.raises(ValueError, match="history"):
        LBFGS(torch.zeros(3), 0)
    with pytest.raises(ValueError, match="contiguous"):
        LBFGS(torch.zeros(3, 4).t(), 2)
