"""Nearest reference pair of a sample, for the side-by-side comparison.

Pairs are compared in the canonical two-hand frame (:mod:`interhandgen.data.canonical`: the left hand's
middle-finger MCP joint at the origin, its root rotation the identity), by the mean distance between the 42
joints of both hands. The distance is therefore blind to where a pair sits in the world and how it is turned,
and sees the hands' poses and their relative placement.
"""

from __future__ import annotations

import numpy as np
import torch

from interhandgen.data.canonical import to_canonical
from interhandgen.data.format import TwoHandSet

ANCHOR = "left"


def anchor_frames(pairs: TwoHandSet, models=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The left hand's world frame per pair: root rotation R [N, 3, 3] and centre joint c [N, 3] (float64, metres)."""
    can = to_canonical(pairs, models or pairs.hand_models(), anchor=ANCHOR, dtype=torch.float64)
    return can.anchor_rotation, can.anchor_center


def align(points: np.ndarray, frame_from: tuple, frame_to: tuple) -> np.ndarray:
    """Move points [..., 3] rigidly so that the frame (R, c) ``frame_from`` lands on ``frame_to``:
    ``x' = R_to R_from^T (x - c_from) + c_to``. Frames as [3, 3] and [3] arrays (one pair's :func:`anchor_frames`).
    """
    r_from, c_from = (np.asarray(a, dtype=np.float64) for a in frame_from)
    r_to, c_to = (np.asarray(a, dtype=np.float64) for a in frame_to)
    return (np.asarray(points, dtype=np.float64) - c_from) @ r_from @ r_to.T + c_to


def canonical_joints(pairs: TwoHandSet, batch_size: int = 4096) -> torch.Tensor:
    """Joints of both hands in the left hand's canonical frame: [N, 42, 3] float64 metres (left 21 then right 21).

    ``J_c = R_a^T (J - c_a)`` with the left hand's root rotation ``R_a`` and centre joint ``c_a``.
    """
    models = pairs.hand_models()
    out = []
    for s in range(0, len(pairs), batch_size):
        part = pairs[np.arange(s, min(s + batch_size, len(pairs)))]
        rot, centre = anchor_frames(part, models)
        joints = part.joints(models, dtype=torch.float64)
        both = torch.cat([joints["left"], joints["right"]], dim=1)
        out.append((both - centre[:, None]) @ rot)
    return torch.cat(out)


def nearest_pairs(query: torch.Tensor, reference: torch.Tensor, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """For each query pair, the reference pair with the smallest mean joint distance.

    Args:
        query: [M, J, 3]; reference: [N, J, 3] (metres, e.g. from :func:`canonical_joints`).
    Returns:
        (index [M] int64, mean joint distance [M] float64 in mm).
    """
    if query.ndim != 3 or reference.ndim != 3 or query.shape[1:] != reference.shape[1:]:
        raise ValueError(f"query and reference must be [M, J, 3] and [N, J, 3], got {list(query.shape)} and "
                         f"{list(reference.shape)}")
    idx, dist = [], []
    ref = reference.double()
    for s in range(0, query.shape[0], chunk):
        q = query[s:s + chunk].double()
        # [m, N, J] per-joint distances, averaged over joints; chunked over the reference to bound memory.
        best_d = torch.full((q.shape[0],), float("inf"), dtype=torch.float64)
        best_i = torch.zeros(q.shape[0], dtype=torch.long)
        for r in range(0, ref.shape[0], 2048):
            d = (q[:, None] - ref[None, r:r + 2048]).norm(dim=-1).mean(dim=-1)
            v, i = d.min(dim=1)
            better = v < best_d
            best_d = torch.where(better, v, best_d)
            best_i = torch.where(better, i + r, best_i)
        idx.append(best_i)
        dist.append(best_d * 1000.0)
    return torch.cat(idx).numpy(), torch.cat(dist).numpy()
