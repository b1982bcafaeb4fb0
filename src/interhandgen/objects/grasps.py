"""Bimanual grasps of an object: interaction categories, placement on the object and contact optimisation.

A chunk is one object and one category, ``n`` grasps optimised together (torch, batched). Per grasp:

1. **Poses**: each hand draws a pose family of its role (:data:`interhandgen.data.synth.poses.POSE_FAMILIES`,
   inside the joint limits by construction) and a shape ``betas ~ N(0, I)``.
2. **Targets**: each hand's role names a *zone* of the object's surface (side, lower side, top band, bottom,
   ends along the axis, ...; object frame, +z the family's axis); a target point is drawn from the zone's
   area-weighted surface samples, the second hand's in the category's *relation* to the first (opposite
   side, about 90 degrees around, anywhere).
3. **Placement**: the hand's anchor (centroid of its anchor region, palm normal, forward axis) is aligned to
   the target: palm facing the surface (normal reversed), forward axis by the role's *spin* rule (fingers around
   the object's axis, along it, or at random), started outside and moved in along the surface normal by the
   exact object distance of its nearest vertex (the signed distance is 1-Lipschitz, so the move never makes the
   hand penetrate) until it is 3 mm away.
4. **Optimisation** (Adam, :data:`STEPS` steps, cosine decay; the project's :class:`~interhandgen.geometry.optim.BatchedAdam` so that each grasp's
   state is its own): per hand a translation, a rotation about its anchor and the 7 pose synergies
   (:func:`interhandgen.data.synth.poses.synergy_basis`). Loss in millimetres: the closest fraction of the role's
   contact region pulled onto the surface (exact object signed distance of every subset vertex, with the closest
   point and gradient direction refreshed every :data:`REFRESH` steps, :mod:`interhandgen.objects.sdf`), the
   hand's closest vertex held within 0.4 mm, every vertex pushed out of the object quadratically, the two hands'
   inscribed-sphere proxies kept apart (:mod:`interhandgen.data.synth.proxy`), in ``hands_touch`` categories the
   two hands' closest vertices pulled together, and a regulariser towards the initial placement.
5. **World frame**: gravity is world -z. The object's *support direction* is the mean, over both hands, of the
   directions in which the hand's contact vertices push (minus the object's outward normal there); the world
   is rotated so that it points up (+z), with a random turn about z (antipodal squeezes, whose directions cancel,
   keep the object's own +z up). The object's centre of mass is placed at N(0, (3 cm)^2) per axis.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
import torch.nn.functional as F

from interhandgen.data.synth.generator import HandBatch, _hand_params
from interhandgen.data.synth.kinematics import HandKinematics
from interhandgen.data.synth.placement import AnchorFrame, align, hand_vector, region_centroid, rotate_about
from interhandgen.data.synth.poses import POSE_FAMILIES, sample_pose_logits, synergy_basis
from interhandgen.geometry import penetration_depth
from interhandgen.geometry.optim import BatchedAdam
from interhandgen.geometry.proxy import sphere_clearance, sphere_overlap_energy
from interhandgen.objects.library import ObjectMesh
from interhandgen.objects.sdf import ObjectSDF, differentiable_sdf
from interhandgen.rotations import axis_angle_to_matrix, matrix_to_axis_angle

MM = 1000.0
STEPS = 30
REFRESH = 3
#: Subset vertices per hand taking part in the optimisation (nearest the object, contact region first).
NEAR_SIZE = 192
#: Contact vertices are pulled to this distance outside the surface, every vertex pushed out to PEN_MARGIN (mm).
CONTACT_MM = 0.5
PEN_MARGIN_MM = 1.0
#: During the optimisation, vertices certainly farther than this from the object skip the exact distance pass (a
#: vertex moves about 2 mm at most between refreshes; 12 mm gave the same acceptance on 64 grasps at 20 % more CPU).
FAR = 0.006
#: Accepted grasps: each hand within this distance of the object (metres), no vertex deeper than MAX_DEPTH.
CONTACT_DISTANCE = 0.002
MAX_DEPTH = 0.005
SURFACE_SAMPLES = 4000


@dataclasses.dataclass(frozen=True)
class HandRole:
    """What one hand does: pose families, anchor and contact regions, object zone and spin rule."""

    families: tuple[str, ...]
    zone: str
    spin: str = "around"  # "around": fingers around the object's axis; "along": along it; "random"
    anchor: str = "palm_center"
    contact: str = "palmar_all"
    fraction: float = 0.3


@dataclasses.dataclass(frozen=True)
class ObjectCategory:
    name: str
    description: str
    object_families: tuple[str, ...]
    a: HandRole
    b: HandRole
    relation: str = "opposite"  # where B's target lies relative to A's: "opposite", "around", "any"
    hands_touch: bool = False


GRIP = ("grip",)
OPEN = ("relaxed", "cup")
FLAT = ("flat", "relaxed")
PINCH = ("thumb_out",)
LARGE = ("box", "sphere", "ellipsoid", "cylinder", "convex_hull", "frustum", "torus")

CATEGORIES: dict[str, ObjectCategory] = {c.name: c for c in [
    ObjectCategory("two_hand_hold", "both palms on opposite lower sides of a large object", LARGE,
                   HandRole(OPEN, "side_low", "random"), HandRole(OPEN, "side_low", "random")),
    ObjectCategory("lid_twist", "one hand grips the body, the other the cap/top", ("bottle", "cylinder", "frustum"),
                   HandRole(GRIP, "side_mid", "around"),
                   HandRole(PINCH, "side_top", "around", anchor="finger_pads", contact="finger_pads"), "any"),
    ObjectCategory("handover", "both hands grip an elongated object at its two ends",
                   ("rod", "mallet", "capsule", "bottle", "cylinder"),
                   HandRole(GRIP, "end_low", "around"), HandRole(GRIP, "end_high", "around"), "any"),
    ObjectCategory("pinch_support", "one hand supports from below, the other pinches it",
                   ("box", "sphere", "cylinder", "capsule", "convex_hull", "ellipsoid", "bottle"),
                   HandRole(OPEN, "bottom", "random", contact="palm"),
                   HandRole(PINCH, "side_top", "random", anchor="finger_pads", contact="finger_pads"), "any"),
    ObjectCategory("carry_box", "both palms under the bottom of a box, near its two ends", ("box",),
                   HandRole(FLAT, "bottom_end_neg", "along", contact="palm"),
                   HandRole(FLAT, "bottom_end_pos", "along", contact="palm"), "any"),
    ObjectCategory("hold_from_below", "a bowl or plate held from below by both hands", ("bowl", "plate"),
                   HandRole(OPEN, "bottom", "random", contact="palm"),
                   HandRole(OPEN, "bottom", "random", contact="palm"), "opposite"),
    ObjectCategory("hands_touching", "both hands around an object, their fingers touching",
                   ("sphere", "ellipsoid", "cylinder", "convex_hull", "capsule"),
                   HandRole(OPEN, "side_low", "around"), HandRole(OPEN, "side_low", "around"), "around",
                   hands_touch=True),
    ObjectCategory("grip_and_support", "one hand grips the side, the other supports from below",
                   ("mug", "bottle", "cylinder", "frustum", "mallet", "torus"),
                   HandRole(GRIP, "side_mid", "around"), HandRole(OPEN, "bottom", "random", contact="palm"), "any"),
]}
CATEGORY_NAMES = tuple(CATEGORIES)


# ------------------------------------------------------------------------------------------------ the object
def surface_samples(obj: ObjectMesh, num: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Area-weighted random surface points [num, 3] and their face normals [num, 3] (object frame)."""
    tri = obj.vertices[obj.faces]
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    area = np.linalg.norm(cross, axis=1)
    face = rng.choice(len(area), size=num, p=area / area.sum())
    u, v = rng.random(num), rng.random(num)
    flip = u + v > 1
    u, v = np.where(flip, 1 - u, u), np.where(flip, 1 - v, v)
    t = tri[face]
    pts = t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + v[:, None] * (t[:, 2] - t[:, 0])
    return pts, cross[face] / area[face, None]


def zone_mask(zone: str, pts: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """Surface samples of a named zone (object frame, +z the family's axis)."""
    z = pts[:, 2]
    lo, hi = z.min(), z.max()
    h = max(hi - lo, 1e-9)
    nz = normals[:, 2]
    side = np.abs(nz) < 0.45
    x = pts[:, 0]
    zones = {
        "side": side,
        "side_low": side & (z < lo + 0.55 * h),
        "side_mid": side & (z > lo + 0.2 * h) & (z < lo + 0.65 * h),
        "side_top": side & (z > lo + 0.7 * h),
        "end_low": side & (z < lo + 0.3 * h),
        "end_high": side & (z > lo + 0.7 * h),
        "bottom": nz < -0.5,
        "bottom_end_neg": (nz < -0.8) & (x < x.min() + 0.3 * np.ptp(x)),
        "bottom_end_pos": (nz < -0.8) & (x > x.max() - 0.3 * np.ptp(x)),
        "any": np.ones(len(z), dtype=bool),
    }
    if zone not in zones:
        raise ValueError(f"unknown object zone {zone!r}; expected one of {sorted(zones)}")
    mask = zones[zone]
    return mask if mask.any() else side if side.any() else zones["any"]


def pick_targets(category: ObjectCategory, pts: np.ndarray, normals: np.ndarray, n: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices [n] of hand A's and hand B's target samples."""
    ma, mb = zone_mask(category.a.zone, pts, normals), zone_mask(category.b.zone, pts, normals)
    ia = rng.choice(np.flatnonzero(ma), size=n)
    ib = np.empty(n, dtype=np.int64)
    for k in range(n):  # n is a chunk of grasps (a few); the zone search is a vector operation per grasp
        cos = normals @ normals[ia[k]]
        horiz = np.linalg.norm(pts[:, :2] - pts[ia[k], :2], axis=1)
        if category.relation == "opposite":
            ok = mb & (cos < -0.3)
        elif category.relation == "around":
            ok = mb & (cos > -0.5) & (cos < 0.3) & (np.abs(pts[:, 2] - pts[ia[k], 2]) < 0.03)
        else:  # "any": anywhere in the zone, 6 cm or more from A's target
            ok = mb & (np.linalg.norm(pts - pts[ia[k]], axis=1) > 0.06)
        if not ok.any():
            ok = mb & (horiz > 0.5 * horiz[mb].max())
        ib[k] = rng.choice(np.flatnonzero(ok if ok.any() else mb))
    return ia, ib


# ------------------------------------------------------------------------------------------------ grasps
@dataclasses.dataclass
class GraspResult:
    hand_a: HandBatch  # world frame
    hand_b: HandBatch
    object_pose: np.ndarray  # [n, 7] (0, axis-angle, translation) world frame
    min_sdf: np.ndarray  # [n, 2] smallest signed distance of each hand's vertices to the object (metres)
    hand_hand_overlap: np.ndarray  # [n] deepest sphere-proxy overlap between the hands (metres, 0 = none)
    hand_hand_depth: np.ndarray = None  # [n] hand-hand penetration depth (metres, geometry.penetration_depth "fast"; 0 where another check fails)
    # Other world orientations of the same grasps (hand A's support direction up, then hand B's): a list of
    # (hand_a, hand_b, object_pose) that a caller may pick from per grasp, see :func:`select_orientation`.
    alternatives: list = dataclasses.field(default_factory=list)


def add_contact_terms(loss: torch.Tensor, sdf: torch.Tensor, mask: torch.Tensor, fraction: float) -> torch.Tensor:
    """``loss`` [n] plus the grasp optimiser's hand-object terms (millimetres) of points with signed distances
    ``sdf`` [n, K] (differentiable): the closest ``fraction`` of the contact points (``mask`` [n, K] bool) pulled to
    :data:`CONTACT_MM` outside the surface, the hand's closest point held within 0.4 mm of that, every point pushed
    out to :data:`PEN_MARGIN_MM` (quadratic). Also used by the object sampler's grasp settling."""
    cnt = mask.sum(1).clamp_min(1)
    kk = torch.clamp((cnt * fraction).ceil(), min=1)
    key = sdf.detach().abs().masked_fill(~mask, float("inf"))
    rank = key.argsort(1).argsort(1)
    sel = (rank < kk[:, None]) & mask
    loss = loss + (sel * (sdf - CONTACT_MM).square()).sum(1) / kk
    loss = loss + 50.0 * torch.relu(sdf.amin(1) - 0.4 - CONTACT_MM).square()
    return loss + 30.0 * torch.relu(PEN_MARGIN_MM - sdf).square().sum(1)


def _role_logits(role: HandRole, n: int, gen: torch.Generator) -> torch.Tensor:
    choice = torch.randint(0, len(role.families), (n,), generator=gen)
    stack = torch.stack([sample_pose_logits(POSE_FAMILIES[f], n, gen, torch.float64) for f in role.families])
    return stack[choice, torch.arange(n)]


def _spin_direction(rule: str, normal: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """[n, 3] tangent direction (object frame) for the hand's forward axis at a target with outward ``normal``."""
    n = normal.shape[0]
    axis = torch.tensor([0.0, 0.0, 1.0], dtype=normal.dtype).expand(n, 3)
    sign = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0).to(normal.dtype)[:, None]
    noise = torch.randn(n, generator=gen, dtype=normal.dtype) * math.radians(12)
    if rule == "around":
        d = torch.cross(axis, normal, dim=-1)
    elif rule == "along":
        d = axis - (axis * normal).sum(-1, keepdim=True) * normal
        d = torch.where(d.norm(dim=-1, keepdim=True) > 1e-3, d, torch.tensor([1.0, 0.0, 0.0], dtype=normal.dtype))
    else:  # a random direction: no extra noise needed
        d = torch.randn(n, 3, generator=gen, dtype=normal.dtype)
        noise = torch.zeros_like(noise)
    d = d - (d * normal).sum(-1, keepdim=True) * normal
    bad = d.norm(dim=-1, keepdim=True) < 1e-6
    fallback = torch.cross(normal, torch.tensor([1.0, 0.0, 0.0], dtype=normal.dtype).expand(n, 3), dim=-1)
    d = F.normalize(torch.where(bad, fallback, d), dim=-1) * sign
    return rotate_about(d, normal, noise)


def _carry(T: torch.Tensor, rest: torch.Tensor) -> torch.Tensor:
    return (T[..., :3] * rest[..., None, :]).sum(-1) + T[..., 3]


class _Hand:
    """One hand's constants and pose during the optimisation."""

    def __init__(self, kin: HandKinematics, role: HandRole, n: int, gen: torch.Generator):
        self.kin, self.role = kin, role
        self.logits = _role_logits(role, n, gen).to(kin.dtype)
        self.betas = torch.randn((n, kin.num_betas), generator=gen, dtype=torch.float64).to(kin.dtype)
        self.posed = kin.pose_full(self.betas, kin.logits_to_full_pose(self.logits))
        self.anchor = AnchorFrame(region_centroid(kin, self.posed, role.anchor), hand_vector(kin, self.posed, "palmar"),
                                  hand_vector(kin, self.posed, "forward"))
        self.rest = self.posed.rest_joints
        self.rest_c = torch.einsum("sj,bjc->bsc", kin.proxy.coeff, self.rest)
        self.radii = kin.proxy.radii(self.rest, kin.proxy.centres(self.rest, self.posed.transforms),
                                     self.posed.vertices)
        self.basis = synergy_basis(kin.dtype, kin.device)

    def choose_near(self, sdf: torch.Tensor, size: int = NEAR_SIZE) -> None:
        """Keep the ``size`` subset vertices nearest the object (signed distances [n, K] of the whole subset),
        contact-region vertices counted 25 mm nearer."""
        region = self.kin.region_mask_sub[self.role.contact]
        score = sdf - 0.025 * region.to(sdf.dtype)
        index = score.topk(min(size, score.shape[1]), dim=1, largest=False).indices
        self.prep = self.kin.prepare_points(self.betas, self.kin.logits_to_full_pose(self.logits), index)
        self.contact_mask = region[index]

    def points(self, syn: torch.Tensor, R: torch.Tensor, t: torch.Tensor):
        """Subset vertices [n, K, 3] and proxy centres [n, S, 3] in the object frame for synergies ``syn``."""
        z = self.logits + torch.einsum("bk,kjc->bjc", syn, self.basis)
        v, _, T = self.kin.pose_points(self.prep, self.rest, self.kin.logits_to_full_pose(z))
        c = _carry(T[:, self.kin.proxy.joint], self.rest_c)
        return v @ R.transpose(1, 2) + t[:, None], c @ R.transpose(1, 2) + t[:, None], z


def generate_object_grasps(category: ObjectCategory, obj: ObjectMesh, kin_a: HandKinematics, kin_b: HandKinematics,
                           n: int, seed: int, steps: int = STEPS) -> GraspResult:
    """``n`` grasps of ``obj`` in ``category`` with hand A = ``kin_a`` and B = ``kin_b`` (see the module docstring).
    Deterministic for ``seed`` (CPU generators; the computation runs on the kinematics' device)."""
    gen = torch.Generator().manual_seed(int(seed))
    rng = np.random.Generator(np.random.PCG64(int(seed)))
    device, dtype = kin_a.device, kin_a.dtype
    pts, nrm = surface_samples(obj, SURFACE_SAMPLES, rng)
    ia, ib = pick_targets(category, pts, nrm, n, rng)
    verts = torch.as_tensor(obj.vertices, dtype=torch.float64, device=device)
    faces = torch.as_tensor(obj.faces, device=device)
    sdf_of = ObjectSDF(verts, faces)  # built once: every query of this chunk is on the same object
    basis = synergy_basis(dtype, device)
    hands, placements = [], []
    with torch.no_grad():
        for kin, role, idx in ((kin_a, category.a, ia), (kin_b, category.b, ib)):
            h = _Hand(kin, role, n, gen)
            s = torch.as_tensor(pts[idx], dtype=dtype)
            m = torch.as_tensor(nrm[idx], dtype=dtype)
            tangent = _spin_direction(role.spin, m.double(), gen).to(dtype)
            target = AnchorFrame(s + 0.05 * m, -m, tangent)
            R, t = align(h.anchor, target)
            R, t, m = R.to(device), t.to(device), m.to(device)
            # Move in along -m by the clearance of the nearest vertex (1-Lipschitz: never penetrates; exact within
            # FAR, a lower bound farther out, so a far hand takes a few shorter steps).
            for _ in range(5):  # on the coarse vertex subset
                v = h.posed.vertices[:, kin.coarse] @ R.transpose(1, 2) + t[:, None]
                step = sdf_of.clearance(v, FAR).to(dtype) - 0.003  # negative (penetrating): backs out along +m
                if bool((step.abs() < 1e-3).all()):
                    break
                t = t - step.clamp(min=-0.05, max=0.05)[:, None] * m
            v = h.posed.vertices[:, kin.subset] @ R.transpose(1, 2) + t[:, None]
            h.choose_near(sdf_of(v, far=FAR)[0].to(dtype))
            hands.append(h)
            placements.append((R, t))
    # --------------------------------------------------------------------------- optimisation
    k = basis.shape[0]
    zeros = lambda c: torch.zeros(n, c, dtype=dtype, device=device)  # noqa: E731
    params = [zeros(3), zeros(3), zeros(k), zeros(3), zeros(3), zeros(k)]
    opt = BatchedAdam(params, [0.6, 0.012, 0.05] * 2, steps)
    pivots = [(R @ h.anchor.origin.to(device)[..., None]).squeeze(-1) + t for h, (R, t) in zip(hands, placements)]
    cache = [None, None]

    def state(p):
        outs = []
        for j, (h, (R, t)) in enumerate(zip(hands, placements)):
            tau, omega, syn = p[3 * j:3 * j + 3]
            Rd = axis_angle_to_matrix(omega)
            R2 = Rd @ R
            t2 = (Rd @ (t - pivots[j])[..., None]).squeeze(-1) + pivots[j] + tau / MM
            v, c, z = h.points(syn, R2, t2)
            outs.append((v, c, z, R2, t2))
        return outs

    for step in range(steps):
        for p in opt.params:
            p.requires_grad_(True)
        outs = state(opt.params)
        loss = torch.zeros(n, dtype=dtype, device=device)
        for j, (h, (v, c, _, _, _)) in enumerate(zip(hands, outs)):
            if step % REFRESH == 0 or cache[j] is None:
                _, q, d = sdf_of(v.detach(), far=FAR)
                cache[j] = (q.to(dtype), d.to(dtype))
            sdf = differentiable_sdf(v, *cache[j]) * MM  # [n, K] mm
            loss = add_contact_terms(loss, sdf, h.contact_mask, h.role.fraction)
        ca, cb = outs[0][1] * MM, outs[1][1] * MM
        overlap = sphere_overlap_energy(ca, hands[0].radii * MM, cb, hands[1].radii * MM)
        loss = loss + 30.0 * overlap
        if category.hands_touch:
            va, vb = outs[0][0] * MM, outs[1][0] * MM
            gap = torch.cdist(va, vb).amin((1, 2))
            loss = loss + 20.0 * torch.relu(gap - 0.4).square()
        for j in range(2):
            tau, omega, syn = opt.params[3 * j:3 * j + 3]
            loss = loss + 1e-3 * tau.square().sum(1) + 50.0 * omega.square().sum(1) + 2.0 * syn.square().sum(1)
        grads = torch.autograd.grad(loss.sum(), opt.params)
        for p in opt.params:
            p.requires_grad_(False)
        with torch.no_grad():
            opt.step(list(grads))
    # --------------------------------------------------------------------------- final meshes, world frame
    with torch.no_grad():
        outs = state(opt.params)
        results, min_sdf, push, full = [], [], [], []
        for h, (_, c, z, R2, t2) in zip(hands, outs):
            pose = h.kin.logits_to_full_pose(z)
            posed = h.kin.pose_full(h.betas, pose)
            v = posed.vertices @ R2.transpose(1, 2) + t2[:, None]
            sdf, _, d = _full_check(v, verts, sdf_of)
            # Push-out: the full mesh can sink between the optimised subset vertices; move the hand out along
            # the deepest vertex's gradient by its depth (once), then measure again.
            deep = sdf.amin(1)
            if bool((deep < 0).any()):
                arg = sdf.argmin(1)
                shift = (-deep).clamp_min(0)[:, None] * d[torch.arange(n), arg]
                t2 = t2 + shift.to(dtype)
                v = posed.vertices @ R2.transpose(1, 2) + t2[:, None]
                sdf, _, d = _full_check(v, verts, sdf_of)
            min_sdf.append(sdf.amin(1))
            full.append(v)
            near = (sdf < CONTACT_DISTANCE).to(d.dtype)[..., None]
            # the hand pushes the object along -gradient at its contact vertices
            push.append(F.normalize(-(d * near).sum(1), dim=-1) * (near.sum(1) > 0))
            results.append((h, pose, R2, t2, posed))
        z_axis = torch.tensor([0.0, 0.0, 1.0], dtype=push[0].dtype, device=push[0].device)
        spin = torch.rand(n, generator=gen, dtype=torch.float64).to(push[0]) * 2 * math.pi
        g = (torch.randn((n, 3), generator=gen, dtype=torch.float64) * 0.03).to(push[0])
        f = lambda x: x.detach().cpu().double().numpy()  # noqa: E731
        orientations = []
        for up in (push[0] + push[1], push[0], push[1]):
            weak = up.norm(dim=-1) < 0.3  # antipodal squeezes (or no contact): keep the object's own +z up
            up = torch.where(weak[:, None], z_axis, F.normalize(up, dim=-1))
            G = _rotation_to_z(up, spin)
            Gd = G.to(dtype)
            batches = [_hand_params(h.kin, h.betas, pose, Gd @ R2, (Gd @ t2[..., None]).squeeze(-1) + g.to(dtype),
                                    posed.rest_joints[:, 0]) for h, pose, R2, t2, posed in results]
            object_pose = torch.cat([torch.zeros(n, 1, dtype=torch.float64, device=up.device),
                                     matrix_to_axis_angle(G), g], dim=1)
            orientations.append((batches[0], batches[1], f(object_pose)))
        ca, cb = outs[0][1], outs[1][1]
        hh = torch.relu(-sphere_clearance(ca, hands[0].radii, cb, hands[1].radii)).amax((1, 2))
        # the proxies miss shallow overlaps: the hand-hand depth (every reported depth exact, see geometry), only
        # of the grasps that pass the other checks (the rest are rejected anyway; their depth is reported as 0)
        sdf_min = torch.stack(min_sdf, 1)
        rest_ok = (sdf_min < CONTACT_DISTANCE).all(1) & (sdf_min >= -MAX_DEPTH).all(1) & (hh <= 0)
        depth = _hand_hand_depth(full[0], kin_a.data.faces, full[1], kin_b.data.faces, rest_ok)
    (hand_a, hand_b, object_pose), rest = orientations[0], orientations[1:]
    return GraspResult(hand_a, hand_b, object_pose, f(sdf_min), f(hh), f(depth), rest)


def select_orientation(res: GraspResult, choice: np.ndarray) -> GraspResult:
    """The grasps of ``res`` with orientation ``choice[i]`` (0: the main one, k: ``res.alternatives[k - 1]``)."""
    options = [(res.hand_a, res.hand_b, res.object_pose)] + list(res.alternatives)
    rows = np.arange(len(choice))

    def pick(get):
        return np.stack([get(o) for o in options])[choice, rows]

    hands = [HandBatch(**{f.name: pick(lambda o, j=j, name=f.name: getattr(o[j], name))
                          for f in dataclasses.fields(HandBatch)}) for j in (0, 1)]
    return GraspResult(hands[0], hands[1], pick(lambda o: o[2]), res.min_sdf, res.hand_hand_overlap,
                       res.hand_hand_depth)


def _hand_hand_depth(va: torch.Tensor, faces_a, vb: torch.Tensor, faces_b, rows: torch.Tensor) -> torch.Tensor:
    """[n] hand-hand penetration depth (``penetration_depth`` "fast") of the ``rows`` [n] (bool) whose hands'
    bounding boxes overlap; hands with disjoint boxes cannot penetrate (depth exactly 0), other rows get 0."""
    overlap = rows & ((va.amin(1) <= vb.amax(1)) & (vb.amin(1) <= va.amax(1))).all(-1)
    depth = torch.zeros(va.shape[0], dtype=va.dtype, device=va.device)
    if bool(overlap.any()):
        depth[overlap] = penetration_depth(va[overlap], faces_a, vb[overlap], faces_b, method="fast")
    return depth


def _full_check(v: torch.Tensor, verts: torch.Tensor, sdf_of: ObjectSDF):
    """Exact signed distances [n, V] of all hand vertices [n, V, 3], computed for the vertices inside the object's
    bounding box grown by the contact distance; the others are outside and farther than it (+inf here)."""
    lo = verts.amin(0).to(v.dtype) - CONTACT_DISTANCE
    hi = verts.amax(0).to(v.dtype) + CONTACT_DISTANCE
    near = ((v >= lo) & (v <= hi)).all(-1)
    sdf = torch.full(v.shape[:2], math.inf, dtype=torch.float64, device=v.device)
    direction = torch.zeros(v.shape, dtype=torch.float64, device=v.device)
    if bool(near.any()):
        d, _, g = sdf_of(v[near][None])
        sdf[near], direction[near] = d[0], g[0]
    return sdf, None, direction


def _rotation_to_z(up: torch.Tensor, spin: torch.Tensor) -> torch.Tensor:
    """[n, 3, 3] rotations taking unit ``up`` [n, 3] to +z, followed by a turn by ``spin`` [n] about z."""
    z = torch.tensor([0.0, 0.0, 1.0], dtype=up.dtype, device=up.device).expand_as(up)
    axis = torch.cross(up, z, dim=-1)
    s = axis.norm(dim=-1, keepdim=True)
    c = (up * z).sum(-1, keepdim=True)
    angle = torch.atan2(s, c)
    fallback = torch.tensor([1.0, 0.0, 0.0], dtype=up.dtype, device=up.device).expand_as(up)
    axis = torch.where(s > 1e-9, axis / s.clamp_min(1e-12), fallback)
    R = axis_angle_to_matrix(axis * angle)
    return axis_angle_to_matrix(z * spin[:, None]) @ R
