"""Mesh export with trimesh (OBJ, PLY, GLB), written atomically. Vertices are written as given (metres).

Precision as trimesh writes it: PLY and GLB store float32 vertices; OBJ stores decimal text (round trip within
1e-7 m, measured). Every vertex is written in order, but trimesh's OBJ reader drops vertices no face uses.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from interhandgen.exceptions import InputError
from interhandgen.data.format import atomic_write

MESH_FORMATS = ("obj", "ply", "glb")


def export_mesh(path: str | os.PathLike, vertices: Any, faces: Any, colour: tuple[int, int, int] | None = None) -> Path:
    """Write one triangle mesh; the format follows the suffix (.obj, .ply, .glb).

    Args:
        path: output file.
        vertices: [V, 3] float (numpy or torch), metres; written in this order, nothing merged or removed.
        faces: [F, 3] integer vertex indices.
        colour: optional (r, g, b) 0..255 face colour (PLY and GLB keep it; OBJ has no colours without a
            material file, so it is ignored there).
    Returns:
        The path written.
    """
    import trimesh

    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in MESH_FORMATS:
        raise InputError(f"out path {str(path)!r} must end in one of {['.' + f for f in MESH_FORMATS]}")
    v = _to_numpy(vertices, "vertices")
    f = _to_numpy(faces, "faces")
    if v.ndim != 2 or v.shape[1] != 3 or v.dtype.kind != "f":
        raise InputError(f"vertices must be a float array of shape [V, 3], got {v.dtype} {list(v.shape)}")
    if not np.isfinite(v).all():
        raise InputError("vertices contains NaN or inf")
    if f.ndim != 2 or f.shape[1] != 3 or f.dtype.kind not in "iu" or len(f) == 0:
        raise InputError(f"faces must be an integer array of shape [F, 3] with F >= 1, got {f.dtype} {list(f.shape)}")
    if f.min() < 0 or f.max() >= len(v):
        raise InputError(f"faces index vertices outside [0, {len(v)})")
    mesh = trimesh.Trimesh(vertices=v.astype(np.float64), faces=f.astype(np.int64), process=False)
    if colour is not None:
        rgba = np.array([*colour, 255], dtype=np.uint8)
        mesh.visual.face_colors = np.tile(rgba, (len(f), 1))
    payload = mesh.export(file_type=fmt)
    if isinstance(payload, str):
        payload = payload.encode()

    atomic_write(path, lambda fh: fh.write(payload))
    return path


def _to_numpy(x: Any, name: str) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x
    try:
        import torch

        if isinstance(x, torch.Tensor):
            return x.detach().cpu().numpy()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    raise TypeError(f"{name} must be a numpy array or torch tensor, got {type(x).__name__}")
