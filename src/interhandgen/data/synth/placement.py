"""Batched rigid-placement helpers: anchor frames on posed hands and the transform that aligns two of them.

An *anchor frame* is (origin [B, 3], normal [B, 3], tangent [B, 3]) on a posed hand, in that hand's own frame.
Placing hand B against hand A means finding the rigid map (R, t) of B's frame into A's frame that takes B's
anchor frame onto a target frame built from A's anchor (typically: same origin, opposite normal, tangent
rotated by some angle about the normal).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from interhandgen.data.synth.kinematics import HandKinematics, PosedHand
from interhandgen.geometry.points import min_squared_distance
from interhandgen.exceptions import InputError


@dataclasses.dataclass
class AnchorFrame:
    origin: torch.Tensor
    normal: torch.Tensor
    tangent: torch.Tensor


def region_centroid(kin: HandKinematics, posed: PosedHand, region: str) -> torch.Tensor:
    """[B, 3] mean posed position of a contact region's vertices."""
    mask = kin.region_mask[region]
    return posed.vertices[:, mask].mean(1)


def joint_direction(kin: HandKinematics, posed: PosedHand, joint: int, rest_vector: torch.Tensor) -> torch.Tensor:
    """[B, 3] a rest-frame direction carried by joint ``joint``'s global rotation."""
    return (posed.rotations[:, joint] @ rest_vector.to(posed.rotations.dtype)[:, None]).squeeze(-1)


def region_normal(kin: HandKinematics, posed: PosedHand, region: str) -> torch.Tensor:
    """[B, 3] the region's mean rest normal carried by the joint that dominates the region."""
    a = kin.anatomy
    n = torch.as_tensor(a.region_normals[region], dtype=kin.dtype, device=kin.device)
    return F.normalize(joint_direction(kin, posed, a.region_joints[region], n), dim=-1)


def bone_direction(kin: HandKinematics, posed: PosedHand, joint: int) -> torch.Tensor:
    d = torch.as_tensor(kin.anatomy.bone_dirs[joint], dtype=kin.dtype, device=kin.device)
    return F.normalize(joint_direction(kin, posed, joint, d), dim=-1)


def hand_vector(kin: HandKinematics, posed: PosedHand, name: str, joint: int = 0) -> torch.Tensor:
    """[B, 3] a named hand-frame axis ("forward", "radial", "palmar", "ulnar", "dorsal") carried by ``joint``."""
    return joint_direction(kin, posed, joint, kin.anatomy_vector(name))


def rotate_about(v: torch.Tensor, axis: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rodrigues rotation of v [B, 3] about unit axis [B, 3] by angle [B] (radians)."""
    c, s = torch.cos(angle)[:, None], torch.sin(angle)[:, None]
    return v * c + torch.cross(axis, v, dim=-1) * s + axis * (axis * v).sum(-1, keepdim=True) * (1 - c)


def orthonormal_frame(normal: torch.Tensor, tangent: torch.Tensor) -> torch.Tensor:
    """[B, 3, 3] with columns (tangent', normal, tangent' x normal), tangent' orthogonalised against normal."""
    n = F.normalize(normal, dim=-1)
    t = tangent - (tangent * n).sum(-1, keepdim=True) * n
    t_norm = t.norm(dim=-1, keepdim=True)
    if bool((t_norm < 1e-6).any()):
        raise InputError("anchor tangent is parallel to its normal; choose another tangent direction")
    t = t / t_norm
    return torch.stack([t, n, torch.cross(t, n, dim=-1)], dim=-1)


def align(src: AnchorFrame, dst: AnchorFrame) -> tuple[torch.Tensor, torch.Tensor]:
    """Rigid (R [B, 3, 3], t [B, 3]) with R @ src frame = dst frame and R @ src.origin + t = dst.origin."""
    fs = orthonormal_frame(src.normal, src.tangent)
    fd = orthonormal_frame(dst.normal, dst.tangent)
    R = fd @ fs.transpose(1, 2)
    t = dst.origin - (R @ src.origin[..., None]).squeeze(-1)
    return R, t


def facing_target(anchor: AnchorFrame, angle: torch.Tensor, gap: torch.Tensor | float = 0.0,
                  flip_tangent: bool = False, offset: torch.Tensor | None = None) -> AnchorFrame:
    """Target frame facing ``anchor``: origin moved ``gap`` metres along its normal (plus ``offset`` [B, 3]),
    normal reversed, tangent (optionally reversed) rotated by ``angle`` [B] about the anchor normal."""
    n = F.normalize(anchor.normal, dim=-1)
    tangent = -anchor.tangent if flip_tangent else anchor.tangent
    origin = anchor.origin + n * (gap if isinstance(gap, float) else gap[:, None])
    if offset is not None:
        origin = origin + offset
    return AnchorFrame(origin, -n, rotate_about(tangent, n, angle))


def transform_points(R: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Apply (R [B, 3, 3], t [B, 3]) to points [B, N, 3]."""
    return x @ R.transpose(1, 2) + t[:, None]


def subset_min_distance(points_a: torch.Tensor, points_b: torch.Tensor) -> torch.Tensor:
    """[B] smallest distance between two point sets [B, N, 3] and [B, M, 3] (centred for cdist accuracy)."""
    return min_squared_distance(points_a, points_b).clamp_min(0).sqrt()


def slide_to_distance(points_a: torch.Tensor, points_b: torch.Tensor, direction: torch.Tensor, target: torch.Tensor,
                      lo: float = -0.06, hi: float = 0.06, iters: int = 12) -> torch.Tensor:
    """[B] shift s along unit ``direction`` [B, 3] at which B (moved by s * direction) is ``target`` [B] metres
    from A, found by batched bisection on [lo, hi] (grown at hi until every sample is far enough).

    The minimum distance between the point sets is not monotonic in s in general; the bisection keeps the
    invariant dist(lo) < target <= dist(hi) and returns hi, a shift at which B just clears the target distance.
    """
    def dist(shift: torch.Tensor) -> torch.Tensor:
        return subset_min_distance(points_a, points_b + (shift[:, None] * direction)[:, None])

    B = points_a.shape[0]
    lo_t = torch.full((B,), lo, dtype=points_a.dtype, device=points_a.device)
    hi_t = torch.full((B,), hi, dtype=points_a.dtype, device=points_a.device)
    for _ in range(6):
        far = dist(hi_t) >= target
        if bool(far.all()):
            break
        hi_t = torch.where(far, hi_t, hi_t * 2)
    # Samples that are still apart at lo simply move to lo's side of the bracket: start there.
    for _ in range(iters):
        mid = 0.5 * (lo_t + hi_t)
        close = dist(mid) < target
        lo_t = torch.where(close, mid, lo_t)
        hi_t = torch.where(close, hi_t, mid)
    return hi_t
