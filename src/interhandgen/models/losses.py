"""Training objectives of the registered model kinds (pure functions of a network and a standardised batch).

Each returns (total loss, part 1, part 2) for a batch [b, 2, 64] of standardised canonical pairs (anchor first);
``cfg`` is the training config (:class:`interhandgen.training.TrainConfig`, read by attribute).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from interhandgen.diffusion import q_sample
from interhandgen.models.losses_geometry import PartnerGeometry, config_timestep_weights


def draw_timesteps(n: int, num_timesteps: int, antithetic: bool, generator: torch.Generator) -> torch.Tensor:
    if not antithetic:
        return torch.randint(0, num_timesteps, (n,), generator=generator)
    half = torch.randint(0, num_timesteps, ((n + 1) // 2,), generator=generator)
    return torch.cat([half, num_timesteps - 1 - half])[:n]


def diffusion_loss(
    net: nn.Module,
    batch: torch.Tensor,
    schedule,
    cfg: Any,
    generator: torch.Generator,
    geometry: PartnerGeometry | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Loss of one batch [b, 2, 64] (standardised; anchor first). Returns (total, anchor part, other part).

    Both stages go through the network in ONE forward pass of up to 2b rows.
    ``cfg``: the training config (:class:`interhandgen.training.TrainConfig` or any object with its
    ``num_timesteps``, ``cond_drop_prob``, ``antithetic_timesteps`` and ``anchor_loss_dims``; optional
    ``loss_weighting``, ``min_snr_gamma``, ``geometry_weight``, ``contact_weight``, ``geometry_rows``, see
    :mod:`interhandgen.models.losses_geometry`). ``geometry``: needed when a geometric weight is > 0; its terms
    (cm^2) are added to the conditioned rows' parameter loss, on the first ``geometry_rows`` of them.
    """
    b = batch.shape[0]
    anchor, other = batch[:, 0], batch[:, 1]
    device = batch.device
    T = cfg.num_timesteps
    if cfg.cond_drop_prob is None:
        x0 = torch.cat([anchor, other])
        cond = torch.cat([torch.zeros_like(anchor), anchor])
        mask = torch.cat([torch.zeros(b, dtype=torch.bool), torch.ones(b, dtype=torch.bool)]).to(device)
    else:
        drop = (torch.rand(b, generator=generator) < cfg.cond_drop_prob).to(device)
        x0 = torch.where(drop[:, None], anchor, other)
        cond = torch.where(drop[:, None], torch.zeros_like(anchor), anchor)
        mask = ~drop
    n = x0.shape[0]
    t = draw_timesteps(n, T, cfg.antithetic_timesteps, generator).to(device)
    noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(device)
    x_t = q_sample(x0, t, noise, schedule)
    pred = net(x_t, t, cond, mask)
    err = (pred - x0) ** 2
    # The anchor's rotation and translation are canonical (constant): no loss on them.
    dim_weight = torch.ones(n, x0.shape[1], dtype=err.dtype, device=device)
    dim_weight[~mask, cfg.anchor_loss_dims:] = 0.0
    per_row = (err * dim_weight).sum(1) / dim_weight.sum(1)
    weighting = getattr(cfg, "loss_weighting", "uniform")
    w_t = config_timestep_weights(cfg, schedule, t)
    if w_t is not None:  # uniform keeps the original arithmetic exactly
        w_t = w_t.to(per_row.dtype)
        per_row = per_row * w_t
    geo_w, contact_w = getattr(cfg, "geometry_weight", 0.0), getattr(cfg, "contact_weight", 0.0)
    if geo_w > 0 or contact_w > 0:
        if geometry is None:
            raise ValueError("geometry_weight/contact_weight > 0 need a PartnerGeometry (the hand models and "
                             "statistics of the training data)")
        rows = mask.nonzero().squeeze(1)[: cfg.geometry_rows]
        if rows.numel():
            keypoint, contact = geometry.terms(pred[rows], x0[rows], cond[rows])
            geo = geo_w * keypoint + contact_w * contact
            if weighting == "min_snr":  # the v weight (up to ~1/beta_0) is the parameter error's, not theirs
                geo = geo * w_t[rows]
            # Added per conditioned row (index_add keeps the graph); the mean below then averages it over the
            # conditioned rows, scaled by the fraction that carried a geometric term.
            per_row = per_row.index_add(0, rows, geo.to(per_row.dtype))
    zero = per_row.new_zeros(())
    loss_anchor = per_row[~mask].mean() if (~mask).any() else zero
    loss_other = per_row[mask].mean() if mask.any() else zero
    total = loss_anchor + loss_other if cfg.cond_drop_prob is None else per_row.mean()
    return total, loss_anchor.detach(), loss_other.detach()


def _dim_weight(n: int, device, dtype, anchor_loss_dims: int) -> torch.Tensor:
    """[128] weights: the anchor's canonical rotation/translation slots (constant) carry no loss."""
    w = torch.ones(128, device=device, dtype=dtype)
    w[anchor_loss_dims:64] = 0.0
    return w


def joint_loss(net: nn.Module, batch: torch.Tensor, schedule, cfg, generator: torch.Generator):
    b = batch.shape[0]
    x0 = batch.reshape(b, 128)
    t = draw_timesteps(b, cfg.num_timesteps, cfg.antithetic_timesteps, generator).to(batch.device)
    noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(batch.device)
    pred = net(q_sample(x0, t, noise, schedule), t)
    w = _dim_weight(b, batch.device, x0.dtype, cfg.anchor_loss_dims)
    err = ((pred - x0) ** 2 * w).sum(1) / w.sum()
    w_t = config_timestep_weights(cfg, schedule, t)
    if w_t is not None:  # uniform keeps the original arithmetic exactly
        err = err * w_t.to(err.dtype)
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
