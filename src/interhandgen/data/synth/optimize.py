"""Batched contact optimisation of two hands (torch, Adam), within joint limits by construction.

Free variables per sample: a rotation increment ``omega`` [3] (axis-angle, about B's centroid) and a
translation increment ``tau`` [3] of hand B in A's frame, and ``k`` pose-synergy coefficients per hand that move
the joint-limit logits (see :func:`interhandgen.data.synth.poses.synergy_basis`). The loss, in millimetres:

- contact: for each designated contact, the selected source vertices' squared distances to their nearest
  vertex of the target region, averaged over the closest ``fraction`` of the source region;
- penetration: for every vertex of one hand, the nearest vertex of the other hand and its normal decide whether
  it is inside (signed distance along that normal below ``margin``); penalised quadratically, both ways;
- regularisation towards the initial placement and pose.

Nearest neighbours are recomputed without gradient at every step on the vertex subsets (farthest-point
samples of each mesh); gradients flow through the gathered pairs only, which keeps a step cheap.
"""

from __future__ import annotations

import dataclasses

import torch

from interhandgen.data.synth.categories import Contact
from interhandgen.data.synth.kinematics import HandKinematics
from interhandgen.data.synth.poses import synergy_basis
from interhandgen.rotations import axis_angle_to_matrix

MM = 1000.0


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    steps: int = 40
    nn_every: int = 4  # recompute nearest neighbours every this many steps (motion per step is < 1 mm)
    lr_translation: float = 0.6  # mm per step (Adam step size)
    lr_rotation: float = 0.012  # rad per step
    lr_pose: float = 0.05  # logit units per step
    margin_mm: float = 0.6  # vertices closer than this inside the other hand's surface count as penetrating
    nn_radius_mm: float = 20.0  # a vertex farther than this from the other hand cannot be inside it
    contact_weight: float = 1.0
    penetration_weight: float = 30.0
    reg_translation: float = 1e-3  # per mm^2
    reg_rotation: float = 50.0  # per rad^2
    reg_pose: float = 2.0  # per logit^2


def nearest_pairs(dist: torch.Tensor, mask_src: torch.Tensor | None = None, mask_dst: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """For each source row of ``dist`` [B, N, M], the nearest allowed column and its distance (inf if none)."""
    if mask_dst is not None:
        dist = dist.masked_fill(~mask_dst[:, None, :], float("inf"))
    d, idx = dist.min(dim=2)
    if mask_src is not None:
        d = d.masked_fill(~mask_src, float("inf"))
    return d, idx


def closest_fraction(d: torch.Tensor, mask: torch.Tensor, fraction: float) -> torch.Tensor:
    """[B, N] float weights selecting the ceil(fraction * |mask|) smallest ``d`` per row among ``mask``, each
    weighted 1 / count (so every sample's contact term is a mean)."""
    count = mask.sum(1)
    k = torch.clamp(torch.ceil(count.to(d.dtype) * fraction), min=1.0)
    order = torch.argsort(torch.argsort(d.masked_fill(~mask, float("inf")), dim=1), dim=1)  # rank of each entry
    sel = (order < k[:, None]) & mask
    return sel.to(d.dtype) / k[:, None]


def penetration_depths(points: torch.Tensor, target: torch.Tensor, target_normals: torch.Tensor,
                       nn_idx: torch.Tensor, margin: float, radius: float) -> torch.Tensor:
    """[B, N] how far (same units as the points) each point lies below ``margin`` outside the target surface,
    judged by its (given) nearest target vertex and that vertex's outward normal; 0 outside or beyond ``radius``."""
    gather = lambda x: torch.gather(x, 1, nn_idx[..., None].expand(-1, -1, 3))  # noqa: E731
    offset = points - gather(target)
    signed = (offset * gather(target_normals)).sum(-1)
    depth = torch.relu(margin - signed)
    near = (offset.detach() ** 2).sum(-1) < radius * radius
    return depth * near.to(depth.dtype)


def optimise_contacts(
    kin_a: HandKinematics, kin_b: HandKinematics,
    betas_a: torch.Tensor, betas_b: torch.Tensor,
    logits_a: torch.Tensor, logits_b: torch.Tensor,
    R: torch.Tensor, t: torch.Tensor,
    contacts: list[Contact],
    config: OptimConfig = OptimConfig(),
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Optimise the placement (R [B, 3, 3], t [B, 3] of B in A's frame) and poses (logits [B, 15, 3]).

    Returns the new (logits_a, logits_b, R, t). Shapes and devices follow the inputs.
    """
    B = betas_a.shape[0]
    dtype, device = betas_a.dtype, betas_a.device
    _, rest_a = kin_a.shaped_joints(betas_a)
    _, rest_b = kin_b.shaped_joints(betas_b)
    basis = synergy_basis(dtype, device)
    k = basis.shape[0]
    omega = torch.zeros(B, 3, dtype=dtype, device=device, requires_grad=True)
    tau = torch.zeros(B, 3, dtype=dtype, device=device, requires_grad=True)
    syn_a = torch.zeros(B, k, dtype=dtype, device=device, requires_grad=True)
    syn_b = torch.zeros(B, k, dtype=dtype, device=device, requires_grad=True)
    opt = torch.optim.Adam([
        {"params": [tau], "lr": config.lr_translation},
        {"params": [omega], "lr": config.lr_rotation},
        {"params": [syn_a, syn_b], "lr": config.lr_pose},
    ])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(config.steps, 1), eta_min=0.0)
    with torch.no_grad():
        vb0, _ = kin_b.pose_subset(betas_b, rest_b, kin_b.logits_to_full_pose(logits_b))
        pivot = ((vb0 @ R.transpose(1, 2)) + t[:, None]).mean(1)

    def current(with_grad: bool):
        za = logits_a + torch.einsum("bk,kjc->bjc", syn_a, basis)
        zb = logits_b + torch.einsum("bk,kjc->bjc", syn_b, basis)
        va, na = kin_a.pose_subset(betas_a, rest_a, kin_a.logits_to_full_pose(za))
        vb, nb = kin_b.pose_subset(betas_b, rest_b, kin_b.logits_to_full_pose(zb))
        Rd = axis_angle_to_matrix(omega)
        Rb = Rd @ R
        tb = (Rd @ (t - pivot)[..., None]).squeeze(-1) + pivot + tau / MM
        vb = vb @ Rb.transpose(1, 2) + tb[:, None]
        nb = nb @ Rb.transpose(1, 2)
        return va * MM, na, vb * MM, nb, za, zb, Rb, tb

    for step in range(config.steps):
        va, na, vb, nb, *_ = current(True)
        if step % config.nn_every == 0:
            with torch.no_grad():
                centre = va.mean(1, keepdim=True)  # centring keeps cdist's matrix-product form accurate
                dist = torch.cdist(va - centre, vb - centre)
                _, i_ab = dist.min(dim=2)
                _, i_ba = dist.min(dim=1)
                picks = []
                for c in contacts:
                    src_mask, dst_mask = (c.mask_b, c.mask_a) if c.from_b else (c.mask_a, c.mask_b)
                    dd = dist.transpose(1, 2) if c.from_b else dist
                    d_c, i_c = nearest_pairs(dd, src_mask, dst_mask)
                    picks.append((i_c, closest_fraction(d_c, src_mask, c.fraction)))
                del dist
        loss_pen = (penetration_depths(va, vb, nb, i_ab, config.margin_mm, config.nn_radius_mm) ** 2).sum(1)
        loss_pen = loss_pen + (penetration_depths(vb, va, na, i_ba, config.margin_mm, config.nn_radius_mm) ** 2).sum(1)
        loss_contact = torch.zeros(B, dtype=dtype, device=device)
        for c, (idx, w) in zip(contacts, picks):
            src, dst = (vb, va) if c.from_b else (va, vb)
            nearest = torch.gather(dst, 1, idx[..., None].expand(-1, -1, 3))
            loss_contact = loss_contact + c.weight * (w * ((src - nearest) ** 2).sum(-1)).sum(1)
        loss_reg = (config.reg_translation * (tau ** 2).sum(1) + config.reg_rotation * (omega ** 2).sum(1)
                    + config.reg_pose * ((syn_a ** 2).sum(1) + (syn_b ** 2).sum(1)))
        loss = (config.contact_weight * loss_contact + config.penetration_weight * loss_pen + loss_reg).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()

    with torch.no_grad():
        *_, za, zb, Rb, tb = current(False)
    return za.detach(), zb.detach(), Rb.detach(), tb.detach()
