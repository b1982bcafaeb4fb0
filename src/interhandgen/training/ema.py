"""Exponential moving average of a network's weights (the weights that are exported and sampled)."""

from __future__ import annotations

import torch
from torch import nn
from interhandgen.exceptions import InputError


def warmup_decay(decay: float, updates_done: int) -> float:
    """Decay of the update after ``updates_done`` earlier ones: min(decay, (1 + k) / (10 + k)), the usual warm-up
    (as in diffusers' EMAModel), so the average forgets the random initial weights within the first few hundred
    updates instead of keeping a share decay^k of them."""
    return min(decay, (1.0 + updates_done) / (10.0 + updates_done))


class EMA:
    """Exponential moving average of a module's floating-point parameters and buffers."""

    def __init__(self, module: nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in module.state_dict().items()}

    @torch.no_grad()
    def update(self, module: nn.Module, updates_done: int | None = None) -> None:
        """Average in ``module``'s current weights: with decay :func:`warmup_decay` when ``updates_done`` (the number
        of earlier updates, i.e. the optimiser step, which a resumed run restores) is given, else ``decay``."""
        decay = self.decay if updates_done is None else warmup_decay(self.decay, updates_done)
        for k, v in module.state_dict().items():
            s = self.shadow[k]
            if v.is_floating_point():
                s.mul_(decay).add_(v.detach(), alpha=1.0 - decay)
            else:
                s.copy_(v)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = set(self.shadow) ^ set(state)
        if missing:
            raise InputError(f"EMA state does not match the model: keys {sorted(missing)[:5]} differ")
        for k, v in state.items():
            self.shadow[k].copy_(v)
