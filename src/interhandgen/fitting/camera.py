"""OpenCV pinhole cameras: x right, y down, z forward (metres), pixels (u right, v down).

    u = fx X / Z + cx,    v = fy Y / Z + cy

Pixel (u, v) = (0.5, 0.5) is the centre of the top-left pixel, as in :mod:`interhandgen.viz.raster`.
"""

from __future__ import annotations

import torch

# Points nearer than this (metres) are projected as if at this depth, so that the 2D data term stays finite while
# an estimate passes behind the camera during optimisation; fitted hands end far beyond it.
MIN_DEPTH = 0.02


def project(points: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
    """Pinhole projection of camera-frame points [B, ..., 3] with intrinsics [B, 4] = (fx, fy, cx, cy) -> [B, ..., 2].

    Depths below :data:`MIN_DEPTH` are raised to it (see there).
    """
    if points.shape[-1] != 3:
        raise ValueError(f"points must end in 3 coordinates, got {list(points.shape)}")
    if intrinsics.dim() != 2 or intrinsics.shape != (points.shape[0], 4):
        raise ValueError(f"intrinsics must have shape [{points.shape[0]}, 4], got {list(intrinsics.shape)}")
    shape = (points.shape[0],) + (1,) * (points.dim() - 2)
    fx, fy, cx, cy = (intrinsics[:, i].reshape(shape).to(points) for i in range(4))
    z = points[..., 2].clamp(min=MIN_DEPTH)
    return torch.stack([fx * points[..., 0] / z + cx, fy * points[..., 1] / z + cy], dim=-1)


def look_at(eye: torch.Tensor, target: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """World-to-camera rotations [B, 3, 3] (rows: camera x right, y down, z forward) of cameras at ``eye`` [B, 3]
    looking at ``target`` [B, 3], with ``up`` [B, 3] pointing up in the image (not parallel to the view)."""
    z = torch.nn.functional.normalize(target - eye, dim=-1)
    x = torch.nn.functional.normalize(torch.linalg.cross(z, up), dim=-1)
    y = torch.linalg.cross(z, x)
    return torch.stack([x, y, z], dim=1)
