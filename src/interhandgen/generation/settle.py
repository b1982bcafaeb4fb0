"""Contact settling: the last stage of sampling, a short rigid optimisation of the conditioned hand.

Why: the denoiser places the second hand to within a few millimetres, but contact is a sub-millimetre property:
on the bundled model about half of the sampled pairs that are meant to touch end 2 to 10 mm apart or slightly
interpenetrating, while in the data every pair is either touching (gap < 2 mm, no penetration) or clearly apart
(the ``near_no_contact`` category starts at 1 cm). APG removes penetration but cannot close a gap.

What: for every pair whose hands are closer than ``attract_mm`` (or interpenetrate), the conditioned hand is
moved RIGIDLY (a rotation about its centroid and a translation, in the anchor's frame; its pose and shape are
untouched) by a few Adam steps on

    penetration_weight * sum(depth^2)  +  touch_weight * relu(gap - touch_mm)^2  +  regularisation,

the same terms, in millimetres, as the synthetic data set's placement (:mod:`interhandgen.data.synth.optimize`):
``depth`` is how far a surface point lies inside the other hand by the nearest-point + normal test (both ways,
on farthest-point subsets of each hand) plus the overlap of the hands' inscribed-sphere proxies (which sees deep
interpenetration, where the nearest-point test fails), ``gap`` the smallest distance between the subsets. Pairs farther apart
than ``attract_mm`` are returned bit-for-bit unchanged: settling never creates contact the sample did not
intend. Batched over all pairs; no per-sample loop; CPU or GPU.
"""

from __future__ import annotations

import dataclasses

import torch

from interhandgen.data.canonical import ROT_SLICE, TRANSL_SLICE, canonical_vertices
from interhandgen.geometry.optim import BatchedAdam
from interhandgen.geometry.points import (gather_rows, mutual_nearest, nearest_squared_distances, nearest_within,
                                         sample_blocks)
from interhandgen.geometry.proxy import RADIUS_MARGIN, SphereProxy, build_sphere_proxy, sphere_clearance
from interhandgen.generation.subset import SubsetHand
from interhandgen.rotations import axis_angle_to_matrix, matrix_to_rot6d, rot6d_to_matrix
from interhandgen.exceptions import InputError

MM = 1000.0

__all__ = ["SettleConfig", "settle_contact", "interpenetrating", "hand_spheres"]


@dataclasses.dataclass(frozen=True)
class SettleConfig:
    """Options of :func:`settle_contact` (lengths in millimetres, rotations in radians)."""

    attract_mm: float = 15.0  # pairs closer than this are settled (see SamplerSettings.settle_attract_mm)
    touch_mm: float = 0.5  # the closest point pair is pulled to within this distance
    margin_mm: float = 0.6  # a point closer than this inside the other surface counts as penetrating
    nn_radius_mm: float = 20.0  # a point farther than this from the other hand cannot be inside it
    steps: int = 80
    nn_every: int = 4  # nearest neighbours are refreshed every this many steps (a step moves about 1 mm)
    settle_gap_mm: float = 1.0  # a pair leaves the optimisation (at a refresh) once this close without penetration
    points: int = 768  # farthest-point subset per hand
    # Points per hand taking part: those nearest the other hand. 128 since 2026-12-06 (192 before): on 2,500 network +
    # APG pairs the same pairs touch (gap < 2 mm: 0.908 both) and fail the resampling check (117 vs 116) for 0.79x the
    # settling CPU (docs/diffusion.md, "Speed of the post-processing").
    near_size: int = 128
    lr_translation: float = 1.0  # mm per Adam step
    lr_rotation: float = 0.02  # rad per Adam step
    penetration_weight: float = 30.0
    proxy_weight: float = 1.0  # inscribed-sphere overlap (deep interpenetration), relative to the vertex term
    touch_weight: float = 50.0
    reg_translation: float = 1e-3  # per mm^2
    reg_rotation: float = 50.0  # per rad^2

    def validate(self) -> None:
        for name in ("attract_mm", "touch_mm", "nn_radius_mm", "lr_translation", "lr_rotation", "settle_gap_mm"):
            if not getattr(self, name) > 0:
                raise InputError(f"SettleConfig.{name} must be > 0, got {getattr(self, name)}")
        for name in ("margin_mm", "penetration_weight", "proxy_weight", "touch_weight", "reg_translation",
                     "reg_rotation"):
            if not getattr(self, name) >= 0:
                raise InputError(f"SettleConfig.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("steps", "nn_every", "points", "near_size"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"SettleConfig.{name} must be >= 1, got {getattr(self, name)}")


_PROXIES: dict[tuple[int, str, torch.dtype], tuple[object, SphereProxy]] = {}


def _proxy_for(data, device: torch.device, dtype: torch.dtype) -> SphereProxy:
    """The sphere proxy of a hand model's data, built once per (data object, device, dtype)."""
    key = (id(data), str(device), dtype)
    hit = _PROXIES.get(key)
    if hit is None or hit[0] is not data:  # the id of a freed object can be reused
        hit = (data, build_sphere_proxy(data, device=device, dtype=dtype))
        _PROXIES[key] = hit
    return hit[1]


def _depth_below(points: torch.Tensor, nearest: torch.Tensor, normals: torch.Tensor, margin: float = 0.0,
                 radius: float = float("inf")) -> torch.Tensor:
    """[B, N] how far (mm) each point lies below ``margin`` outside the surface, judged by its nearest point of the
    other hand ``nearest`` [B, N, 3] and that point's outward normal; 0 beyond ``radius``. The rule of
    :func:`interhandgen.data.synth.optimize.penetration_depths`, on already gathered neighbours."""
    offset = points - nearest
    depth = torch.relu(margin - (offset * normals).sum(-1))
    near = (offset.detach() ** 2).sum(-1) < radius ** 2
    return depth * near.to(depth.dtype)


def _capped_radii(proxy: SphereProxy, rest: torch.Tensor, centres: torch.Tensor, verts: torch.Tensor) -> torch.Tensor:
    """[B, S] proxy radii scaled with the hand (``proxy.radii(rest)``) and capped by the distance from each posed
    centre [B, S, 3] to the nearest posed full-mesh vertex [B, V, 3] minus ``RADIUS_MARGIN``: the rule of
    :meth:`SphereProxy.radii` with vertices, computed as one product of augmented coordinates
    [c, 1] . [-2 v, |v|^2] reduced along its contiguous axis, in cache-sized blocks of samples (no index search;
    about 3x faster than the full distance matrix on the CPU). Metres."""
    c0 = verts.mean(1, keepdim=True)
    c, v = centres - c0, verts - c0
    query = torch.cat([c, torch.ones_like(c[..., :1])], dim=-1)
    target = torch.cat([-2.0 * v, (v * v).sum(-1, keepdim=True)], dim=-1).transpose(1, 2)
    d2 = torch.cat([torch.bmm(query[blk], target[blk]).amin(dim=2)
                    for blk in sample_blocks(c.shape[0], c.shape[1], v.shape[1])]) + (c * c).sum(-1)
    nearest = d2.clamp_min(0).sqrt() - RADIUS_MARGIN
    return torch.minimum(proxy.radii(rest), nearest.clamp_min(0.0))


def hand_spheres(hand: SubsetHand, x: torch.Tensor, capped: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Inscribed spheres of the hands x [B, 64] in the canonical frame: centres [B, S, 3] and radii [B, S]
    (metres), the radii capped by the posed full mesh (:mod:`interhandgen.data.synth.proxy`); ``capped=False``:
    the shape-scaled radii without the cap (no full-mesh skinning; never smaller than the capped ones)."""
    model = hand.hand_model
    proxy = _proxy_for(model.data, x.device, x.dtype)
    rest, transforms = hand.skeleton(x)
    centres = proxy.centres(rest, transforms)
    if not capped:
        return centres, proxy.radii(rest)
    verts, _ = canonical_vertices(x, model)
    return centres, _capped_radii(proxy, rest, centres, verts.to(x.dtype))


_spheres = hand_spheres  # the name its callers here use


_PROXY_FIELDS = ("ca", "cb", "reach", "reach_sq")


@dataclasses.dataclass
class _RigidState:
    """Per-pair state of the settling loop (mm). ``pa``/``na`` [K, n, 3]: the anchor's near points and normals;
    ``pb``/``nb`` [K, m, 3]: the other hand's near points relative to ``pivot`` [K, 1, 3] and their normals, at the
    start; ``pb_near``/``nb_near`` [K, n, 3] and ``pa_near``/``na_near`` [K, m, 3]: the nearest partners of each
    point, gathered at the last refresh (fixed between refreshes: only the rigid move changes). Sphere proxies
    (centres ``ca`` [P, Sa, 3], ``cb`` [P, Sb, 3] relative to the pivot, and ``reach`` [P, Sa, Sb], the sum of
    every two radii, with its square ``reach_sq``) exist only for the rows ``prow`` [P] (indices into the K rows),
    the pairs that started with a point inside the other hand."""

    pa: torch.Tensor
    na: torch.Tensor
    pb: torch.Tensor
    nb: torch.Tensor
    pivot: torch.Tensor
    prow: torch.Tensor
    ca: torch.Tensor
    cb: torch.Tensor
    reach: torch.Tensor
    reach_sq: torch.Tensor
    pb_near: torch.Tensor | None = None
    nb_near: torch.Tensor | None = None
    pa_near: torch.Tensor | None = None
    na_near: torch.Tensor | None = None

    def moved(self, points: torch.Tensor, Rt: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        """Points relative to the pivot [K, n, 3] after the rigid move (rotation Rt = Rd^T [K, 3, 3], tau [K, 3])."""
        return points @ Rt + (self.pivot + tau[:, None])

    def refresh(self, Rt: torch.Tensor, tau: torch.Tensor) -> None:
        """Nearest partners of the moved hand; gathered from the fixed (unmoved) points, moved at every step."""
        i_ab, i_ba = mutual_nearest(self.pa, self.moved(self.pb, Rt, tau))
        self.pb_near, self.nb_near = gather_rows(self.pb, i_ab), gather_rows(self.nb, i_ab)
        self.pa_near, self.na_near = gather_rows(self.pa, i_ba), gather_rows(self.na, i_ba)

    def keep(self, rows: torch.Tensor) -> "_RigidState":
        """The state of the rows ``rows`` (sorted long [K'] into the current rows)."""
        new_index = torch.full((self.pa.shape[0],), -1, dtype=torch.long, device=rows.device)
        new_index[rows] = torch.arange(rows.numel(), device=rows.device)
        mapped = new_index[self.prow]
        sel = mapped >= 0
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out = {k: (v[sel] if k in _PROXY_FIELDS else v[rows] if v is not None else None)
               for k, v in fields.items() if k != "prow"}
        out.update(prow=mapped[sel])
        return _RigidState(**out)


def rigid_settle_gradients(st: _RigidState, tau: torch.Tensor, omega: torch.Tensor, config: SettleConfig):
    """The settling loss's gradient in closed form, and the quantities that judge a pair settled.

    The loss per pair (mm; nearest partners fixed, as gathered at the last refresh), of the rigid move
    x -> Rd(omega) (x - pivot) + pivot + tau of the other hand:

        penetration_weight * (sum depth_a^2 + sum depth_b^2 + proxy_weight * sum overlap^2)
        + touch_weight * relu(gap - touch_mm)^2 + reg_translation |tau|^2 + reg_rotation |omega|^2

    ``depth_a``: how far (below ``margin_mm`` outside) each anchor point lies under the tangent plane of its moved
    nearest partner (within ``nn_radius_mm``), ``depth_b`` the same for the moved points against the anchor,
    ``overlap`` the overlap of every pair of proxy spheres, ``gap`` the smallest anchor-to-partner distance.
    Gradients of the moved points are summed into the translation and the 3x3 matrix gradient in one product
    each; only the rotation's Rodrigues map goes through autograd ([K, 3] -> [K, 3, 3]). Checked against autograd of
    the same loss in tests/generation/test_settle_fast.py.

    Returns (grad_tau [K, 3], grad_omega [K, 3], deepest [K] (largest depth, margin included), overlap [K],
    gap [K]).
    """
    wp = config.penetration_weight
    with torch.enable_grad():
        om = omega.detach().requires_grad_(True)
        Rd = axis_angle_to_matrix(om)
    Rt = Rd.detach().transpose(1, 2)
    r2 = config.nn_radius_mm ** 2
    # The anchor's points against the moved partners (moved normals too).
    q_near = st.moved(st.pb_near, Rt, tau)
    n_near = st.nb_near @ Rt
    off_a = st.pa - q_near
    d2_a = (off_a * off_a).sum(-1)
    depth_a = torch.relu(config.margin_mm - (off_a * n_near).sum(-1)) * (d2_a < r2).to(off_a.dtype)
    # The moved points against the anchor.
    depth_b = _depth_below(st.moved(st.pb, Rt, tau), st.pa_near, st.na_near, config.margin_mm, config.nn_radius_mm)
    gap2, closest = d2_a.min(dim=1)
    gap = gap2.sqrt()
    # d loss / d (moved point or normal), then into tau and Rd: x' = Rd v + const gives dL/dRd = sum g v^T.
    c_a = (2.0 * wp) * depth_a[..., None]
    g_qa, g_na = c_a * n_near, -c_a * off_a
    g_qb = (-2.0 * wp) * depth_b[..., None] * st.na_near
    rows = torch.arange(tau.shape[0], device=tau.device)
    pull = 2.0 * config.touch_weight * torch.relu(gap - config.touch_mm)
    unit = -off_a[rows, closest] / torch.where(gap > 0, gap, torch.ones_like(gap))[:, None]
    g_touch = (pull * (gap > 0).to(gap.dtype))[:, None] * unit
    g_tau = g_qa.sum(1) + g_qb.sum(1) + g_touch + 2.0 * config.reg_translation * tau
    G = (g_qa.transpose(1, 2) @ st.pb_near + g_na.transpose(1, 2) @ st.nb_near + g_qb.transpose(1, 2) @ st.pb
         + g_touch[:, :, None] * st.pb_near[rows, closest][:, None, :])
    overlap = torch.zeros_like(gap)
    if config.proxy_weight > 0 and st.prow.numel():
        p = st.prow
        cb = st.cb @ Rt[p] + (st.pivot[p] + tau[p][:, None])
        # Distances by the centred expanded form (as torch.cdist on this many points).
        c0 = st.ca.mean(1, keepdim=True)
        ca, cbc = st.ca - c0, cb - c0
        d2 = torch.baddbmm((cbc * cbc).sum(-1)[:, None, :], ca, cbc.transpose(1, 2), alpha=-2.0)
        d2.add_((ca * ca).sum(-1)[:, :, None])
        # Most proxy rows have no overlapping spheres (one comparison tells): the rest of the term runs on the others.
        hit = torch.nonzero((d2 - st.reach_sq).flatten(1).amin(1) < 0).squeeze(1)
        if hit.numel():
            d = d2[hit].clamp_min_(0).sqrt_()
            ov = torch.relu(st.reach[hit] - d)
            ca, cbc, p = ca[hit], cbc[hit], p[hit]
            overlap = overlap.index_put((p,), (ov * ov).sum(dim=(1, 2)))
            # d(overlap^2)/d cb_l = -2 ov (cb_l - ca_k) / d, summed over k.
            co = (2.0 * wp * config.proxy_weight) * ov / torch.where(d > 0, d, torch.ones_like(d))
            g_c = -(cbc * co.sum(1)[..., None] - co.transpose(1, 2) @ ca)
            g_tau = g_tau.index_add(0, p, g_c.sum(1))
            G = G.index_add(0, p, g_c.transpose(1, 2) @ st.cb[hit])
    g_omega = torch.autograd.grad(Rd, om, G)[0] + 2.0 * config.reg_rotation * omega
    deepest = torch.maximum(depth_a.amax(1), depth_b.amax(1))
    return g_tau, g_omega, deepest, overlap, gap


def settle_contact(anchor: torch.Tensor, other: torch.Tensor, anchor_hand: SubsetHand, other_hand: SubsetHand,
                   config: SettleConfig = SettleConfig()) -> torch.Tensor:
    """Settle the conditioned hand against the anchor; returns new RAW canonical vectors of ``other`` [B, 64].

    Args:
        anchor, other: raw (de-standardised) canonical hand vectors [B, 64] in the anchor's frame (metres).
        anchor_hand, other_hand: the hands' surface subsets (:class:`SubsetHand`; their size is the subset used,
            ``config.points`` is the size the sampler builds them with).
    Only the rotation (6D) and translation of ``other`` change, and only for the pairs whose subsets are closer
    than ``config.attract_mm`` and that are not already settled (touching within ``settle_gap_mm`` with no near
    point inside the other hand and no sphere overlap); the other rows are returned bit-for-bit unchanged. Each
    pair's result does not depend on the other pairs of the batch (up to the rounding of batched products).
    """
    config.validate()
    for name, x in (("anchor", anchor), ("other", other)):
        if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != 64:
            raise InputError(f"{name} must be raw canonical hand vectors [B, 64], got "
                             f"{list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    if anchor.shape[0] != other.shape[0]:
        raise InputError(f"anchor and other have different batch sizes: {anchor.shape[0]} and {other.shape[0]}")
    out = other.clone()
    if anchor.shape[0] == 0:
        return out
    with torch.no_grad():
        pa, na = anchor_hand(anchor.float())
        pb, nb = other_hand(other.float())
        pa, pb = pa * MM, pb * MM
        d_ab, d_ba = nearest_squared_distances(pa, pb)
        rows = torch.nonzero(d_ab.amin(1) < config.attract_mm ** 2).squeeze(1)
        if rows.numel() == 0:
            return out
        pa, na, pb, nb = pa[rows], na[rows], pb[rows], nb[rows]
        k_a, k_b = min(config.near_size, pa.shape[1]), min(config.near_size, pb.shape[1])
        idx_a = d_ab[rows].topk(k_a, dim=1, largest=False).indices
        idx_b = d_ba[rows].topk(k_b, dim=1, largest=False).indices
        pa, na, pb, nb = gather_rows(pa, idx_a), gather_rows(na, idx_a), gather_rows(pb, idx_b), gather_rows(nb, idx_b)
        pivot = pb.mean(1, keepdim=True)
        K = rows.numel()
        no_proxy = torch.zeros(0, dtype=torch.long, device=pa.device)
        st = _RigidState(pa, na, pb - pivot, nb, pivot, no_proxy, pa.new_zeros(0, 1, 3), pa.new_zeros(0, 1, 3),
                         pa.new_zeros(0, 1, 1), pa.new_zeros(0, 1, 1))
        eye = torch.eye(3, dtype=pa.dtype, device=pa.device).expand(K, 3, 3)
        st.refresh(eye, pa.new_zeros(K, 3))
        if config.proxy_weight > 0:
            # Pairs with a near point inside the other hand at the start (nearest-point + normal test among the
            # near points): only they can hide a deep overlap, so only they get the sphere proxies (posing the
            # proxies and capping their radii by the full mesh is the costly part; a pair that starts outside
            # is moved only into touch).
            inside0 = ((_depth_below(st.pa, st.pb_near + st.pivot, st.nb_near) > 0).any(1)
                       | (_depth_below(st.pb + st.pivot, st.pa_near, st.na_near) > 0).any(1))
            prow = torch.nonzero(inside0).squeeze(1)
            if prow.numel():
                sel = rows[prow]
                ca, ra = _spheres(anchor_hand, anchor[sel].float())
                cb, rb = _spheres(other_hand, other[sel].float())
                reach = (ra[:, :, None] + rb[:, None, :]) * MM
                st.prow, st.ca, st.cb, st.reach, st.reach_sq = prow, ca * MM, cb * MM - pivot[prow], reach, reach * reach

    zeros = lambda: torch.zeros(K, 3, dtype=pa.dtype, device=pa.device)  # noqa: E731
    opt = BatchedAdam([zeros(), zeros()], [config.lr_translation, config.lr_rotation], config.steps)
    final_tau, final_omega = zeros(), zeros()
    moved = torch.ones(K, dtype=torch.bool, device=pa.device)
    live = torch.arange(K, device=pa.device)  # the settled rows still optimised

    for step in range(config.steps):
        tau, omega = opt.params
        if step % config.nn_every == 0 and step > 0:  # (step 0: refreshed above)
            with torch.no_grad():
                st.refresh(axis_angle_to_matrix(omega).transpose(1, 2), tau)
        g_tau, g_omega, deepest, overlap, gap = rigid_settle_gradients(st, tau, omega, config)
        if step % config.nn_every == 0:
            # Settled (judged before this step's update, so a finished pair keeps its current state): touching
            # within ``settle_gap_mm``, no point inside the other surface (depth below the margin means outside),
            # no sphere overlap. At step 0 this leaves pairs that are settled already untouched.
            done = (deepest <= config.margin_mm) & (overlap <= 0) & (gap <= config.settle_gap_mm)
            if bool(done.any()):
                final_tau[live[done]], final_omega[live[done]] = tau[done], omega[done]
                if step == 0:
                    moved[live[done]] = False
                keep = torch.nonzero(~done).squeeze(1)
                live = live[keep]
                if live.numel() == 0:
                    break
                opt.keep(keep)
                st = st.keep(keep)
                g_tau, g_omega = g_tau[keep], g_omega[keep]
        with torch.no_grad():
            opt.step([g_tau, g_omega])
    if live.numel():
        final_tau[live], final_omega[live] = opt.params[0], opt.params[1]

    with torch.no_grad():
        keep = torch.nonzero(moved).squeeze(1)
        rows, tau, omega, p = rows[keep], final_tau[keep], final_omega[keep], pivot[keep, 0].to(other.dtype)
        Rd = axis_angle_to_matrix(omega).to(other.dtype)
        sel = other[rows]
        R = rot6d_to_matrix(sel[:, ROT_SLICE])
        t_mm = sel[:, TRANSL_SLICE] * MM
        t_new = (Rd @ (t_mm - p)[..., None]).squeeze(-1) + p + tau.to(other.dtype)
        sel = sel.clone()
        sel[:, ROT_SLICE] = matrix_to_rot6d(Rd @ R)
        sel[:, TRANSL_SLICE] = t_new / MM
        out[rows] = sel
    return out


@torch.no_grad()
def interpenetrating(anchor: torch.Tensor, other: torch.Tensor, anchor_hand: SubsetHand, other_hand: SubsetHand,
                     depth_mm: float = 1.0, radius_mm: float = 20.0) -> torch.Tensor:
    """[B] bool: do the hands (raw canonical vectors [B, 64]) interpenetrate beyond ``depth_mm``?

    True where a subset point of either hand lies deeper than ``depth_mm`` below the other hand's surface by the
    nearest-point + normal test (within ``radius_mm`` of it), or where the hands' inscribed spheres overlap
    (certain interpenetration, which the nearest-point test can miss when it is deep). Used to resample the
    partners that settling could not separate. An estimate: next to concave regions the nearest-point test can
    flag a touching pair (1 of 6 settled test pairs), which is then resampled needlessly.
    """
    if not depth_mm > 0:
        raise InputError(f"depth_mm must be > 0, got {depth_mm}")
    if anchor.shape[0] == 0:
        return torch.zeros(0, dtype=torch.bool, device=anchor.device)
    pa, na = anchor_hand(anchor.float())
    pb, nb = other_hand(other.float())
    pa, pb = pa * MM, pb * MM
    # Only points within radius_mm of the other hand can count (the rest is masked): search those only.
    d_ab, d_ba = nearest_squared_distances(pa, pb)
    i_ab, near_a, i_ba, near_b = nearest_within(pa, pb, d_ab, d_ba, radius_mm ** 2)
    depth = torch.maximum(
        (_depth_below(pa, gather_rows(pb, i_ab), gather_rows(nb, i_ab), radius=radius_mm) * near_a).amax(1),
        (_depth_below(pb, gather_rows(pa, i_ba), gather_rows(na, i_ba), radius=radius_mm) * near_b).amax(1))
    out = depth > depth_mm
    # Sphere proxies only where some point is inside but none deeper than depth_mm (a deep overlap can fool the
    # nearest-point test; a pair with no point inside is not checked further).
    check = torch.nonzero((depth > 0) & ~out).squeeze(1)
    if check.numel():
        # spheres without their cap by the posed mesh (no full skinning) are at least as large: where they do not
        # overlap, the capped ones do not either; only the other pairs need the capped radii
        ca, ra = _spheres(anchor_hand, anchor[check].float(), capped=False)
        cb, rb = _spheres(other_hand, other[check].float(), capped=False)
        check = check[(sphere_clearance(ca, ra, cb, rb) < 0).flatten(1).any(dim=1)]
    if check.numel():
        ca, ra = _spheres(anchor_hand, anchor[check].float())
        cb, rb = _spheres(other_hand, other[check].float())
        out[check] = (sphere_clearance(ca, ra, cb, rb) < 0).flatten(1).any(dim=1)
    return out
