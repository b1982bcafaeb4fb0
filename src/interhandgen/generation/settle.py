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
from interhandgen.geometry.points import gather_rows, nearest_both_ways
from interhandgen.geometry.proxy import SphereProxy, build_sphere_proxy, sphere_clearance
from interhandgen.generation.subset import SubsetHand
from interhandgen.rotations import axis_angle_to_matrix, matrix_to_rot6d, rot6d_to_matrix
from interhandgen.exceptions import InputError

MM = 1000.0

__all__ = ["SettleConfig", "settle_contact", "interpenetrating"]


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
    near_size: int = 192  # points per hand taking part: those nearest the other hand
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


def _proxy_spheres(anchor_hand: SubsetHand, other_hand: SubsetHand, anchor: torch.Tensor, other: torch.Tensor,
                   rows: torch.Tensor):
    """Sphere proxies in mm (centres [B, S, 3], radii [B, S] for each hand) posed for the pairs where ``rows``
    [B] is True; the other pairs get zero radii with the two hands' centres a kilometre apart, so that they add
    no overlap (and no gradient)."""
    sel = torch.nonzero(rows).squeeze(1)
    proxy_a = _proxy_for(anchor_hand.hand_model.data, anchor.device, anchor.dtype)
    proxy_b = _proxy_for(other_hand.hand_model.data, other.device, other.dtype)
    B = anchor.shape[0]
    ca = torch.zeros(B, proxy_a.coeff.shape[0], 3, dtype=anchor.dtype, device=anchor.device)
    cb = torch.zeros(B, proxy_b.coeff.shape[0], 3, dtype=anchor.dtype, device=anchor.device)
    cb[..., 0] = 1e6
    ra = torch.zeros(B, proxy_a.coeff.shape[0], dtype=anchor.dtype, device=anchor.device)
    rb = torch.zeros(B, proxy_b.coeff.shape[0], dtype=anchor.dtype, device=anchor.device)
    if sel.numel():
        c, r = _spheres(anchor_hand, anchor[sel])
        ca[sel], ra[sel] = c * MM, r * MM
        c, r = _spheres(other_hand, other[sel])
        cb[sel], rb[sel] = c * MM, r * MM
    return ca, ra, cb, rb


def _spheres(hand: SubsetHand, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inscribed spheres of the hands x [B, 64] in the canonical frame: centres [B, S, 3] and radii [B, S]
    (metres), the radii capped by the posed full mesh (:mod:`interhandgen.data.synth.proxy`)."""
    model = hand.hand_model
    proxy = _proxy_for(model.data, x.device, x.dtype)
    rest, transforms = hand.skeleton(x)
    centres = proxy.centres(rest, transforms)
    verts, _ = canonical_vertices(x, model)
    return centres, proxy.radii(rest, centres, verts.to(x.dtype))


def settle_contact(anchor: torch.Tensor, other: torch.Tensor, anchor_hand: SubsetHand, other_hand: SubsetHand,
                   config: SettleConfig = SettleConfig()) -> torch.Tensor:
    """Settle the conditioned hand against the anchor; returns new RAW canonical vectors of ``other`` [B, 64].

    Args:
        anchor, other: raw (de-standardised) canonical hand vectors [B, 64] in the anchor's frame (metres).
        anchor_hand, other_hand: the hands' surface subsets (:class:`SubsetHand`; their size is the subset used,
            ``config.points`` is the size the sampler builds them with).
    Only the rotation (6D) and translation of ``other`` change, and only for the pairs whose subsets are closer
    than ``config.attract_mm``; the other rows are returned unchanged.
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
        d_ab, i_ab0, d_ba, i_ba0 = nearest_both_ways(pa, pb)
        gap0 = d_ab.amin(1).clamp_min(0).sqrt()
        rows = torch.nonzero(gap0 < config.attract_mm).squeeze(1)
        if rows.numel() == 0:
            return out
        # Pairs with a subset point inside the other hand at the start: only they can hide a deep overlap, so only
        # they get the sphere proxies (posing the proxies and capping their radii by the full mesh is the costly
        # part; a pair that starts outside is moved only into touch).
        inside0 = ((_depth_below(pa, gather_rows(pb, i_ab0), gather_rows(nb, i_ab0)) > 0).any(1)
                   | (_depth_below(pb, gather_rows(pa, i_ba0), gather_rows(na, i_ba0)) > 0).any(1))[rows]
        pa, na, pb, nb = pa[rows], na[rows], pb[rows], nb[rows]
        k_a, k_b = min(config.near_size, pa.shape[1]), min(config.near_size, pb.shape[1])
        idx_a = d_ab[rows].topk(k_a, dim=1, largest=False).indices
        idx_b = d_ba[rows].topk(k_b, dim=1, largest=False).indices
        pa, na, pb, nb = gather_rows(pa, idx_a), gather_rows(na, idx_a), gather_rows(pb, idx_b), gather_rows(nb, idx_b)
        pivot = pb.mean(1, keepdim=True)
        if config.proxy_weight > 0:
            ca, ra, cb, rb = _proxy_spheres(anchor_hand, other_hand, anchor[rows].float(), other[rows].float(),
                                            inside0)

    K = rows.numel()
    zeros = lambda: torch.zeros(K, 3, dtype=pa.dtype, device=pa.device)  # noqa: E731
    opt = BatchedAdam([zeros(), zeros()], [config.lr_translation, config.lr_rotation], config.steps)
    final_tau, final_omega = zeros(), zeros()
    # Per-sample state of the pairs still optimised; ``live`` indexes them into the K settled rows.
    st = {"pa": pa, "na": na, "pb": pb, "nb": nb, "pivot": pivot}
    if config.proxy_weight > 0:
        st.update(ca=ca, ra=ra, cb=cb, rb=rb)
    live = torch.arange(K, device=pa.device)

    for step in range(config.steps):
        tau, omega = (p.requires_grad_(True) for p in opt.params)
        Rd = axis_angle_to_matrix(omega)

        def move(points: torch.Tensor) -> torch.Tensor:
            return (points - st["pivot"]) @ Rd.transpose(1, 2) + st["pivot"] + tau[:, None]

        qb = move(st["pb"])
        overlap = torch.zeros_like(tau[:, 0])
        if config.proxy_weight > 0:
            overlap = torch.relu(-sphere_clearance(st["ca"], st["ra"], move(st["cb"]), st["rb"])).square().sum(dim=(1, 2))
        refresh = step % config.nn_every == 0
        if refresh:
            with torch.no_grad():
                _, i_ab, _, i_ba = nearest_both_ways(st["pa"], qb.detach())
        # Nearest points are gathered from the fixed (unmoved) points and moved afterwards: the same values, and no
        # gather on a tensor that needs a gradient (its backward accumulates with atomics on CUDA, which made the
        # result differ from run to run there).
        qb_near = move(gather_rows(st["pb"], i_ab))
        qn_near = gather_rows(st["nb"], i_ab) @ Rd.transpose(1, 2)
        depth_a = _depth_below(st["pa"], qb_near, qn_near, config.margin_mm, config.nn_radius_mm)
        depth_b = _depth_below(qb, gather_rows(st["pa"], i_ba), gather_rows(st["na"], i_ba), config.margin_mm,
                               config.nn_radius_mm)
        gap = (st["pa"] - qb_near).norm(dim=-1).amin(dim=1)
        loss = (config.penetration_weight * ((depth_a ** 2).sum(1) + (depth_b ** 2).sum(1)
                                             + config.proxy_weight * overlap)
                + config.touch_weight * torch.relu(gap - config.touch_mm) ** 2
                + config.reg_translation * (tau ** 2).sum(1) + config.reg_rotation * (omega ** 2).sum(1))
        grads = list(torch.autograd.grad(loss.sum(), [tau, omega]))
        for p in opt.params:
            p.requires_grad_(False)
        if refresh and step > 0:
            # Settled (judged before this step's update, so a finished pair keeps its current state): touching
            # within ``settle_gap_mm``, no point inside the other surface (depth below the margin means outside),
            # no sphere overlap.
            with torch.no_grad():
                deepest = torch.maximum(depth_a.amax(1), depth_b.amax(1))
                done = (deepest <= config.margin_mm) & (overlap <= 0) & (gap <= config.settle_gap_mm)
            if bool(done.any()):
                final_tau[live[done]], final_omega[live[done]] = opt.params[0][done], opt.params[1][done]
                keep = torch.nonzero(~done).squeeze(1)
                live = live[keep]
                if live.numel() == 0:
                    break
                opt.keep(keep)
                grads = [g[keep] for g in grads]
                st = {k: v[keep] for k, v in st.items()}
                i_ab, i_ba = i_ab[keep], i_ba[keep]
        with torch.no_grad():
            opt.step(grads)
    if live.numel():
        final_tau[live], final_omega[live] = opt.params[0], opt.params[1]

    with torch.no_grad():
        tau, omega = final_tau, final_omega
        Rd = axis_angle_to_matrix(omega).to(other.dtype)
        sel = other[rows]
        R = rot6d_to_matrix(sel[:, ROT_SLICE])
        t_mm = sel[:, TRANSL_SLICE] * MM
        p = pivot[:, 0].to(other.dtype)
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
    _, i_ab, _, i_ba = nearest_both_ways(pa, pb)
    depth = torch.maximum(_depth_below(pa, gather_rows(pb, i_ab), gather_rows(nb, i_ab), radius=radius_mm).amax(1),
                          _depth_below(pb, gather_rows(pa, i_ba), gather_rows(na, i_ba), radius=radius_mm).amax(1))
    out = depth > depth_mm
    # Sphere proxies only where some point is inside but none deeper than depth_mm (a deep overlap can fool the
    # nearest-point test; a pair with no point inside is not checked further).
    check = torch.nonzero((depth > 0) & ~out).squeeze(1)
    if check.numel():
        ca, ra = _spheres(anchor_hand, anchor[check].float())
        cb, rb = _spheres(other_hand, other[check].float())
        out[check] = (sphere_clearance(ca, ra, cb, rb) < 0).flatten(1).any(dim=1)
    return out
