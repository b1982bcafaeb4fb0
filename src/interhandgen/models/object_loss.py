"""Training objective of the object-conditioned shared denoiser (kind ``shared_object``).

One batch trains both stages, as :func:`interhandgen.models.diffusion_loss` does (anchor with the null hand
condition, other hand conditioned on the ground-truth anchor), and in both stages the row's object token, or with
probability ``object_drop_prob`` the null object token (object-token dropout). A row whose object is dropped is
the same pair in the object-free canonical frame: its anchor's rotation/translation slots are reset to the
identity and zero and carry no loss (as without objects); with the object they are the anchor's pose in the
object frame and are learned. With ``rotate_z`` each row is turned by a random angle about the world z axis
(gravity), which moves the anchor's slots and the object's points (the other hand, relative to the anchor, is
unchanged): :func:`interhandgen.objects.frame.rotate_about_z`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from interhandgen.data.canonical import RIGID_SLICE
from interhandgen.diffusion import q_sample
from interhandgen.models.losses import draw_timesteps
from interhandgen.objects.frame import canonical_anchor_tail, rotate_about_z

DEFAULT_OBJECT_DROP_PROB = 0.2


def object_diffusion_loss(net: nn.Module, batch: torch.Tensor, schedule, cfg: Any, generator: torch.Generator, *,
                          points: torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor],
                          object_drop_prob: float = DEFAULT_OBJECT_DROP_PROB, rotate_z: bool = True
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Loss of one batch: standardised object-frame pairs [b, 2, 64] and their objects' points [b, P, 6].

    ``stats``: the (mean, std) [2, 64] of the standardisation (the rotation acts on raw values).
    Returns (total, anchor part, other part).
    """
    b, device = batch.shape[0], batch.device
    mean, std = (s.to(device) for s in stats)
    anchor, other = batch[:, 0].clone(), batch[:, 1]
    rigid = anchor[:, RIGID_SLICE] * std[0, RIGID_SLICE] + mean[0, RIGID_SLICE]
    if rotate_z:
        angle = (torch.rand(b, generator=generator, dtype=torch.float64) * 2 * math.pi).to(device)
        rigid, points = rotate_about_z(rigid, points, angle)
    drop = (torch.rand(b, generator=generator) < object_drop_prob).to(device)
    rigid = torch.where(drop[:, None], canonical_anchor_tail(rigid), rigid)
    anchor[:, RIGID_SLICE] = (rigid - mean[0, RIGID_SLICE]) / std[0, RIGID_SLICE]
    token = net.encode(points.to(batch.dtype)) if not bool(drop.all()) else None
    T = cfg.num_timesteps
    x0 = torch.cat([anchor, other])
    cond = torch.cat([torch.zeros_like(anchor), anchor])
    mask = torch.cat([torch.zeros(b, dtype=torch.bool), torch.ones(b, dtype=torch.bool)]).to(device)
    t = draw_timesteps(2 * b, T, cfg.antithetic_timesteps, generator).to(device)
    noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(device)
    x_t = q_sample(x0, t, noise, schedule)
    keep = torch.cat([~drop, ~drop])
    pred = net(x_t, t, cond, mask, object_token=None if token is None else torch.cat([token, token]),
               object_mask=keep)
    err = (pred - x0) ** 2
    dim_weight = torch.ones_like(err)
    dim_weight[:b][drop, cfg.anchor_loss_dims:] = 0.0  # object-free anchors: canonical slots, no loss
    per_row = (err * dim_weight).sum(1) / dim_weight.sum(1)
    loss_anchor, loss_other = per_row[:b].mean(), per_row[b:].mean()
    return loss_anchor + loss_other, loss_anchor.detach(), loss_other.detach()
