"""Batched rotation conversions (torch), differentiable.

Conventions:
- axis-angle: [..., 3], the rotation vector (unit axis times angle in radians).
- matrix: [..., 3, 3], acting on column vectors (x' = R x).
- 6D: [..., 6], the first two COLUMNS of the matrix, concatenated column by column
  (Zhou et al., CVPR 2019): ``r6 = [R[:, 0], R[:, 1]]``.
- quaternion: [..., 4], scalar LAST (x, y, z, w), as in scipy.spatial.transform.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from interhandgen.exceptions import InputError

__all__ = [
    "axis_angle_to_matrix",
    "matrix_to_axis_angle",
    "matrix_to_rot6d",
    "rot6d_to_matrix",
    "quaternion_to_matrix",
    "matrix_to_quaternion",
    "axis_angle_to_quaternion",
    "quaternion_to_axis_angle",
]


def _check_last(x: torch.Tensor, shape: tuple[int, ...], name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if tuple(x.shape[x.dim() - len(shape):]) != shape or x.dim() < len(shape):
        raise InputError(f"{name} must have shape [..., {', '.join(map(str, shape))}], got {list(x.shape)}")


def axis_angle_to_matrix(axis_angle: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula. [..., 3] -> [..., 3, 3]. Exact at zero (Taylor terms for small angles)."""
    _check_last(axis_angle, (3,), "axis_angle")
    theta2 = (axis_angle * axis_angle).sum(-1, keepdim=True)
    theta = torch.sqrt(theta2.clamp_min(torch.finfo(axis_angle.dtype).tiny))
    small = theta2 < 1e-8
    # sin(t)/t and (1-cos(t))/t^2 with series expansions near zero keep gradients finite.
    sinc = torch.where(small, 1.0 - theta2 / 6.0, torch.sin(theta) / theta)
    cosc = torch.where(small, 0.5 - theta2 / 24.0, (1.0 - torch.cos(theta)) / theta2.clamp_min(1e-30))
    x, y, z = axis_angle.unbind(-1)
    zero = torch.zeros_like(x)
    K = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(axis_angle.shape[:-1] + (3, 3))
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device)
    return eye + sinc[..., None] * K + cosc[..., None] * (K @ K)


def matrix_to_quaternion(matrix: torch.Tensor) -> torch.Tensor:
    """[..., 3, 3] -> [..., 4] unit quaternion (x, y, z, w) with w >= 0."""
    _check_last(matrix, (3, 3), "matrix")
    m = matrix
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    # Four candidate solutions; pick the numerically best conditioned one per element.
    q_abs = torch.sqrt(
        torch.stack(
            [1.0 + m00 - m11 - m22, 1.0 - m00 + m11 - m22, 1.0 - m00 - m11 + m22, 1.0 + m00 + m11 + m22], -1
        ).clamp_min(0.0)
        + 1e-30
    )
    cand = torch.stack(
        [
            torch.stack([q_abs[..., 0] ** 2, m[..., 1, 0] + m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0], m[..., 2, 1] - m[..., 1, 2]], -1),
            torch.stack([m[..., 1, 0] + m[..., 0, 1], q_abs[..., 1] ** 2, m[..., 2, 1] + m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0]], -1),
            torch.stack([m[..., 0, 2] + m[..., 2, 0], m[..., 2, 1] + m[..., 1, 2], q_abs[..., 2] ** 2, m[..., 1, 0] - m[..., 0, 1]], -1),
            torch.stack([m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1], q_abs[..., 3] ** 2], -1),
        ],
        -2,
    ) / (2.0 * q_abs[..., None].clamp_min(0.1))
    best = q_abs.argmax(-1)
    q = torch.gather(cand, -2, best[..., None, None].expand(best.shape + (1, 4))).squeeze(-2)
    q = F.normalize(q, dim=-1)
    return torch.where(q[..., 3:4] < 0, -q, q)


def quaternion_to_matrix(quaternion: torch.Tensor) -> torch.Tensor:
    """[..., 4] (x, y, z, w), normalised internally -> [..., 3, 3]."""
    _check_last(quaternion, (4,), "quaternion")
    x, y, z, w = F.normalize(quaternion, dim=-1).unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
            2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
            2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
        ],
        -1,
    ).reshape(quaternion.shape[:-1] + (3, 3))


def axis_angle_to_quaternion(axis_angle: torch.Tensor) -> torch.Tensor:
    """[..., 3] -> [..., 4] (x, y, z, w)."""
    _check_last(axis_angle, (3,), "axis_angle")
    theta2 = (axis_angle * axis_angle).sum(-1, keepdim=True)
    theta = torch.sqrt(theta2.clamp_min(torch.finfo(axis_angle.dtype).tiny))
    small = theta2 < 1e-8
    half_sinc = torch.where(small, 0.5 - theta2 / 48.0, torch.sin(theta / 2) / theta)
    return torch.cat([axis_angle * half_sinc, torch.cos(theta / 2)], -1)


def quaternion_to_axis_angle(quaternion: torch.Tensor) -> torch.Tensor:
    """[..., 4] (x, y, z, w) -> [..., 3] with angle in [0, pi]."""
    _check_last(quaternion, (4,), "quaternion")
    q = F.normalize(quaternion, dim=-1)
    q = torch.where(q[..., 3:4] < 0, -q, q)
    xyz, w = q[..., :3], q[..., 3:4]
    s = xyz.norm(dim=-1, keepdim=True)
    angle = 2.0 * torch.atan2(s, w)
    small = s < 1e-6
    # angle / sin(angle/2) -> 2 + angle^2/12 as angle -> 0
    scale = torch.where(small, 2.0 + (2.0 * s) ** 2 / 12.0, angle / s.clamp_min(1e-30))
    return xyz * scale


def matrix_to_axis_angle(matrix: torch.Tensor) -> torch.Tensor:
    """[..., 3, 3] -> [..., 3], robust near 0 and pi (via quaternions)."""
    return quaternion_to_axis_angle(matrix_to_quaternion(matrix))


def matrix_to_rot6d(matrix: torch.Tensor) -> torch.Tensor:
    """[..., 3, 3] -> [..., 6]: first column then second column."""
    _check_last(matrix, (3, 3), "matrix")
    return torch.cat([matrix[..., :, 0], matrix[..., :, 1]], -1)


def rot6d_to_matrix(rot6d: torch.Tensor) -> torch.Tensor:
    """[..., 6] -> [..., 3, 3] by Gram-Schmidt on the two columns (any 6-vector with independent halves)."""
    _check_last(rot6d, (6,), "rot6d")
    a1, a2 = rot6d[..., :3], rot6d[..., 3:]
    b1 = F.normalize(a1, dim=-1)
    b2 = F.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-1)
