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
from typing import Any, Callable

import torch
from torch import nn

from interhandgen.data.canonical import HAND_DIM, RIGID_SLICE, ROT_SLICE, TRANSL_SLICE
from interhandgen.diffusion import q_sample
from interhandgen.exceptions import InputError
from interhandgen.geometry.points import gather_rows_deterministic
from interhandgen.models.losses import draw_timesteps
from interhandgen.models.losses_geometry import StandardisedPairs, config_timestep_weights
from interhandgen.objects.frame import canonical_anchor_tail, rotate_about_z
from interhandgen.rotations import rot6d_to_matrix

__all__ = ["DEFAULT_OBJECT_DROP_PROB", "HandObjectGeometry", "object_diffusion_loss", "object_signed_distance",
           "penetration_term", "object_contact_term", "uses_object_geometry"]

DEFAULT_OBJECT_DROP_PROB = 0.2
CM = 0.01  # metres: the hand-object terms are in cm^2
NEAREST_PLANES = 8  # surface samples whose tangent planes decide inside / outside (object_signed_distance)


def uses_object_geometry(cfg) -> bool:
    """Whether a training config asks for the hand-object terms of the object objective."""
    return getattr(cfg, "object_penetration_weight", 0.0) > 0 or getattr(cfg, "object_contact_weight", 0.0) > 0


def object_signed_distance(points: torch.Tensor, surface: torch.Tensor, idx: torch.Tensor | None = None,
                           k: int = NEAREST_PLANES) -> tuple[torch.Tensor, torch.Tensor]:
    """Signed distance [B, S] of points [B, S, 3] to an object sampled by ``surface`` [B, K, 6] (points and outward
    unit normals; negative inside), and the indices [B, S, k] of the samples used (searched on the detached points
    unless given).

    The value is the LARGEST of the signed distances to the tangent planes of the point's ``k`` nearest samples: a
    point counts as inside only where every one of those planes has it inside. For a point inside a convex part
    this is its depth below the nearest face (the planes of the faces around it all lie beyond it, the closest one
    decides), exact on flat faces; a point beside a thin object's rim or under a dish, whose single nearest plane
    can put it centimetres "inside", sees the other side's planes too (with k = 1 this is the sampler's guidance
    test, docs/objects_model.md). Differentiable w.r.t. ``points``."""
    if points.dim() != 3 or points.shape[-1] != 3 or surface.dim() != 3 or surface.shape[-1] != 6 \
            or surface.shape[0] != points.shape[0]:
        raise InputError(f"points [B, S, 3] and surface [B, K, 6] expected, got {list(points.shape)} and "
                         f"{list(surface.shape)}")
    surface = surface.to(points.dtype)
    B, S = points.shape[:2]
    if idx is None:
        k = min(int(k), surface.shape[1])
        idx = torch.cdist(points.detach(), surface[..., :3].detach()).topk(k, dim=2, largest=False).indices
    k = idx.shape[2]
    near = gather_rows_deterministic(surface.contiguous(), idx.reshape(B, S * k)).view(B, S, k, 6)
    planes = ((points[:, :, None] - near[..., :3]) * near[..., 3:]).sum(-1)
    return planes.amax(2), idx


def penetration_term(points: torch.Tensor, surface: torch.Tensor) -> torch.Tensor:
    """[B] mean over the points of the squared depth (cm^2) below the object's surface (0 outside)."""
    signed, _ = object_signed_distance(points, surface)
    return (torch.relu(-signed) ** 2).mean(1) / CM**2


def object_contact_term(pred_points: torch.Tensor, true_points: torch.Tensor, surface: torch.Tensor,
                        band: float) -> torch.Tensor:
    """[B] contact term (cm^2): for the ground truth's points within ``band`` metres of the object's surface
    (|signed distance| < band), the squared difference of the predicted and the true signed distance, both to the
    plane of the TRUE point's nearest surface sample (the same patch of the surface, so the term is smooth in the
    prediction); the mean over those points, 0 for a row without any. It pulls the points that touch in the data
    back onto the surface (to the data's gap, at most ``band``) and is 0 where the prediction equals the data."""
    with torch.no_grad():
        s_true, idx = object_signed_distance(true_points, surface)
        band_mask = (s_true.abs() < band).to(pred_points.dtype)
    s_pred, _ = object_signed_distance(pred_points, surface, idx)
    return (((s_pred - s_true) ** 2) * band_mask).sum(1) / band_mask.sum(1).clamp(min=1.0) / CM**2


class HandObjectGeometry(StandardisedPairs):
    """Surface points of both hands in the object frame from standardised object-frame vectors, and their
    hand-object terms (module docstring).

    Args:
        anchor_surface, other_surface: callables ``raw canonical vectors [B, 64] -> (points [B, S, 3], normals)``,
            differentiable (e.g. :class:`interhandgen.generation.SubsetHand` of the left and right hand layers). The
            anchor's points come out in the object frame (its vector holds its pose there); the other hand's in the
            anchor's frame, placed in the object frame by the (true) anchor's rotation and translation.
        mean, std: [2, 64] standardisation statistics (row 0 anchor, row 1 other hand).
        contact_band: metres; points of the ground truth within it of the object enter the contact term.
    """

    def __init__(self, anchor_surface: Callable, other_surface: Callable, mean: torch.Tensor, std: torch.Tensor,
                 contact_band: float = 0.005) -> None:
        super().__init__(mean, std, contact_band)
        self.anchor_surface, self.other_surface = anchor_surface, other_surface

    def anchor_points(self, anchor: torch.Tensor) -> torch.Tensor:
        """[B, S, 3] object-frame points of standardised anchors [B, 64]."""
        return self.anchor_surface(self._raw(anchor, 0))[0]

    def other_points(self, other: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
        """[B, S, 3] object-frame points of standardised other hands [B, 64] relative to anchors [B, 64]."""
        a_raw = self._raw(anchor, 0)
        pts = self.other_surface(self._raw(other, 1))[0]
        R = rot6d_to_matrix(a_raw[:, ROT_SLICE]).to(pts.dtype)
        return pts @ R.transpose(1, 2) + a_raw[:, None, TRANSL_SLICE].to(pts.dtype)

    def terms(self, pred_points: torch.Tensor, true_points: torch.Tensor, surface: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """(penetration [B], contact [B]) in cm^2 of object-frame hand points, predicted and true [B, S, 3]."""
        if pred_points.shape != true_points.shape:
            raise InputError(f"pred_points and true_points must have one shape, got {list(pred_points.shape)} "
                             f"and {list(true_points.shape)}")
        return (penetration_term(pred_points, surface),
                object_contact_term(pred_points, true_points, surface, self.contact_band))


def _augmented(batch: torch.Tensor, points: torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor],
               generator: torch.Generator, object_drop_prob: float, rotate_z: bool,
               has_object: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The object objectives' augmentation of one batch: each scene turned about z (anchor slots and object points;
    the other hand, relative to the anchor, unchanged) and object-token dropout (a dropped row's anchor takes the
    canonical frame). Rows with ``has_object`` [b] False (object-free pairs trained beside the object set) are
    always dropped; the random draws do not depend on it. Returns standardised (anchor [b, 64], other [b, 64]),
    points [b, P, 6] and drop [b] bool."""
    b, device = batch.shape[0], batch.device
    mean, std = (s.to(device) for s in stats)
    anchor, other = batch[:, 0].clone(), batch[:, 1]
    rigid = anchor[:, RIGID_SLICE] * std[0, RIGID_SLICE] + mean[0, RIGID_SLICE]
    if rotate_z:
        angle = (torch.rand(b, generator=generator, dtype=torch.float64) * 2 * math.pi).to(device)
        rigid, points = rotate_about_z(rigid, points, angle)
    drop = (torch.rand(b, generator=generator) < object_drop_prob).to(device)
    if has_object is not None:
        if has_object.shape != (b,) or has_object.dtype != torch.bool:
            raise InputError(f"has_object must be a bool tensor of shape [{b}], got {has_object.dtype} "
                             f"{list(has_object.shape)}")
        drop = drop | ~has_object.to(device)
    rigid = torch.where(drop[:, None], canonical_anchor_tail(rigid), rigid)
    anchor[:, RIGID_SLICE] = (rigid - mean[0, RIGID_SLICE]) / std[0, RIGID_SLICE]
    return anchor, other, points, drop


def object_diffusion_loss(net: nn.Module, batch: torch.Tensor, schedule, cfg: Any, generator: torch.Generator, *,
                          points: torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor],
                          object_drop_prob: float = DEFAULT_OBJECT_DROP_PROB, rotate_z: bool = True,
                          geometry: HandObjectGeometry | None = None, has_object: torch.Tensor | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Loss of one batch: standardised object-frame pairs [b, 2, 64] and their objects' points [b, P, 6].

    ``has_object`` [b] bool (None: all True): False marks an object-free pair (the two-hand canonical frame; its
    points are ignored), trained as a row whose object was dropped.

    ``stats``: the (mean, std) [2, 64] of the standardisation (the rotation acts on raw values).
    ``cfg``: the training config (``num_timesteps``, ``antithetic_timesteps``, ``anchor_loss_dims``; optional
    ``loss_weighting``, ``min_snr_gamma``, ``object_penetration_weight``, ``object_contact_weight``,
    ``object_geometry_min_snr``: module docstring). ``geometry``: needed when a hand-object weight is > 0.
    Returns (total, anchor part, other part).
    """
    b, device = batch.shape[0], batch.device
    anchor, other, points, drop = _augmented(batch, points, stats, generator, object_drop_prob, rotate_z, has_object)
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
    w_t = config_timestep_weights(cfg, schedule, t)
    if w_t is not None:  # uniform keeps the original arithmetic exactly
        per_row = per_row * w_t.to(per_row)
    if uses_object_geometry(cfg):
        per_row = _add_object_terms(per_row, pred, x0, t, keep, points, schedule, cfg, geometry, b)
    loss_anchor, loss_other = per_row[:b].mean(), per_row[b:].mean()
    return loss_anchor + loss_other, loss_anchor.detach(), loss_other.detach()


def joint_object_loss(net: nn.Module, batch: torch.Tensor, schedule, cfg: Any, generator: torch.Generator, *,
                      points: torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor],
                      object_drop_prob: float = DEFAULT_OBJECT_DROP_PROB, rotate_z: bool = True,
                      has_object: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Loss of the joint object baseline (``kind: joint_object``) on one batch: the same pairs, turns about z and
    object-token dropout as :func:`object_diffusion_loss`, one diffusion over the 128 numbers of both hands (one
    timestep per pair), the x0 (or v) error in standardised units; object-free rows have no loss on the anchor's
    canonical slots; ``has_object`` as there. Returns (total, anchor part, other part)."""
    b, device = batch.shape[0], batch.device
    anchor, other, points, drop = _augmented(batch, points, stats, generator, object_drop_prob, rotate_z, has_object)
    token = net.encode(points.to(batch.dtype)) if not bool(drop.all()) else None
    x0 = torch.cat([anchor, other], 1)
    t = draw_timesteps(b, cfg.num_timesteps, cfg.antithetic_timesteps, generator).to(device)
    noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(device)
    pred = net(q_sample(x0, t, noise, schedule), t, object_token=token, object_mask=~drop)
    w = torch.ones_like(x0)
    w[drop, cfg.anchor_loss_dims:HAND_DIM] = 0.0  # object-free anchors: canonical slots, no loss
    err = (pred - x0) ** 2 * w
    per_row = err.sum(1) / w.sum(1)
    w_t = config_timestep_weights(cfg, schedule, t)
    if w_t is not None:
        per_row = per_row * w_t.to(per_row)
    with torch.no_grad():
        parts = [(err[:, sl].sum(1) / w[:, sl].sum(1).clamp_min(1)).mean()
                 for sl in (slice(0, HAND_DIM), slice(HAND_DIM, 2 * HAND_DIM))]
    return per_row.mean(), parts[0], parts[1]


def _add_object_terms(per_row: torch.Tensor, pred: torch.Tensor, x0: torch.Tensor, t: torch.Tensor,
                      keep: torch.Tensor, points: torch.Tensor, schedule, cfg: Any,
                      geometry: HandObjectGeometry | None, b: int) -> torch.Tensor:
    """per_row [2b] plus the weighted hand-object terms of the rows with their object at SNR >= the threshold."""
    if geometry is None:
        raise InputError("train.object_penetration_weight / object_contact_weight > 0 need a HandObjectGeometry "
                         "(the hand models and statistics of the training data)")
    abar = schedule.alphas_cumprod.to(t.device)[t]
    low_noise = keep & (abar / (1.0 - abar) >= float(cfg.object_geometry_min_snr))
    pen_w, con_w = float(cfg.object_penetration_weight), float(cfg.object_contact_weight)
    surface = points.to(pred.dtype)
    anchor_true = x0[:b]
    for stage in (0, 1):
        rows = low_noise[stage * b:(stage + 1) * b].nonzero().squeeze(1)
        if not rows.numel():
            continue
        if stage == 0:
            p_pts = geometry.anchor_points(pred[rows])
            with torch.no_grad():
                t_pts = geometry.anchor_points(anchor_true[rows])
        else:  # the other hand relative to its condition, the true anchor
            p_pts = geometry.other_points(pred[b + rows], anchor_true[rows])
            with torch.no_grad():
                t_pts = geometry.other_points(x0[b + rows], anchor_true[rows])
        pen, con = geometry.terms(p_pts, t_pts, surface[rows])
        per_row = per_row.index_add(0, stage * b + rows, (pen_w * pen + con_w * con).to(per_row.dtype))
    return per_row
