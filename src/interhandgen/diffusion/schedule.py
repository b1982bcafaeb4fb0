"""Noise schedules and the forward (noising) process of a discrete-time Gaussian diffusion.

Conventions (the reference code's): timesteps are integers ``t = 0 .. T-1``; ``alphas_cumprod[t]`` is the product of
``1 - beta_i`` for ``i <= t``, so even ``t = 0`` carries a little noise; the forward process is

    x_t = sqrt(alphas_cumprod[t]) * x0 + sqrt(1 - alphas_cumprod[t]) * noise,   noise ~ N(0, I).

A sampler's step that ends "after" ``t = 0`` goes to the clean sample, written ``t = -1`` with ``alphas_cumprod = 1``.
All schedule tensors are float64 (so that products of 1000 factors stay exact to ~1e-15); gathers cast to the
dtype of the data.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import torch

from interhandgen.exceptions import InputError


def _gather(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """values[t] reshaped to broadcast against ``like`` ([B, ...]), in ``like``'s dtype and device."""
    out = values.to(like.device)[t.to(like.device)].to(like.dtype)
    return out.reshape(t.shape[0], *([1] * (like.dim() - 1)))


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A variance schedule: all fields are float64 tensors of shape [T] on one device.

    Attributes:
        betas: per-step noise variances beta_t in (0, 1).
        alphas: 1 - betas.
        alphas_cumprod: cumulative products abar_t = prod_{i<=t} alpha_i.
        alphas_cumprod_prev: abar_{t-1}, with abar_{-1} = 1.
        sqrt_alphas_cumprod, sqrt_one_minus_alphas_cumprod: the forward-process scales.
        posterior_variance: variance of q(x_{t-1} | x_t, x0), beta_t (1 - abar_{t-1}) / (1 - abar_t).
    """

    betas: torch.Tensor
    alphas: torch.Tensor
    alphas_cumprod: torch.Tensor
    alphas_cumprod_prev: torch.Tensor
    sqrt_alphas_cumprod: torch.Tensor
    sqrt_one_minus_alphas_cumprod: torch.Tensor
    posterior_variance: torch.Tensor

    @classmethod
    def from_betas(cls, betas: torch.Tensor) -> "Schedule":
        """Build a schedule from betas [T] (any float dtype; stored as float64)."""
        if not isinstance(betas, torch.Tensor):
            raise TypeError(f"betas must be a torch.Tensor, got {type(betas).__name__}")
        if betas.dim() != 1 or betas.numel() < 1:
            raise InputError(f"betas must have shape [T] with T >= 1, got {list(betas.shape)}")
        betas = betas.detach().to(torch.float64)
        if not torch.isfinite(betas).all() or not ((betas > 0) & (betas < 1)).all():
            raise InputError(
                f"betas must lie in the open interval (0, 1); got min {betas.min().item():.3g}, "
                f"max {betas.max().item():.3g}")
        alphas = 1.0 - betas
        abar = torch.cumprod(alphas, 0)
        abar_prev = torch.cat([abar.new_ones(1), abar[:-1]])
        return cls(
            betas=betas,
            alphas=alphas,
            alphas_cumprod=abar,
            alphas_cumprod_prev=abar_prev,
            sqrt_alphas_cumprod=abar.sqrt(),
            sqrt_one_minus_alphas_cumprod=(1.0 - abar).sqrt(),
            posterior_variance=betas * (1.0 - abar_prev) / (1.0 - abar),
        )

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> "Schedule":
        """The schedule named by a training config (``schedule``, ``num_timesteps``, ``beta_start``, ``beta_end``;
        the defaults are :class:`interhandgen.training.TrainConfig`'s): the ONE place a schedule is built from one."""
        kind = cfg.get("schedule", "linear")
        T = int(cfg.get("num_timesteps", 129))
        if kind == "linear":
            return cls.linear(float(cfg.get("beta_start", 1e-4)), float(cfg.get("beta_end", 0.01)), T)
        if kind == "cosine":
            return cls.cosine(T)
        raise InputError(f"unknown schedule {kind!r} in the model's training config (expected 'linear' or 'cosine')")

    @classmethod
    def linear(cls, beta_start: float = 1e-4, beta_end: float = 0.01, num_timesteps: int = 129) -> "Schedule":
        """Betas evenly spaced from ``beta_start`` to ``beta_end`` (both included), as in DDPM.

        The defaults are the reference code's (1e-4 -> 0.01, T = 129). Note that this schedule does not reach pure
        noise: abar_{T-1} = 0.52, so the last noisy marginal of standardised data still holds ~72% signal.
        """
        if isinstance(num_timesteps, bool) or not isinstance(num_timesteps, int) or num_timesteps < 1:
            raise InputError(f"num_timesteps must be a positive int, got {num_timesteps!r}")
        if not (0 < beta_start < 1 and 0 < beta_end < 1):
            raise InputError(f"beta_start and beta_end must lie in (0, 1), got {beta_start}, {beta_end}")
        return cls.from_betas(torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64))

    @classmethod
    def cosine(cls, num_timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> "Schedule":
        """The cosine schedule of Nichol & Dhariwal (2021): abar(u) = cos^2((u + s) / (1 + s) * pi / 2), u = t / T.

        Betas are 1 - abar(t+1) / abar(t), capped at ``max_beta`` (part of the published definition: it avoids the
        singular last step where abar reaches 0).
        """
        if isinstance(num_timesteps, bool) or not isinstance(num_timesteps, int) or num_timesteps < 1:
            raise InputError(f"num_timesteps must be a positive int, got {num_timesteps!r}")
        if s <= 0:
            raise InputError(f"s must be > 0, got {s}")
        if not 0 < max_beta < 1:
            raise InputError(f"max_beta must lie in (0, 1), got {max_beta}")
        u = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
        f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
        betas = torch.clamp(1.0 - f[1:] / f[:-1], max=max_beta)
        return cls.from_betas(betas)

    @property
    def num_timesteps(self) -> int:
        return self.betas.shape[0]

    @property
    def device(self) -> torch.device:
        return self.betas.device

    def to(self, device: torch.device | str) -> "Schedule":
        """A copy with all tensors on ``device`` (float64 is kept)."""
        return Schedule(**{f.name: getattr(self, f.name).to(device) for f in dataclasses.fields(self)})

    def check_timesteps(self, t: torch.Tensor, name: str = "t", allow_minus_one: bool = False) -> None:
        """Raise unless ``t`` is an integer tensor [B] with values in 0..T-1 (or -1 when allowed)."""
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of int64 timesteps, got {type(t).__name__}")
        if t.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
            raise TypeError(f"{name} must hold integer timesteps (int64), got dtype {t.dtype}")
        if t.dim() != 1:
            raise InputError(f"{name} must have shape [B], got {list(t.shape)}")
        lo = -1 if allow_minus_one else 0
        if t.numel() and (int(t.min()) < lo or int(t.max()) >= self.num_timesteps):
            raise InputError(
                f"{name} must lie in {lo}..{self.num_timesteps - 1}, got range {int(t.min())}..{int(t.max())}")


def _check_pair(a: torch.Tensor, b: torch.Tensor, a_name: str, b_name: str) -> None:
    if a.shape != b.shape:
        raise InputError(f"{a_name} and {b_name} must have the same shape, got {list(a.shape)} and {list(b.shape)}")
    if a.dim() < 1:
        raise InputError(f"{a_name} must have a batch dimension, got a scalar")


def q_sample(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, schedule: Schedule) -> torch.Tensor:
    """Draw x_t ~ q(x_t | x0) with given noise: sqrt(abar_t) x0 + sqrt(1 - abar_t) noise.

    Args:
        x0: clean samples [B, ...].
        t: int timesteps [B] in 0..T-1.
        noise: standard normal draws [B, ...], same shape as x0.
    Returns: x_t [B, ...] in x0's dtype.
    """
    _check_pair(x0, noise, "x0", "noise")
    schedule.check_timesteps(t)
    if t.shape[0] != x0.shape[0]:
        raise InputError(f"t has {t.shape[0]} entries but x0 has batch size {x0.shape[0]}")
    return _gather(schedule.sqrt_alphas_cumprod, t, x0) * x0 + _gather(schedule.sqrt_one_minus_alphas_cumprod, t, x0) * noise


def eps_from_x0(x_t: torch.Tensor, t: torch.Tensor, x0: torch.Tensor, schedule: Schedule) -> torch.Tensor:
    """The noise implied by a clean-sample estimate: (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t)."""
    _check_pair(x_t, x0, "x_t", "x0")
    schedule.check_timesteps(t)
    return (x_t - _gather(schedule.sqrt_alphas_cumprod, t, x_t) * x0) / _gather(
        schedule.sqrt_one_minus_alphas_cumprod, t, x_t)


def x0_from_eps(x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, schedule: Schedule) -> torch.Tensor:
    """The clean sample implied by a noise estimate: (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)."""
    _check_pair(x_t, eps, "x_t", "eps")
    schedule.check_timesteps(t)
    return (x_t - _gather(schedule.sqrt_one_minus_alphas_cumprod, t, x_t) * eps) / _gather(
        schedule.sqrt_alphas_cumprod, t, x_t)


def q_posterior(x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, schedule: Schedule
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean [B, ...] and variance [B, 1...] of q(x_{t-1} | x_t, x0) (DDPM eq. 7); at t = 0 the variance is 0.

    mean = sqrt(abar_{t-1}) beta_t / (1 - abar_t) x0 + sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t) x_t.
    """
    _check_pair(x_t, x0, "x_t", "x0")
    schedule.check_timesteps(t)
    abar = _gather(schedule.alphas_cumprod, t, x_t)
    abar_prev = _gather(schedule.alphas_cumprod_prev, t, x_t)
    beta = _gather(schedule.betas, t, x_t)
    alpha = _gather(schedule.alphas, t, x_t)
    mean = abar_prev.sqrt() * beta / (1 - abar) * x0 + alpha.sqrt() * (1 - abar_prev) / (1 - abar) * x_t
    return mean, _gather(schedule.posterior_variance, t, x_t)
