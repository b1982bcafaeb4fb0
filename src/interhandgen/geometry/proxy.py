"""Inscribed-sphere proxies of a hand: a cheap, inside-aware collision model for placement and optimisation.

Vertex-to-vertex distances cannot tell touching surfaces from interpenetrating ones, and the nearest-vertex
normal test fails for deep overlaps. A union of spheres that lie INSIDE the mesh can: two hands whose spheres
overlap certainly interpenetrate, and the overlap depth is exact for the proxy. The proxy is built from the
model alone: sphere centres are fixed linear combinations of the (shaped) rest joints along every bone and
across the palm, each carried rigidly by one joint; radii are the distance from the rest centre to the
nearest point of the template surface (the largest sphere around that centre that stays inside), minus a
small margin.

Shapes: B batch, S spheres, J = 16 joints. Metres.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from interhandgen.geometry.queries import point_to_surface_distance, points_inside
from interhandgen.hand.joints import FINGER_JOINTS, FINGER_NAMES, MCP_JOINTS
from interhandgen.hand.model_data import HandModelData
from interhandgen.exceptions import InputError

#: Radii are shrunk by this (metres) so that the spheres stay strictly inside the surface.
RADIUS_MARGIN = 0.0005


@dataclasses.dataclass
class SphereProxy:
    """``coeff`` [S, 16]: rest centre = coeff @ rest_joints; ``joint`` [S]: the joint whose rigid transform
    carries the sphere; ``radius`` [S] at the template shape (metres); ``template_scale``: the template's
    wrist-to-middle-MCP length, against which a shaped hand's radii are scaled."""

    coeff: torch.Tensor
    joint: torch.Tensor
    radius: torch.Tensor
    template_scale: float

    def centres(self, rest_joints: torch.Tensor, transforms: torch.Tensor) -> torch.Tensor:
        """[B, S, 3] posed centres from shaped rest joints [B, 16, 3] and joint transforms [B, 16, 3, 4]."""
        rest = torch.einsum("sj,bjc->bsc", self.coeff, rest_joints)
        T = transforms[:, self.joint]
        return (T[..., :3] * rest[..., None, :]).sum(-1) + T[..., 3]

    def radii(self, rest_joints: torch.Tensor, centres: torch.Tensor | None = None,
              vertices: torch.Tensor | None = None) -> torch.Tensor:
        """[B, S] radii scaled with the hand's size (wrist-to-middle-MCP length).

        With posed ``centres`` [B, S, 3] and posed ``vertices`` [B, V, 3], each radius is also capped by the
        distance to the nearest posed vertex (minus the margin): posing compresses the surface at flexed
        joints, where a sphere carried rigidly by one joint would otherwise poke out.
        """
        scale = (rest_joints[:, 4] - rest_joints[:, 0]).norm(dim=-1, keepdim=True) / self.template_scale
        radius = self.radius * scale
        if centres is not None and vertices is not None:
            c = centres.mean(1, keepdim=True)
            d2 = torch.baddbmm(((vertices - c) ** 2).sum(-1)[:, None, :], centres - c, (vertices - c).transpose(1, 2),
                               alpha=-2.0).add_(((centres - c) ** 2).sum(-1)[:, :, None])
            nearest = d2.amin(dim=2).clamp_min(0).sqrt() - RADIUS_MARGIN
            radius = torch.minimum(radius, nearest.clamp_min(0.0))
        return radius


def build_sphere_proxy(data: HandModelData, device="cpu", dtype=torch.float32) -> SphereProxy:
    """Build the sphere proxy of a hand model (see the module docstring)."""
    V = data.v_template
    J = data.J_regressor @ V
    tips = V[data.fingertip_ids]
    coeffs, joints = [], []

    def add(c: np.ndarray, joint: int) -> None:
        coeffs.append(c)
        joints.append(joint)

    eye = np.eye(16)
    # Palm: points on the lines from the wrist to each MCP joint and to the thumb CMC, carried by the root.
    for m in MCP_JOINTS + (13,):
        for t in (0.15, 0.4, 0.65, 0.9):
            add((1 - t) * eye[0] + t * eye[m], 0)
    # Palm: between neighbouring knuckle lines, to fill the slab.
    for m1, m2 in ((1, 4), (4, 10), (10, 7)):
        for t in (0.35, 0.7):
            add((1 - t) * eye[0] + t * 0.5 * (eye[m1] + eye[m2]), 0)
    for f_idx, name in enumerate(FINGER_NAMES):
        chain = FINGER_JOINTS[name]
        for pos, j in enumerate(chain):
            if pos < 2:
                nxt = eye[chain[pos + 1]]
                ts = (0.0, 0.33, 0.67)
                for t in ts:
                    add((1 - t) * eye[j] + t * nxt, j)
            else:
                # Distal bone: extrapolate along the middle phalanx direction, scaled to reach the fingertip.
                prev = chain[pos - 1]
                k = np.linalg.norm(tips[f_idx] - J[j]) / max(np.linalg.norm(J[j] - J[prev]), 1e-9)
                for t in (0.0, 0.3, 0.55, 0.75):
                    add((1 + t * k) * eye[j] - t * k * eye[prev], j)
    coeff = np.stack(coeffs)
    centres = coeff @ J
    pts, verts = torch.as_tensor(centres[None]), torch.as_tensor(V[None])
    inside = points_inside(pts, verts, data.faces)[0].numpy()
    radius = point_to_surface_distance(pts, verts, data.faces)[0].numpy() - RADIUS_MARGIN
    keep = inside & (radius > 0.002)
    if keep.sum() < 20:
        raise InputError(f"only {int(keep.sum())} proxy spheres lie inside the hand mesh; are its joints inside it?")
    t = lambda a, dt=dtype: torch.as_tensor(np.ascontiguousarray(a), dtype=dt, device=device)  # noqa: E731
    return SphereProxy(t(coeff[keep]), t(np.asarray(joints)[keep], torch.long), t(radius[keep]),
                       float(np.linalg.norm(J[4] - J[0])))


def sphere_clearance(ca: torch.Tensor, ra: torch.Tensor, cb: torch.Tensor, rb: torch.Tensor) -> torch.Tensor:
    """[B, Sa, Sb] gap between every pair of spheres (negative: overlap), centres [B, S, 3], radii [B, S]."""
    d = torch.cdist(ca, cb)
    return d - ra[:, :, None] - rb[:, None, :]


def sphere_overlap_energy(ca: torch.Tensor, ra: torch.Tensor, cb: torch.Tensor, rb: torch.Tensor) -> torch.Tensor:
    """[B] sum over every pair of spheres of relu(r_a + r_b - |c_a - c_b|)^2 (m^2); shapes as :func:`sphere_clearance`."""
    return torch.relu(-sphere_clearance(ca, ra, cb, rb)).square().sum(dim=(1, 2))


def _min_clearance(ca: torch.Tensor, ra: torch.Tensor, cb: torch.Tensor, rb: torch.Tensor) -> torch.Tensor:
    """[...] smallest sphere gap for centres [..., Sa, 3], [..., Sb, 3] and radii [..., Sa], [..., Sb]."""
    return (torch.cdist(ca, cb) - ra[..., :, None] - rb[..., None, :]).amin(dim=(-2, -1))


def slide_to_clearance(ca: torch.Tensor, ra: torch.Tensor, cb: torch.Tensor, rb: torch.Tensor, direction: torch.Tensor,
                       target: torch.Tensor, step: float = 0.005, max_steps: int = 80, chunk: int = 8,
                       refine: int = 7) -> torch.Tensor:
    """[B] shift s along unit ``direction`` [B, 3] at which hand B's spheres (moved by s * direction) first
    come within ``target`` [B] metres of hand A's, when B approaches from where it is clear of A.

    B starts where its spheres' projections on the direction are entirely beyond A's (so it is clear), and
    marches in by ``step`` (thinner than any finger's spheres, so it cannot pass through one); the first
    crossing is refined by bisection. A sample that never gets that close stops at its closest shift.
    """
    B = ca.shape[0]
    pa = (ca * direction[:, None]).sum(-1)
    pb = (cb * direction[:, None]).sum(-1)
    start = (pa + ra).amax(1) - (pb - rb).amin(1) + target + step  # B entirely beyond A along the direction
    gaps, shifts = [], []
    hit = torch.zeros(B, dtype=torch.bool, device=ca.device)
    for k0 in range(0, max_steps, chunk):
        k = torch.arange(k0, min(k0 + chunk, max_steps), dtype=ca.dtype, device=ca.device)
        s = start[:, None] - k[None] * step  # [B, n]
        moved = cb[:, None] + s[..., None, None] * direction[:, None, None, :]
        n = k.shape[0]
        g = _min_clearance(ca[:, None].expand(-1, n, -1, -1), ra[:, None].expand(-1, n, -1), moved,
                           rb[:, None].expand(-1, n, -1))
        gaps.append(g)
        shifts.append(s)
        hit |= (g < target[:, None]).any(dim=1)
        if bool(hit.all()):
            break
    gap, shift = torch.cat(gaps, dim=1), torch.cat(shifts, dim=1)
    close = gap < target[:, None]
    first = torch.where(hit, close.to(torch.int64).argmax(dim=1), gap.argmin(dim=1))
    rows = torch.arange(B, device=ca.device)
    lo = shift[rows, first]  # too close (or the closest approach)
    hi = torch.where(hit & (first > 0), shift[rows, (first - 1).clamp_min(0)], lo)  # still clear
    for _ in range(refine):
        mid = 0.5 * (lo + hi)
        is_close = _min_clearance(ca, ra, cb + mid[:, None, None] * direction[:, None, :], rb) < target
        lo = torch.where(is_close, mid, lo)
        hi = torch.where(is_close, hi, mid)
    return hi


def sphere_penetration(points_a: torch.Tensor, centres_a: torch.Tensor, radii_a: torch.Tensor,
                       points_b: torch.Tensor, centres_b: torch.Tensor, radii_b: torch.Tensor) -> torch.Tensor:
    """[B] volumetric interpenetration penalty of two hands given by their inscribed-sphere proxies and surface
    samples (metres in, m^2 out), differentiable and exactly 0 when no sphere of one hand overlaps a sphere or a
    surface sample of the other:

        sum_{s, t} relu(r_s + r_t - |c_s - c_t|)^2                      (sphere against sphere)
      + sum_{p in A} max_t relu(r_t - |p - c_t|)^2  + the same for B's samples in A's spheres

    The first sum sees deep overlaps (a finger through a palm), where nearest-point tests fail; the second, how
    deep each surface sample lies inside the other hand's spheres. Shapes: points [B, N, 3], centres [B, S, 3],
    radii [B, S].
    """
    depth_a = torch.relu(radii_b[:, None, :] - torch.cdist(points_a, centres_b)).amax(dim=2)
    depth_b = torch.relu(radii_a[:, None, :] - torch.cdist(points_b, centres_a)).amax(dim=2)
    return (sphere_overlap_energy(centres_a, radii_a, centres_b, radii_b) + (depth_a ** 2).sum(1)
            + (depth_b ** 2).sum(1))
