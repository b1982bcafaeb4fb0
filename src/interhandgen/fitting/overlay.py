"""Overlay of fitted meshes, projected with the observation camera, on the 2D keypoints (one panel per frame)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from interhandgen.fitting.camera import MIN_DEPTH, project
from interhandgen.viz import BACKGROUND, LEFT_COLOUR, RIGHT_COLOUR, rasterize, save_png

AMBIENT, DIFFUSE = 0.35, 0.65


def overlay_image(vertices: torch.Tensor, faces: tuple[torch.Tensor, torch.Tensor], intrinsics: torch.Tensor,
                  size: tuple[int, int], keypoints_2d: torch.Tensor | None = None,
                  confidence_2d: torch.Tensor | None = None, joints: torch.Tensor | None = None,
                  max_frames: int = 16, cols: int = 4) -> Image.Image:
    """A grid of panels (camera resolution each): the fitted meshes shaded by their facing to the camera, the
    observed keypoints (circles, confidence > 0) and the fitted joints' projections (crosses).

    vertices [B, 2, V, 3] camera frame; faces (left, right); intrinsics [B, 4]; size (width, height);
    keypoints_2d [B, 2, 21, 2], confidence_2d [B, 2, 21]; joints [B, 2, 21, 3].
    """
    W, H = int(size[0]), int(size[1])
    n = min(vertices.shape[0], max_frames)
    cols = min(cols, n)
    rows = (n + cols - 1) // cols
    canvas = Image.new("RGB", (cols * W, rows * H), BACKGROUND)
    colours = (LEFT_COLOUR, RIGHT_COLOUR)
    for i in range(n):
        pts, fcs, col = [], [], []
        offset = 0
        for s in range(2):
            v = vertices[i, s].float().cpu()
            uv = project(v[None], intrinsics[i:i + 1].float().cpu())[0]
            pts.append(torch.cat([uv, v[:, 2:3].clamp(min=MIN_DEPTH)], dim=1))
            f = faces[s].cpu().long()
            fcs.append(f + offset)
            tri = v[f]
            normal = torch.nn.functional.normalize(torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), dim=-1)
            view = torch.nn.functional.normalize(tri.mean(1), dim=-1)
            shade = AMBIENT + DIFFUSE * (normal * view).sum(-1).abs()
            col.append(torch.tensor(colours[s], dtype=torch.float32)[None] * shade[:, None])
            offset += v.shape[0]
        frags = rasterize(torch.cat(pts), torch.cat(fcs), H, W)
        rgb = torch.tensor(BACKGROUND, dtype=torch.uint8).repeat(H * W, 1)
        rgb[frags.pixels] = torch.cat(col)[frags.face_index].round().clamp(0, 255).to(torch.uint8)
        panel = Image.fromarray(rgb.view(H, W, 3).numpy(), mode="RGB")
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
