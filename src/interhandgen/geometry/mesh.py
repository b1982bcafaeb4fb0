"""Batched per-mesh quantities in torch: normals, volume, input checks, a cached seal plan per topology.

Shapes: B batch, V vertices, F faces. Vertices in metres.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch

from interhandgen.geometry.sealing import SealPlan, check_faces, seal, seal_faces
from interhandgen.exceptions import InputError

__all__ = ["face_normals", "vertex_normals", "vertex_normals_at", "mesh_volume", "sealed_plan", "seal_torch"]


def check_verts(verts: Any, name: str, batch: int | None = None) -> torch.Tensor:
    """Validate batched vertices [B, V, 3] (floating-point torch tensor) and return them."""
    if not isinstance(verts, torch.Tensor):
        raise TypeError(f"argument '{name}' must be a torch tensor of shape [B, V, 3], got {type(verts).__name__}")
    if not verts.is_floating_point():
        raise TypeError(f"argument '{name}' must be floating point, got {verts.dtype}")
    if verts.ndim != 3 or verts.shape[2] != 3:
        raise InputError(f"argument '{name}' must have shape [B, V, 3], got {tuple(verts.shape)}")
    if verts.shape[0] == 0 or verts.shape[1] == 0:
        raise InputError(f"argument '{name}' is empty: shape {tuple(verts.shape)}")
    if batch is not None and verts.shape[0] != batch:
        raise InputError(f"argument '{name}' has batch size {verts.shape[0]}, expected {batch} to match the other hand")
    return verts


def check_pair(verts_a: Any, verts_b: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate two batched vertex tensors that describe B pairs on one device with one dtype."""
    verts_a = check_verts(verts_a, "verts_a")
    verts_b = check_verts(verts_b, "verts_b", batch=verts_a.shape[0])
    if verts_a.device != verts_b.device:
        raise InputError(f"'verts_a' is on {verts_a.device} but 'verts_b' is on {verts_b.device}")
    if verts_a.dtype != verts_b.dtype:
        raise TypeError(f"'verts_a' has dtype {verts_a.dtype} but 'verts_b' has {verts_b.dtype}")
    return verts_a, verts_b


@functools.lru_cache(maxsize=32)
def _plan_cached(faces_bytes: bytes, num_faces: int, num_verts: int) -> SealPlan:
    faces = np.frombuffer(faces_bytes, dtype=np.int64).reshape(num_faces, 3).copy()
    return seal_faces(faces, num_verts)


def sealed_plan(faces: Any, num_verts: int, name: str = "faces") -> SealPlan:
    """:func:`seal_faces` memoised on the faces' content (topologies repeat across calls)."""
    faces = check_faces(faces, num_verts, name)
    try:
        return _plan_cached(faces.tobytes(), faces.shape[0], int(num_verts))
    except ValueError as exc:
        raise InputError(f"argument '{name}': {exc}") from exc


def seal_torch(verts: torch.Tensor, faces: Any, name: str = "faces") -> tuple[torch.Tensor, torch.Tensor]:
    """Seal batched vertices [B, V, 3]; returns verts [B, V + L, 3] and faces [F', 3] long on the same device."""
    plan = sealed_plan(faces, verts.shape[1], name)
    verts_sealed, faces_sealed = seal(verts, plan)
    return verts_sealed, torch.as_tensor(faces_sealed, dtype=torch.long, device=verts.device)


def _faces_tensor(faces: Any, verts: torch.Tensor) -> torch.Tensor:
    if isinstance(faces, torch.Tensor) and faces.dtype == torch.long and faces.device == verts.device:
        return faces
    return torch.as_tensor(check_faces(faces, verts.shape[1]), dtype=torch.long, device=verts.device)


def face_normals(verts: torch.Tensor, faces: Any, normalize: bool = True) -> torch.Tensor:
    """Face normals [B, F, 3] following the right-hand rule of each triangle's vertex order.

    With ``normalize=False`` the vectors are the raw cross products, whose length is twice the face area.
    """
    verts = check_verts(verts, "verts")
    faces = _faces_tensor(faces, verts)
    tri = verts[:, faces]  # [B, F, 3, 3]
    n = torch.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0], dim=-1)
    return torch.nn.functional.normalize(n, dim=-1) if normalize else n


def vertex_normals(verts: torch.Tensor, faces: Any) -> torch.Tensor:
    """Area-weighted unit vertex normals [B, V, 3] (differentiable).

    Each vertex normal is the normalised sum of the (area-scaled) normals of its incident faces. A vertex
    that belongs to no face, or whose incident faces cancel exactly, gets the zero vector.
    """
    verts = check_verts(verts, "verts")
    faces = _faces_tensor(faces, verts)
    n = face_normals(verts, faces, normalize=False)  # length = 2 * area, so the sum is area-weighted
    acc = torch.zeros_like(verts)
    for k in range(3):
        acc = acc.index_add(1, faces[:, k], n)
    return torch.nn.functional.normalize(acc, dim=-1)


def vertex_normals_at(verts: torch.Tensor, faces: Any, ids: Any) -> torch.Tensor:
    """The unit vertex normals [B, P, 3] of :func:`vertex_normals` at the vertices ``ids`` [P] only, from their
    incident faces alone, summed in the same order (per corner, faces ascending): equal to
    ``vertex_normals(verts, faces)[:, ids]`` bit for bit at a fraction of the cost for a few vertices."""
    verts = check_verts(verts, "verts")
    faces = _faces_tensor(faces, verts)
    ids = torch.as_tensor(ids, dtype=torch.long, device=verts.device)
    if ids.dim() != 1 or (ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= verts.shape[1])):
        raise InputError(f"argument 'ids' must be a 1-D index into the {verts.shape[1]} vertices, got "
                         f"{tuple(ids.shape)}")
    ids, copies = torch.unique(ids, return_inverse=True)  # a repeated id gets its vertex's normal each time
    slot = torch.full((verts.shape[1],), -1, dtype=torch.long, device=verts.device)
    slot[ids] = torch.arange(ids.numel(), device=verts.device)
    corner = slot[faces]  # [F, 3]: each corner's place among ids, -1 elsewhere
    incident = torch.nonzero((corner >= 0).any(1)).squeeze(1)  # ascending
    n = face_normals(verts, faces[incident], normalize=False)
    acc = torch.zeros(verts.shape[0], ids.numel(), 3, dtype=verts.dtype, device=verts.device)
    for k in range(3):  # the order of vertex_normals: corner by corner, faces ascending within each
        on = torch.nonzero(corner[incident, k] >= 0).squeeze(1)
        acc = acc.index_add(1, corner[incident[on], k], n[:, on])
    return torch.nn.functional.normalize(acc, dim=-1)[:, copies]


def mesh_volume(verts: torch.Tensor, faces: Any) -> torch.Tensor:
    """Signed enclosed volume [B] in m^3 of closed, outward-oriented meshes (divergence theorem)."""
    verts = check_verts(verts, "verts")
    faces = _faces_tensor(faces, verts)
    tri = verts[:, faces]
    return (tri[:, :, 0] * torch.cross(tri[:, :, 1], tri[:, :, 2], dim=-1)).sum(dim=(-1, -2)) / 6.0
