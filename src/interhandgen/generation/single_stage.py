"""The single-stage samplers of the registry's non-cascaded kinds (the cascade is :mod:`.cascade`):

- ``joint``: one reverse diffusion over both hands' 128 numbers (DDIM with the run's schedule); there is no
  conditional stage, so CFG and APG do not apply.
- ``vae``: one decoder pass of latent draws z ~ N(0, I); no diffusion, so neither steps nor guidance apply.

Options a kind cannot honour raise ``ValueError`` instead of being dropped: pass ``settings=None`` to get each
kind's own defaults.
"""

from __future__ import annotations


import torch
from torch import nn

from tqdm.auto import tqdm

from interhandgen._seeding import derived_seed
from interhandgen.data.canonical import HAND_DIM, RIGID_SLICE
from interhandgen.diffusion import ddim_sample
from interhandgen.generation.cascade import CANONICAL_TAIL, SamplerSettings
from interhandgen.models import CASCADED_KINDS
from interhandgen.exceptions import InputError


def check_settings(kind: str, settings: SamplerSettings | None) -> SamplerSettings:
    """The sampler settings used for ``kind``; raises for options the kind cannot honour."""
    if kind in CASCADED_KINDS:
        settings = settings or SamplerSettings()
        settings.validate()
        return settings
    if settings is None:
        return SamplerSettings(cfg_scale=0.0, apg_weight=0.0, settle_steps=0, resample_rounds=0)
    settings.validate()
    if settings.cfg_scale != 0:
        raise InputError(f"model kind {kind!r} has no conditional stage: classifier-free guidance does not apply "
                         f"(settings.cfg_scale must be 0, got {settings.cfg_scale})")
    if settings.apg_weight != 0:
        raise InputError(f"model kind {kind!r} has no conditional stage: anti-penetration guidance does not apply "
                         f"(settings.apg_weight must be 0, got {settings.apg_weight})")
    if settings.settle_steps != 0 or settings.resample_rounds != 0:
        raise InputError(f"model kind {kind!r}: contact settling and resampling belong to the cascaded sampler "
                         f"(settings.settle_steps and settings.resample_rounds must be 0, got {settings.settle_steps} "
                         f"and {settings.resample_rounds})")
    if settings.anchor_steps not in (None, SamplerSettings.anchor_steps):
        raise InputError(f"model kind {kind!r} has no anchor stage: settings.anchor_steps does not apply "
                         f"(leave it None or at its default; settings.steps sets its DDIM steps)")
    if kind == "vae":
        default = SamplerSettings()
        for name in ("steps", "eta", "update"):
            if getattr(settings, name) != getattr(default, name):
                raise InputError(f"model kind 'vae' decodes in one pass: settings.{name} does not apply "
                                 f"(leave it at {getattr(default, name)!r} or pass settings=None)")
    return settings


@torch.no_grad()
def sample_joint(net: nn.Module, schedule, stats_mean: torch.Tensor, stats_std: torch.Tensor, num: int,
                 settings: SamplerSettings, seed: int = 0, batch_size: int = 2500,
                 device: str | torch.device = "cpu", progress: bool = True) -> torch.Tensor:
    """Raw canonical pairs [num, 2, 64] (anchor first) from a joint denoiser ``net(x_t [B, 128], t [B])``.

    ``stats_mean``/``stats_std`` [2, 64] undo the standardisation; the anchor's rotation/translation slots are set
    to the canonical identity (their training loss weight is 0, as for the cascaded anchor).
    """
    _check_count(num, batch_size)
    device = torch.device(device)
    net = net.to(device).eval()
    mean, std = stats_mean.to(device).reshape(1, 2 * HAND_DIM), stats_std.to(device).reshape(1, 2 * HAND_DIM)
    out = torch.empty(num, 2, HAND_DIM, device=device)
    bar = tqdm(total=num, desc="sample (joint)", unit="pair", disable=not progress)
    for bi, start in enumerate(range(0, num, batch_size)):
        b = min(batch_size, num - start)
        gen = torch.Generator().manual_seed(derived_seed(seed, bi))
        z = torch.randn(b, 2 * HAND_DIM, generator=gen).to(device)
        x = ddim_sample(lambda x_t, t, cond=None: net(x_t, t), z, schedule, settings.steps, eta=settings.eta,
                        generator=gen, update=settings.update, temperature=settings.temperature)
        out[start:start + b] = (x * std + mean).reshape(b, 2, HAND_DIM)
        bar.update(b)
    bar.close()
    out[:, 0, RIGID_SLICE] = CANONICAL_TAIL.to(out)
    return _finite(out)


@torch.no_grad()
def sample_vae(net: nn.Module, stats_mean: torch.Tensor, stats_std: torch.Tensor, num: int, seed: int = 0,
               batch_size: int = 2500, device: str | torch.device = "cpu") -> torch.Tensor:
    """Raw canonical pairs [num, 2, 64] from a two-hand VAE: decode z ~ N(0, I) drawn per batch from ``seed``."""
    _check_count(num, batch_size)
    device = torch.device(device)
    net = net.to(device).eval()
    mean, std = stats_mean.to(device).reshape(1, 2 * HAND_DIM), stats_std.to(device).reshape(1, 2 * HAND_DIM)
    out = torch.empty(num, 2, HAND_DIM, device=device)
    for bi, start in enumerate(range(0, num, batch_size)):
        b = min(batch_size, num - start)
        gen = torch.Generator().manual_seed(derived_seed(seed, bi))
        z = torch.randn(b, net.latent_dim, generator=gen).to(device)
        out[start:start + b] = (net.decode(z) * std + mean).reshape(b, 2, HAND_DIM)
    out[:, 0, RIGID_SLICE] = CANONICAL_TAIL.to(out)
    return _finite(out)


def _check_count(num: int, batch_size: int) -> None:
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise InputError(f"num must be a positive integer, got {num!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")


def _finite(x: torch.Tensor) -> torch.Tensor:
    if not torch.isfinite(x).all():
        raise FloatingPointError("sampling produced NaN or inf; check the checkpoint")
    return x
