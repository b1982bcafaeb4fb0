"""Pictures of hands seen by a pinhole camera: shaded meshes over a plain background or a photo, and the overlay of
fitted meshes on the 2D keypoints (one panel per frame)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from interhandgen.fitting.camera import MIN_DEPTH, project
from interhandgen.viz import BACKGROUND, LEFT_COLOUR, RIGHT_COLOUR, rasterize, save_png

AMBIENT, DIFFUSE = 0.35, 0.65
# Camera frame (x right, y down, z forward): light from the upper left, from the camera's side.
LIGHT_DIRECTION = (-0.3, -0.5, -1.0)
OVERLAY_ALPHA = 0.6  # opacity of fitted meshes drawn over a photo


def shade_meshes(vertices: Sequence[torch.Tensor], faces: Sequence[torch.Tensor], colours: Sequence[Sequence[float]],
                 intrinsics: torch.Tensor, size: tuple[int, int], background: np.ndarray | Sequence[int] = BACKGROUND,
                 alpha: float = 1.0, supersample: int = 1) -> np.ndarray:
    """Meshes seen by one pinhole camera: uint8 [H, W, 3].

    vertices: per mesh [V_i, 3] camera frame (metres); faces: per mesh [F_i, 3]; colours: per mesh sRGB before
    shading; intrinsics [4] (fx, fy, cx, cy); size (width, height). Lambert shading with per-vertex intensities
    interpolated over each triangle (two-sided), ambient :data:`AMBIENT` + diffuse :data:`DIFFUSE` under
    :data:`LIGHT_DIRECTION`. ``background``: an RGB colour or an image [H, W, 3] uint8 that the meshes are blended
    over with opacity ``alpha``. ``supersample``: drawn that many times larger and box-filtered down.
    """
    W, H = int(size[0]), int(size[1])
    ss = int(supersample)
    if ss < 1 or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"supersample must be >= 1 and alpha in [0, 1], got {supersample}, {alpha}")
    bg = np.asarray(background, dtype=np.float32)
    if bg.ndim == 1:
        bg = np.broadcast_to(bg, (H, W, 3))
    if bg.shape != (H, W, 3):
        raise ValueError(f"background must be an RGB colour or an image of shape [{H}, {W}, 3], got {list(bg.shape)}")
    pts, fcs, base, offset = [], [], [], 0
    K = torch.as_tensor(intrinsics, dtype=torch.float32).reshape(1, 4).cpu()
    light = torch.nn.functional.normalize(torch.tensor(LIGHT_DIRECTION), dim=0)
    for v, f, c in zip(vertices, faces, colours):
        v = v.detach().float().cpu()
        f = f.cpu().long()
        uv = project(v[None], K)[0] * ss
        pts.append(torch.cat([uv, v[:, 2:3].clamp(min=MIN_DEPTH)], dim=1))
        fcs.append(f + offset)
        tri = v[f]
        normal = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # area-weighted
        vn = torch.zeros_like(v).index_add_(0, f.reshape(-1), normal.repeat_interleave(3, 0))
        shade = AMBIENT + DIFFUSE * (torch.nn.functional.normalize(vn, dim=-1) @ light).abs()
        base.append(torch.tensor(c, dtype=torch.float32)[None] * shade[:, None])
        offset += v.shape[0]
    frags = rasterize(torch.cat(pts), torch.cat(fcs), H * ss, W * ss)
    colour = torch.cat(base)  # [V, 3] per-vertex shaded colour
    faces_all = torch.cat(fcs)
    rgb = torch.zeros(H * ss * W * ss, 3)
    cover = torch.zeros(H * ss * W * ss)
    rgb[frags.pixels] = (colour[faces_all[frags.face_index]] * frags.bary[..., None]).sum(1)
    cover[frags.pixels] = 1.0
    # Box filter: colour sums and coverage per output pixel, then blend over the background.
    rgb = torch.nn.functional.avg_pool2d(rgb.view(H * ss, W * ss, 3).permute(2, 0, 1)[None], ss)[0].permute(1, 2, 0)
    cover = torch.nn.functional.avg_pool2d(cover.view(1, 1, H * ss, W * ss), ss)[0, 0][..., None] * alpha
    out = rgb.numpy() * alpha + bg * (1.0 - cover.numpy())
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def overlay_image(vertices: torch.Tensor, faces: tuple[torch.Tensor, torch.Tensor], intrinsics: torch.Tensor,
                  size: tuple[int, int], keypoints_2d: torch.Tensor | None = None,
                  confidence_2d: torch.Tensor | None = None, joints: torch.Tensor | None = None,
                  max_frames: int = 16, cols: int = 4, photo: np.ndarray | None = None) -> Image.Image:
    """A grid of panels (camera resolution each): the fitted meshes (:func:`shade_meshes`), the observed
    keypoints (circles, confidence > 0) and the fitted joints' projections (crosses).

    vertices [B, 2, V, 3] camera frame; faces (left, right); intrinsics [B, 4]; size (width, height);
    keypoints_2d [B, 2, 21, 2], confidence_2d [B, 2, 21]; joints [B, 2, 21, 3]; photo: an image [H, W, 3] uint8
    under every panel (the meshes then drawn with opacity :data:`OVERLAY_ALPHA`), else a plain background.
    """
    W, H = int(size[0]), int(size[1])
    n = min(vertices.shape[0], max_frames)
    cols = min(cols, n)
    rows = (n + cols - 1) // cols
    canvas = Image.new("RGB", (cols * W, rows * H), BACKGROUND)
    colours = (LEFT_COLOUR, RIGHT_COLOUR)
    for i in range(n):
        rgb = shade_meshes([vertices[i, 0], vertices[i, 1]], faces, colours, intrinsics[i], (W, H),
                           background=BACKGROUND if photo is None else photo,
                           alpha=1.0 if photo is None else OVERLAY_ALPHA)
        panel = Image.fromarray(rgb, mode="RGB")
        draw = ImageDraw.Draw(panel)
        for s in range(2):
            dark = tuple(int(c * 0.45) for c in colours[s])
            if keypoints_2d is not None:
                for (u, v), c in zip(keypoints_2d[i, s].tolist(), confidence_2d[i, s].tolist()):
                    if c > 0:
                        draw.ellipse([u - 3, v - 3, u + 3, v + 3], outline=dark, width=2)
            if joints is not None:
                for u, v in project(joints[i, s][None].float().cpu(), intrinsics[i:i + 1].float().cpu())[0].tolist():
                    draw.line([u - 3, v, u + 3, v], fill=(20, 20, 20))
                    draw.line([u, v - 3, u, v + 3], fill=(20, 20, 20))
        canvas.paste(panel, ((i % cols) * W, (i // cols) * H))
    return canvas


def save_overlay(path: str | os.PathLike, *args, **kwargs) -> Path:
    """:func:`overlay_image` written as PNG atomically."""
    return save_png(overlay_image(*args, **kwargs), path)
