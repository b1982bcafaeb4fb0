"""Reconstruction metrics of fitted pairs against the truth (camera frame; metres in, mm out).

All take [B, 2, N, 3] (hands [left, right]) and return per-frame values so that intervals can be formed.
"""

from __future__ import annotations

import torch

from interhandgen.fitting.synthetic import exact_projection

ROOT = 0  # the wrist joint of MANO21


def root_aligned_error_mm(pred: torch.Tensor, true: torch.Tensor, pred_joints: torch.Tensor,
                          true_joints: torch.Tensor) -> torch.Tensor:
    """[B, 2] mean per-point error (mm) after moving each hand's wrist onto the true one (MPJPE / MPVPE)."""
    p = pred - pred_joints[:, :, ROOT:ROOT + 1]
    t = true - true_joints[:, :, ROOT:ROOT + 1]
    return (p - t).norm(dim=-1).mean(-1) * 1000.0


def mrrpe_mm(pred_joints: torch.Tensor, true_joints: torch.Tensor) -> torch.Tensor:
    """[B] mean relative-root position error (mm): |(r_right - r_left)_pred - (r_right - r_left)_true|."""
    rel = lambda j: j[:, 1, ROOT] - j[:, 0, ROOT]  # noqa: E731
    return (rel(pred_joints) - rel(true_joints)).norm(dim=-1) * 1000.0


def reprojection_px(pred_joints: torch.Tensor, true_points_2d: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
    """[B] mean pixel distance of the projected fitted joints from the exact projections of the true joints."""
    return (exact_projection(pred_joints, intrinsics) - true_points_2d).norm(dim=-1).mean((1, 2))
