"""Sampling every model kind of the registry into the standard samples format (a world-frame TwoHandSet).

- ``shared`` / ``separate``: the cascaded sampler of :class:`interhandgen.pipeline.InterHandGen` (anchor, then the
  other hand conditioned on it, with CFG and optional APG).
- ``joint``: one reverse diffusion over both hands' 128 numbers (DDIM with the run's schedule); there is no
  conditional stage, so CFG and APG do not apply.
- ``vae``: one decoder pass of latent draws z ~ N(0, I); no diffusion, so neither steps nor guidance apply.

Options a kind cannot honour raise ``ValueError`` instead of being dropped: pass ``settings=None`` to get each
kind's own defaults.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from interhandgen.baselines import CASCADED_KINDS, model_kind
from interhandgen.data.format import HandModelSpec, TwoHandSet
from interhandgen.sampling import CANONICAL_TAIL, SamplerSettings

ANCHOR_SIDE = "left"  # every kind generates the anchor as the left hand, as the cascaded pipeline does


def _seed_for_batch(seed: int, batch_index: int) -> int:
    # Same scheme as interhandgen.sampling.cascaded_sample: batch i of a seed has its own generator.
    return int(seed) * 1_000_003 + int(batch_index)


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
        raise ValueError(f"model kind {kind!r} has no conditional stage: classifier-free guidance does not apply "
                         f"(settings.cfg_scale must be 0, got {settings.cfg_scale})")
    if settings.apg_weight != 0:
        raise ValueError(f"model kind {kind!r} has no conditional stage: anti-penetration guidance does not apply "
                         f"(settings.apg_weight must be 0, got {settings.apg_weight})")
    if settings.settle_steps != 0 or settings.resample_rounds != 0:
        raise ValueError(f"model kind {kind!r}: contact settling and resampling belong to the cascaded sampler "
                         f"(settings.settle_steps and settings.resample_rounds must be 0, got {settings.settle_steps} "
                         f"and {settings.resample_rounds})")
    if kind == "vae":
        default = SamplerSettings()
        for name in ("steps", "eta", "update"):
            if getattr(settings, name) != getattr(default, name):
                raise ValueError(f"model kind 'vae' decodes in one pass: settings.{name} does not apply "
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
    from tqdm.auto import tqdm

    from interhandgen.diffusion import ddim_sample

    _check_count(num, batch_size)
    device = torch.device(device)
    net = net.to(device).eval()
    mean, std = stats_mean.to(device).reshape(1, 128), stats_std.to(device).reshape(1, 128)
    out = torch.empty(num, 2, 64, device=device)
    bar = tqdm(total=num, desc="sample (joint)", unit="pair", disable=not progress)
    for bi, start in enumerate(range(0, num, batch_size)):
        b = min(batch_size, num - start)
        gen = torch.Generator().manual_seed(_seed_for_batch(seed, bi))
        z = torch.randn(b, 128, generator=gen).to(device)
        x = ddim_sample(lambda x_t, t, cond=None: net(x_t, t), z, schedule, settings.steps, eta=settings.eta,
                        generator=gen, update=settings.update)
        out[start:start + b] = (x * std + mean).reshape(b, 2, 64)
        bar.update(b)
    bar.close()
    out[:, 0, 55:] = CANONICAL_TAIL.to(out)
    return _finite(out)


@torch.no_grad()
def sample_vae(net: nn.Module, stats_mean: torch.Tensor, stats_std: torch.Tensor, num: int, seed: int = 0,
               batch_size: int = 2500, device: str | torch.device = "cpu") -> torch.Tensor:
    """Raw canonical pairs [num, 2, 64] from a two-hand VAE: decode z ~ N(0, I) drawn per batch from ``seed``."""
    _check_count(num, batch_size)
    device = torch.device(device)
    net = net.to(device).eval()
    mean, std = stats_mean.to(device).reshape(1, 128), stats_std.to(device).reshape(1, 128)
    out = torch.empty(num, 2, 64, device=device)
    for bi, start in enumerate(range(0, num, batch_size)):
        b = min(batch_size, num - start)
        gen = torch.Generator().manual_seed(_seed_for_batch(seed, bi))
        z = torch.randn(b, net.latent_dim, generator=gen).to(device)
        out[start:start + b] = (net.decode(z) * std + mean).reshape(b, 2, 64)
    out[:, 0, 55:] = CANONICAL_TAIL.to(out)
    return _finite(out)


def _check_count(num: int, batch_size: int) -> None:
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise ValueError(f"num must be a positive integer, got {num!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")


def _finite(x: torch.Tensor) -> torch.Tensor:
    if not torch.isfinite(x).all():
        raise FloatingPointError("sampling produced NaN or inf; check the checkpoint")
    return x


def sample_canonical(model, num: int, seed: int = 0, settings: SamplerSettings | None = None,
                     batch_size: int = 2500, device: str | torch.device = "cpu", progress: bool = True,
                     hand_model: HandModelSpec | None = None) -> torch.Tensor:
    """Raw canonical pairs [num, 2, 64] (anchor = left first) from a loaded model of any kind.

    Args:
        model: a :class:`interhandgen.pipeline.LoadedModel` (net, model_config, stats, train_config).
        settings: sampler settings; None gives the kind's defaults (see :func:`check_settings`).
    """
    from interhandgen.pipeline import InterHandGen, schedule_from_train_config

    kind = model_kind(model.model_config)
    settings = check_settings(kind, settings)
    if kind in CASCADED_KINDS:
        gen = InterHandGen(model, hand_model, device)
        return gen.sample_canonical(num, seed, settings, batch_size, progress)
    if kind == "joint":
        schedule = schedule_from_train_config(model.train_config).to(torch.device(device))
        return sample_joint(model.net, schedule, model.stats_mean, model.stats_std, num, settings, seed,
                            batch_size, device, progress)
    return sample_vae(model.net, model.stats_mean, model.stats_std, num, seed, batch_size, device)


def checkpoint_kind(path: str | Path) -> str:
    """The model kind stored with a run folder, checkpoint.pt or model.safetensors."""
    from interhandgen.pipeline import load_model

    return model_kind(load_model(path).model_config)


def sample_checkpoint(path: str | Path, num: int, seed: int = 0, settings: SamplerSettings | None = None,
                      batch_size: int = 2500, device: str | torch.device = "cpu", progress: bool = True,
                      hand_model: HandModelSpec | None = None) -> TwoHandSet:
    """Sample ``num`` world-frame pairs (the left hand at the origin, unrotated) from a trained model of any kind.

    Args:
        path: a run folder, checkpoint.pt or model.safetensors written by ``interhandgen train``.
        seed: batch i draws from a generator seeded by (seed, i): same seed and batch size, same output.
        settings: sampler settings; None gives the kind's defaults. Options a kind cannot honour raise.
        hand_model: the hand model the run was trained with (default: the bundled open hand).
    Returns:
        A :class:`TwoHandSet` in the standard samples format, with the model kind, source, seed and settings
        recorded in its metadata.
    """
    from interhandgen.data.canonical import to_world
    from interhandgen.pipeline import load_model

    model = load_model(path, device)
    kind = model_kind(model.model_config)
    settings = check_settings(kind, settings)
    spec = hand_model or HandModelSpec.open_hand()
    x = sample_canonical(model, num, seed, settings, batch_size, device, progress, spec)
    hands = spec.load(pose_space="pca", device=torch.device(device))
    meta: dict[str, Any] = {"generator": "interhandgen", "model": model.source, "model_kind": kind, "seed": seed,
                            "sampler": dataclasses.asdict(settings)}
    if kind == "vae":
        meta["sampler"] = {"decoder_pass": True}
    return to_world(x, hands, anchor=ANCHOR_SIDE, hand_model=spec, metadata=meta)
