"""L-BFGS as PyTorch's `torch.optim.LBFGS(max_iter=1, line_search_fn=None)` steps it, without ever asking the host.

PyTorch's L-BFGS reads about 2·history numbers back from the device every iteration (its two-loop recursion
passes each α and β as a Python float, and tests ys > 1e-10 and the descent condition on the host): on a GPU each
read drains the queue, and a 512 px iteration spent most of its 13-19 ms waiting. This one keeps every quantity on
the device and computes the same direction with the compact representation of Byrd, Nocedal and Schnabel (1994;
Nocedal and Wright, "Numerical Optimization", eq. 7.24):

    H·g = γg + S·p₁ − γY·u,   u = R⁻¹Sᵀg,   p₁ = R⁻ᵀ((D + γYᵀY)·u − γYᵀg)

where S and Y hold the last `history` steps and gradient changes, R is the upper triangle of SᵀY in time order and D
its diagonal. That is two passes over the history (one matrix product each) instead of 2·history dot products and
updates, and a fixed sequence of kernels: a step can be captured in a CUDA graph.

The history is a ring whose position lives on the device: a pair without curvature (yᵀs ≤ 1e-10) is skipped as
PyTorch skips it, without the host knowing. Empty slots hold zero pairs, which add nothing to the direction. In exact
arithmetic every iterate is PyTorch's; `tests/core/test_lbfgs.py` compares the two.
"""

from __future__ import annotations

import torch
from torch import Tensor

_CURVATURE_MIN = 1e-10  # PyTorch's threshold for accepting a pair (yᵀs)


class LBFGS:
    """Steps `x` (any shape, contiguous) in place from the gradients it is given, one iteration per `step`.

    `lr` is PyTorch's lr (the step length after the first iteration); `tolerance_change` its descent test: a
    direction with gᵀd > −tolerance_change is not taken (the image stays where it is), as in PyTorch.
    """

    def __init__(self, x: Tensor, history: int, lr: float = 1.0, tolerance_change: float = 0.0):
        if history < 1:
            raise ValueError("L-BFGS needs a history of at least 1")
        if not x.is_contiguous():
            raise ValueError("L-BFGS steps a contiguous tensor in place")
        self.x = x
        self.history = history
        self.lr = lr
        self.tolerance_change = tolerance_change
        device, dtype, n = x.device, x.dtype, x.numel()
        self.pairs = torch.zeros(2 * history, n, device=device, dtype=dtype)  # rows 0..h-1: steps s; h..2h-1: changes y
        # The small history×history algebra runs in float64 where the device has it (Apple's MPS has not).
        self.small = torch.float32 if device.type == "mps" else torch.float64
        self.sy = torch.zeros(history, history, device=device, dtype=self.small)  # [i, j] = s_i · y_j
        self.yy = torch.zeros(history, history, device=device, dtype=self.small)  # [i, j] = y_i · y_j
        self.gamma = torch.ones((), device=device, dtype=self.small)  # H₀ = γI, γ = yᵀs / yᵀy of the last pair
        self.head = torch.zeros(1, device=device, dtype=torch.long)  # the slot the next pair goes to
        self.previous_grad = torch.zeros(n, device=device, dtype=dtype)
        self.direction = torch.zeros(n, device=device, dtype=dtype)
        self.t = torch.zeros((), device=device, dtype=dtype)  # the last step length
        self.started = False
        self.offered = 0  # pairs offered so far: at least the stored ones, known without asking the device
        self.fixed_shapes = False  # True: every step runs the same kernels on the same shapes (CUDA graphs)
        self._ages = torch.arange(history, device=device)

    def step(self, grad: Tensor) -> None:
        """One iteration from the gradient at the current `x`: update the history, find the direction, move."""
        g = grad.reshape(-1)
        if not self.started:
            # The first iteration: steepest descent with a step of at most 1/|g|₁ (PyTorch's first step length).
            self.direction.copy_(g).neg_()
            self.t.copy_(torch.clamp(1.0 / g.abs().sum(), max=1.0) * self.lr)
            self.started = True
        else:
            self._remember(g)
            self.direction.copy_(self._inverse_hessian_times(g)).neg_()
            self.t.fill_(self.lr)
        self.previous_grad.copy_(g)
        descends = (g @ self.direction) <= -self.tolerance_change
        self.x.view(-1).add_(self.direction * torch.where(descends, self.t, torch.zeros_like(self.t)))

    def _rows(self) -> tuple[Tensor, Tensor, Tensor | None]:
        """The history's steps S and changes Y as row views, and the slots in time order (None: already in order).

        Until the ring is full only the pairs stored so far are read (a level of 37 iterations at 12 MP reads a
        third of what a full history would); with `fixed_shapes` (a CUDA graph) always the whole ring.
        """
        h = self.history
        if self.fixed_shapes or self.offered >= h:
            return self.pairs[:h], self.pairs[h:], (self.head + self._ages) % h  # the slot after the newest is oldest
        # Slots not yet filled are zero pairs, which add nothing wherever they stand in the order.
        return self.pairs[: self.offered], self.pairs[h : h + self.offered], None

    def _remember(self, g: Tensor) -> None:
        """Store the pair (s, y) of the last move in the ring, or zeros where its curvature yᵀs is too small."""
        h = self.history
        y = g - self.previous_grad
        s = self.direction * self.t
        ys = y @ s
        accept = ys > _CURVATURE_MIN
        gamma = ys.to(self.small) / (y @ y).to(self.small)
        self.gamma.copy_(torch.where(accept, gamma, self.gamma))
        slot = self.head % h
        # A pair without curvature is skipped, as PyTorch does: the slot keeps what it held and the ring stays put.
        s = torch.where(accept, s, self.pairs.index_select(0, slot)[0])
        y = torch.where(accept, y, self.pairs.index_select(0, slot + h)[0])
        self.pairs.index_copy_(0, slot, s.unsqueeze(0))
        self.pairs.index_copy_(0, slot + h, y.unsqueeze(0))
        self.head.add_(accept.to(self.head.dtype))
        self.offered += 1
        # The new row and column of SᵀY and YᵀY (the new pair included); slots not yet stored are zero.
        steps, changes, _ = self._rows()
        k = steps.shape[0]
        s_dot_new_y = (steps @ y).to(self.small)  # s_i · y_new
        new = (changes @ torch.stack([s, y], 1)).to(self.small)  # y_j · s_new, y_j · y_new
        self.sy[:k].index_copy_(1, slot, s_dot_new_y.unsqueeze(1))
        self.sy[:, :k].index_copy_(0, slot, new[:, 0].unsqueeze(0))
        self.yy[:k].index_copy_(1, slot, new[:, 1].unsqueeze(1))
        self.yy[:, :k].index_copy_(0, slot, new[:, 1].unsqueeze(0))

    def _inverse_hessian_times(self, g: Tensor) -> Tensor:
        """H·g from the stored pairs in time order (oldest first); zero pairs drop out."""
        steps, changes, order = self._rows()
        k = steps.shape[0]
        a, b = (steps @ g).to(self.small), (changes @ g).to(self.small)  # Sᵀg, Yᵀg
        sy, yy = self.sy[:k, :k], self.yy[:k, :k]
        if order is not None:
            a, b = a.index_select(0, order), b.index_select(0, order)
            sy = sy.index_select(0, order).index_select(1, order)
            yy = yy.index_select(0, order).index_select(1, order)
        d = torch.diagonal(sy)
        # R: SᵀY's upper triangle; a zero pair gets 1 on the diagonal (its row and column are zero: no coupling).
        r = torch.triu(sy) + torch.diag((d == 0).to(sy.dtype))
        u = torch.linalg.solve_triangular(r, a.unsqueeze(1), upper=True)
        v = d.unsqueeze(1) * u + self.gamma * (yy @ u) - self.gamma * b.unsqueeze(1)
        p1 = torch.linalg.solve_triangular(r.t(), v, upper=False).squeeze(1)
        p2 = -self.gamma * u.squeeze(1)
        if order is not None:  # back from time order to the ring's slots
            p1 = torch.zeros_like(p1).index_copy_(0, order, p1)
            p2 = torch.zeros_like(p2).index_copy_(0, order, p2)
        return self.gamma.to(g.dtype) * g + p1.to(g.dtype) @ steps + p2.to(g.dtype) @ changes
