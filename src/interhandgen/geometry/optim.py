"""A small batched Adam for per-sample optimisation problems (contact optimisation of the synthetic data,
contact settling of samples)."""

from __future__ import annotations

import math

import torch


class BatchedAdam:
    """Adam (Kingma & Ba; torch.optim.Adam's update without weight decay) on per-sample parameter rows, with a
    cosine learning-rate decay to 0 over ``steps`` and row selection (samples that finish leave the batch).

    Written out because each row belongs to one sample: dropping finished samples is an index into the
    parameters and both moments, which changes nothing for the others (their losses are independent).
    """

    def __init__(self, params: list[torch.Tensor], lrs: list[float], steps: int,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.params, self.lrs, self.steps = params, lrs, max(int(steps), 1)
        self.betas, self.eps = betas, eps
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.t = 0

    def step(self, grads: list[torch.Tensor]) -> None:
        b1, b2 = self.betas
        # torch's CosineAnnealingLR(T_max=steps, eta_min=0) in closed form: the lr of step t (0-based).
        decay = 0.5 * (1.0 + math.cos(math.pi * self.t / self.steps))
        self.t += 1
        c1, c2 = 1.0 - b1 ** self.t, 1.0 - b2 ** self.t
        for p, g, m, v, lr in zip(self.params, grads, self.m, self.v, self.lrs):
            m.mul_(b1).add_(g, alpha=1.0 - b1)
            v.mul_(b2).addcmul_(g, g, value=1.0 - b2)
            denom = (v / c2).sqrt_().add_(self.eps)
            p.addcdiv_(m, denom, value=-lr * decay / c1)

    def keep(self, rows: torch.Tensor) -> None:
        """Keep only the parameter rows ``rows`` (long [K]) of every parameter and moment."""
        self.params = [p[rows] for p in self.params]
        self.m = [m[rows] for m in self.m]
        self.v = [v[rows] for v in self.v]
