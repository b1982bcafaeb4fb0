"""Synthetic fitting problems from known pairs: cameras around the hands, exact projections, corruption, and
occlusion by the other hand found by exact ray casting (for the benchmark and the tests).

Shapes: B frames, hands [left, right], 21 joints (MANO21), V vertices, F faces. Metres and pixels.
"""

from __future__ import annotations

import dataclasses

import torch

from interhandgen.fitting.body import CENTER, ROT6D
from interhandgen.fitting.camera import look_at, project
from interhandgen.rotations import matrix_to_rot6d, rot6d_to_matrix


@dataclasses.dataclass
class CameraSpec:
    """Pinhole intrinsics shared by the synthetic frames and the distance range of the cameras (metres)."""

    fx: float = 600.0
    fy: float = 600.0
    width: int = 640
    height: int = 480
    min_distance: float = 0.3
    max_distance: float = 0.8

    def intrinsics(self, batch: int) -> torch.Tensor:
        return torch.tensor([[self.fx, self.fy, self.width / 2.0, self.height / 2.0]]).expand(batch, 4).clone()


def random_cameras(target: torch.Tensor, spec: CameraSpec, generator: torch.Generator
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Cameras looking at ``target`` [B, 3] from a uniformly random direction at a uniform distance in
    [min_distance, max_distance], with a random roll. Returns (world-to-camera rotation [B, 3, 3], eye [B, 3])."""
    B = target.shape[0]
    d = torch.nn.functional.normalize(torch.randn(B, 3, generator=generator), dim=-1)
    dist = spec.min_distance + (spec.max_distance - spec.min_distance) * torch.rand(B, generator=generator)
    eye = target + d * dist[:, None]
    up = torch.randn(B, 3, generator=generator)
    up = torch.nn.functional.normalize(up - (up * d).sum(-1, keepdim=True) * d, dim=-1)
    return look_at(eye, target, up), eye


def to_camera(y: torch.Tensor, rotation: torch.Tensor, eye: torch.Tensor) -> torch.Tensor:
    """World-frame hand vectors y [B, 2, 64] -> camera frame (x_cam = R (x_world - eye))."""
    out = y.clone()
    R = rotation[:, None]
    out[..., ROT6D] = matrix_to_rot6d(R @ rot6d_to_matrix(y[..., ROT6D]))
    out[..., CENTER] = (R @ (y[..., CENTER] - eye[:, None])[..., None])[..., 0]
    return out


def occluded_by_other(joints: torch.Tensor, vertices: torch.Tensor, faces: tuple[torch.Tensor, torch.Tensor],
                      chunk: int = 8) -> torch.Tensor:
    """[B, 2, 21] bool: is the segment from the camera centre (origin) to each joint crossed by a triangle of
    the OTHER hand? Exact Moller-Trumbore ray casting; joints [B, 2, 21, 3], vertices [B, 2, V, 3] (camera frame),
    faces (left [F, 3], right [G, 3])."""
    out = torch.zeros(joints.shape[:3], dtype=torch.bool, device=joints.device)
    for s in range(2):
        f = faces[1 - s].to(joints.device)
        for a in range(0, joints.shape[0], chunk):
            p = joints[a:a + chunk, s].double()  # [b, J, 3]; ray o = 0, d = p, hit if 0 < t < 1
            tri = vertices[a:a + chunk, 1 - s].double()[:, f]  # [b, F, 3, 3]
            v0, e1, e2 = tri[:, :, 0], tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0]
            d = p[:, :, None]  # [b, J, 1, 3]
            h = torch.linalg.cross(d.expand(-1, -1, e2.shape[1], -1), e2[:, None].expand(-1, p.shape[1], -1, -1))
            det = (e1[:, None] * h).sum(-1)
            inv = 1.0 / torch.where(det.abs() < 1e-15, torch.full_like(det, float("inf")), det)
            svec = -v0[:, None]  # origin - v0
            u = (svec * h).sum(-1) * inv
            q = torch.linalg.cross(svec.expand_as(h), e1[:, None].expand_as(h))
            v = (d * q).sum(-1) * inv
            t = (e2[:, None] * q).sum(-1) * inv
            hit = (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 0) & (t < 1) & torch.isfinite(inv)
            out[a:a + chunk, s] = hit.any(-1)
    return out


def corrupt_keypoints(points: torch.Tensor, spec: CameraSpec, generator: torch.Generator,
                      noise_px: tuple[float, float] = (2.0, 5.0), outlier_rate: float = 0.05
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy 2D keypoints and confidences from exact projections [B, 2, 21, 2]: Gaussian noise of a per-frame
    sigma uniform in ``noise_px``, confidences uniform in [0.6, 1]; a fraction ``outlier_rate`` of the joints
    replaced by uniform positions in the image with confidences uniform in [0.3, 0.9]."""
    B = points.shape[0]
    sigma = noise_px[0] + (noise_px[1] - noise_px[0]) * torch.rand(B, 1, 1, 1, generator=generator)
    kp = points + sigma * torch.randn(points.shape, generator=generator)
    conf = 0.6 + 0.4 * torch.rand(points.shape[:3], generator=generator)
    out = torch.rand(points.shape[:3], generator=generator) < outlier_rate
    where = torch.rand(points.shape, generator=generator) * torch.tensor([float(spec.width), float(spec.height)])
    kp = torch.where(out[..., None], where, kp)
    conf = torch.where(out, 0.3 + 0.6 * torch.rand(points.shape[:3], generator=generator), conf)
    return kp, conf


def exact_projection(joints: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
    """[B, 2, 21, 2] pixels of camera-frame joints [B, 2, 21, 3]."""
    return project(joints.reshape(joints.shape[0], -1, 3), intrinsics).reshape(*joints.shape[:3], 2)
