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
from interhandgen.data.synth.proxy import sphere_clearance
from interhandgen.rotations import axis_angle_to_matrix

MM = 1000.0


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    steps: int = 32
    nn_every: int = 4  # recompute nearest neighbours every this many steps (motion per step is < 1 mm)
    near_size: int = 160  # vertices per hand taking part (nearest the other hand, contact regions first)
    touch_mm: float = 0.4  # the closest vertex pair is pulled to within this distance
    touch_weight: float = 50.0
    proxy_weight: float = 1.0  # weight of the sphere-proxy overlap relative to the vertex penetration term
    priority_bonus_mm: float = 25.0  # contact-region vertices count as this much closer when choosing them
    lr_translation: float = 0.7  # mm per step (Adam step size)
    lr_rotation: float = 0.012  # rad per step
    lr_pose: float = 0.05  # logit units per step
    margin_mm: float = 0.6  # vertices closer than this inside the other hand's surface count as penetrating
    nn_radius_mm: float = 20.0  # a vertex farther than this from the other hand cannot be inside it
    contact_weight: float = 1.0
    penetration_weight: float = 30.0
    reg_translation: float = 1e-3  # per mm^2
    reg_rotation: float = 50.0  # per rad^2
    reg_pose: float = 2.0  # per logit^2


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[B, N, M] squared distances between point sets [B, N, 3] and [B, M, 3], one fused matrix product
    (centred first: the error of |a|^2 + |b|^2 - 2 a.b grows with the coordinates' magnitude)."""
    c = a.mean(1, keepdim=True)
    a, b = a - c, b - c
    d2 = torch.baddbmm((b * b).sum(-1)[:, None, :], a, b.transpose(1, 2), alpha=-2.0)
    return d2.add_((a * a).sum(-1)[:, :, None])


def nearest_pairs(d2: torch.Tensor, mask_src: torch.Tensor | None = None, mask_dst: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """For each source row of squared distances ``d2`` [B, N, M], the nearest allowed column and the squared
    distance to it (inf where the row is not in ``mask_src`` or no column is allowed)."""
    if mask_dst is not None:
        d2 = d2.masked_fill(~mask_dst[:, None, :], float("inf"))
    d, idx = d2.min(dim=2)
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


def _gather(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x [B, N, C], idx [B, K] -> [B, K, C]."""
    return torch.gather(x, 1, idx[..., None].expand(-1, -1, x.shape[-1]))


def near_sets(va: torch.Tensor, vb: torch.Tensor, priority_a: torch.Tensor, priority_b: torch.Tensor, k: int,
              bonus: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices [B, k] of the vertices of each hand that matter for the optimisation: the closest to the other
    hand, with contact-region vertices (``priority`` masks [B, N]) counted ``bonus`` closer."""
    d2 = squared_distances(va, vb)
    score_a = d2.amin(dim=2).clamp_min(0).sqrt() - bonus * priority_a.to(va.dtype)
    score_b = d2.amin(dim=1).clamp_min(0).sqrt() - bonus * priority_b.to(va.dtype)
    ka, kb = min(k, va.shape[1]), min(k, vb.shape[1])
    return score_a.topk(ka, dim=1, largest=False).indices, score_b.topk(kb, dim=1, largest=False).indices


def optimise_contacts(
    kin_a: HandKinematics, kin_b: HandKinematics,
    betas_a: torch.Tensor, betas_b: torch.Tensor,
    logits_a: torch.Tensor, logits_b: torch.Tensor,
    R: torch.Tensor, t: torch.Tensor,
    contacts: list[Contact],
    config: OptimConfig = OptimConfig(),
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Optimise the placement (R [B, 3, 3], t [B, 3] of B in A's frame) and poses (logits [B, 15, 3]).

    Only the ``config.near_size`` subset vertices of each hand nearest the other hand (contact regions first)
    take part; they are chosen once at the start, when the hands are about to touch.
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
        va, _ = kin_a.pose_subset(betas_a, rest_a, kin_a.logits_to_full_pose(logits_a))
        vb, _ = kin_b.pose_subset(betas_b, rest_b, kin_b.logits_to_full_pose(logits_b))
        vb = vb @ R.transpose(1, 2) + t[:, None]
        pivot = vb.mean(1)
        prio_a = torch.zeros(va.shape[:2], dtype=torch.bool, device=device)
        prio_b = torch.zeros(vb.shape[:2], dtype=torch.bool, device=device)
        for c in contacts:
            prio_a |= c.mask_a
            prio_b |= c.mask_b
        idx_a, idx_b = near_sets(va * MM, vb * MM, prio_a, prio_b, config.near_size, config.priority_bonus_mm)
        masks = [(torch.gather(c.mask_a, 1, idx_a), torch.gather(c.mask_b, 1, idx_b)) for c in contacts]
        prep_a = kin_a.prepare_points(betas_a, kin_a.logits_to_full_pose(logits_a), idx_a)
        prep_b = kin_b.prepare_points(betas_b, kin_b.logits_to_full_pose(logits_b), idx_b)

    def current():
        za = logits_a + torch.einsum("bk,kjc->bjc", syn_a, basis)
        zb = logits_b + torch.einsum("bk,kjc->bjc", syn_b, basis)
        va, na, ta = kin_a.pose_points(prep_a, rest_a, kin_a.logits_to_full_pose(za))
        vb, nb, tb_ = kin_b.pose_points(prep_b, rest_b, kin_b.logits_to_full_pose(zb))
        Rd = axis_angle_to_matrix(omega)
        Rb = Rd @ R
        tb = (Rd @ (t - pivot)[..., None]).squeeze(-1) + pivot + tau / MM
        vb = vb @ Rb.transpose(1, 2) + tb[:, None]
        nb = nb @ Rb.transpose(1, 2)
        ca = kin_a.proxy.centres(rest_a, ta)
        cb = kin_b.proxy.centres(rest_b, tb_) @ Rb.transpose(1, 2) + tb[:, None]
        return va * MM, na, vb * MM, nb, za, zb, Rb, tb, ca * MM, cb * MM

    with torch.no_grad():
        _, _, _, _, _, _, _, _, ca0, cb0 = current()
        ra = kin_a.proxy.radii(rest_a, ca0 / MM, va) * MM
        rb = kin_b.proxy.radii(rest_b, cb0 / MM, vb) * MM
    for step in range(config.steps):
        va, na, vb, nb, _, _, _, _, ca, cb = current()
        if step % config.nn_every == 0:
            with torch.no_grad():
                d2 = squared_distances(va, vb)
                i_ab = d2.argmin(dim=2)
                i_ba = d2.argmin(dim=1)
                picks = []
                for c, (mask_a, mask_b) in zip(contacts, masks):
                    src_mask, dst_mask = (mask_b, mask_a) if c.from_b else (mask_a, mask_b)
                    dd = d2.transpose(1, 2) if c.from_b else d2
                    d_c, i_c = nearest_pairs(dd, src_mask, dst_mask)
                    picks.append((i_c, closest_fraction(d_c, src_mask, c.fraction)))
                del d2
        loss_pen = (penetration_depths(va, vb, nb, i_ab, config.margin_mm, config.nn_radius_mm) ** 2).sum(1)
        loss_pen = loss_pen + (penetration_depths(vb, va, na, i_ba, config.margin_mm, config.nn_radius_mm) ** 2).sum(1)
        # Inscribed spheres overlap only where the hands truly interpenetrate, however deep.
        overlap = torch.relu(-sphere_clearance(ca, ra, cb, rb))
        loss_pen = loss_pen + config.proxy_weight * (overlap ** 2).sum(dim=(1, 2))
        # Keep the hands touching somewhere while the designated contacts are pulled together: the closest
        # vertex pair is held within ``touch_mm``.
        gap = (va - _gather(vb, i_ab)).norm(dim=-1).amin(dim=1)
        loss_touch = torch.relu(gap - config.touch_mm) ** 2
        loss_contact = config.touch_weight * loss_touch
        for c, (idx, w) in zip(contacts, picks):
            src, dst = (vb, va) if c.from_b else (va, vb)
            loss_contact = loss_contact + c.weight * (w * ((src - _gather(dst, idx)) ** 2).sum(-1)).sum(1)
        loss_reg = (config.reg_translation * (tau ** 2).sum(1) + config.reg_rotation * (omega ** 2).sum(1)
                    + config.reg_pose * ((syn_a ** 2).sum(1) + (syn_b ** 2).sum(1)))
        loss = (config.contact_weight * loss_contact + config.penetration_weight * loss_pen + loss_reg).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()

    with torch.no_grad():
        _, _, _, _, za, zb, Rb, tb, _, _ = current()
    return za.detach(), zb.detach(), Rb.detach(), tb.detach()


def subset_quality(va: torch.Tensor, na: torch.Tensor, vb: torch.Tensor, nb: torch.Tensor, radius: float,
                   per_point: bool = False):
    """Cheap per-sample (min distance, penetration depth) [B] on vertex subsets with unit normals.

    The depth is the nearest-vertex + normal estimate (both ways), over vertices within ``radius`` of the
    other hand. The subset's min distance is an upper bound of the full mesh's vertex-to-vertex min distance.
    With ``per_point`` also returns the per-vertex estimates ([B, Na] of A in B, [B, Nb] of B in A).
    """
    d2 = squared_distances(va, vb)
    dmin = d2.amin(dim=(1, 2)).clamp_min(0).sqrt()
    i_ab, i_ba = d2.argmin(dim=2), d2.argmin(dim=1)

    def one_way(p, q, nq, idx):
        offset = p - _gather(q, idx)
        depth = torch.relu(-(offset * _gather(nq, idx)).sum(-1))
        return torch.where((offset * offset).sum(-1) < radius * radius, depth, torch.zeros_like(depth))

    pa, pb = one_way(va, vb, nb, i_ab), one_way(vb, va, na, i_ba)
    depth = torch.maximum(pa.amax(1), pb.amax(1))
    return (dmin, depth, pa, pb) if per_point else (dmin, depth)
