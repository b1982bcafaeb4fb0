"""Model kinds behind one registry, so that the trainer, checkpoints and sampler serve every baseline.

``model_config["kind"]``:
- ``"shared"`` (default): the InterHandGen denoiser, ONE network for both stages;
- ``"separate"``: the same architecture twice, one network per stage ("w/o shared network");
- ``"joint"``: one diffusion over both hands jointly ("w/o decomposition");
- ``"vae"``: a two-hand VAE prior.
The remaining keys configure the network (for shared/separate: :class:`interhandgen.models.DenoiserConfig`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from interhandgen.baselines.networks import JointDenoiser, SeparateStageDenoisers, TwoHandVAE

KINDS = ("shared", "separate", "joint", "vae")
CASCADED_KINDS = ("shared", "separate")


def model_kind(model_config: dict[str, Any]) -> str:
    kind = model_config.get("kind", "shared")
    if kind not in KINDS:
        raise ValueError(f"model.kind must be one of {KINDS}, got {kind!r}")
    return kind


def build_model(model_config: dict[str, Any]) -> nn.Module:
    from interhandgen.models import DenoiserConfig, build_denoiser

    kind = model_kind(model_config)
    params = {k: v for k, v in model_config.items() if k not in ("kind", "kl_weight")}
    if kind == "shared":
        return build_denoiser(DenoiserConfig.from_dict(params))
    if kind == "separate":
        return SeparateStageDenoisers(build_denoiser(DenoiserConfig.from_dict(params)),
                                      build_denoiser(DenoiserConfig.from_dict(params)))
    try:
        return JointDenoiser(**params) if kind == "joint" else TwoHandVAE(**params)
    except TypeError as exc:
        raise ValueError(f"model config for kind {kind!r}: {exc}") from None


def _dim_weight(n: int, device, dtype, anchor_loss_dims: int) -> torch.Tensor:
    """[128] weights: the anchor's canonical rotation/translation slots (constant) carry no loss."""
    w = torch.ones(128, device=device, dtype=dtype)
    w[anchor_loss_dims:64] = 0.0
    return w


def joint_loss(net: nn.Module, batch: torch.Tensor, schedule, cfg, generator: torch.Generator):
    from interhandgen.diffusion import q_sample
    from interhandgen.training.trainer import draw_timesteps

    b = batch.shape[0]
    x0 = batch.reshape(b, 128)
    t = draw_timesteps(b, cfg.num_timesteps, cfg.antithetic_timesteps, generator).to(batch.device)
    noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(batch.device)
    pred = net(q_sample(x0, t, noise, schedule), t)
    w = _dim_weight(b, batch.device, x0.dtype, cfg.anchor_loss_dims)
    err = ((pred - x0) ** 2 * w).sum(1) / w.sum()
    loss = err.mean()
    return loss, loss.detach(), loss.detach()


def vae_loss(net: nn.Module, batch: torch.Tensor, kl_weight: float, cfg, generator: torch.Generator):
    b = batch.shape[0]
    x = batch.reshape(b, 128)
    recon, mu, logvar = net(x, generator=generator)
    w = _dim_weight(b, batch.device, x.dtype, cfg.anchor_loss_dims)
    rec = (((recon - x) ** 2 * w).sum(1) / w.sum()).mean()
    kl = (-0.5 * (1 + logvar - mu * mu - logvar.exp()).sum(1)).mean() / w.sum()
    return rec + kl_weight * kl, rec.detach(), kl.detach()


# Sampling of every kind (imported last: it uses the registry above).
from interhandgen.baselines.sampling import (  # noqa: E402
    check_settings,
    checkpoint_kind,
    sample_canonical,
    sample_checkpoint,
    sample_joint,
    sample_vae,
)

__all__ = ["KINDS", "CASCADED_KINDS", "model_kind", "build_model", "joint_loss", "vae_loss", "check_settings",
           "checkpoint_kind", "sample_canonical", "sample_checkpoint", "sample_joint", "sample_vae"]
