"""Close the holes of a triangle mesh (e.g. MANO's open wrist) so that inside/outside and volume are defined.

A :class:`SealPlan` is computed once per topology (faces array) by :func:`seal_faces`: every boundary
loop (a cycle of edges used by exactly one face) gets one new vertex at the centroid of the loop's
vertices and a fan of triangles joining it to the loop. The fan triangles use each boundary edge in
the direction opposite to the face that owns it, so the sealed mesh stays consistently oriented.
:func:`seal` then applies the plan to batched vertices [B, V, 3]; the cap vertices are a fixed linear
map of the input vertices, so the operation is differentiable in torch.

Shapes: B batch, V vertices, F faces, L boundary loops (= number of cap vertices).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from interhandgen.exceptions import InputError

__all__ = ["SealPlan", "seal_faces", "seal", "check_faces"]


def check_faces(faces: Any, num_verts: int | None = None, name: str = "faces") -> np.ndarray:
    """Validate a faces array [F, 3] of vertex indices and return it as a C-contiguous int64 numpy array."""
    if isinstance(faces, torch.Tensor):
        faces = faces.detach().cpu().numpy()
    if not isinstance(faces, np.ndarray):
        raise TypeError(f"argument '{name}' must be a numpy array or torch tensor of shape [F, 3], got {type(faces).__name__}")
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise InputError(f"argument '{name}' must have shape [F, 3], got {tuple(faces.shape)}")
    if faces.shape[0] == 0:
        raise InputError(f"argument '{name}' is empty: a mesh needs at least one triangle")
    if not np.issubdtype(faces.dtype, np.integer):
        raise TypeError(f"argument '{name}' must hold integer vertex indices, got dtype {faces.dtype}")
    faces = np.ascontiguousarray(faces, dtype=np.int64)
    if faces.min() < 0:
        raise InputError(f"argument '{name}' holds a negative vertex index ({faces.min()})")
    if num_verts is not None and faces.max() >= num_verts:
        raise InputError(
            f"argument '{name}' references vertex {faces.max()} but the mesh has only {num_verts} vertices"
        )
    degenerate = (faces[:, 0] == faces[:, 1]) | (faces[:, 1] == faces[:, 2]) | (faces[:, 2] == faces[:, 0])
    if degenerate.any():
        raise InputError(
            f"argument '{name}' has {int(degenerate.sum())} triangle(s) with a repeated vertex index "
            f"(first: face {int(np.flatnonzero(degenerate)[0])})"
        )
    return faces


@dataclass(frozen=True)
class SealPlan:
    """How to close the boundary loops of one mesh topology.

    Attributes:
        num_verts: V, vertex count of the open mesh.
        faces: [F, 3] int64, the input faces.
        loops: L arrays of vertex indices, each a boundary loop in traversal order.
        cap_faces: [sum(len(loop)), 3] int64, fan triangles; cap vertex of loop l has index V + l.
        cap_weights: [L, V] float64, row l averages the vertices of loop l (the cap vertex is that centroid).
    """

    num_verts: int
    faces: np.ndarray
    loops: tuple[np.ndarray, ...]
    cap_faces: np.ndarray
    cap_weights: np.ndarray = field(repr=False)

    @property
    def num_loops(self) -> int:
        return len(self.loops)

    @property
    def num_verts_sealed(self) -> int:
        return self.num_verts + self.num_loops

    @property
    def faces_sealed(self) -> np.ndarray:
        """[F + sum(len(loop)), 3] int64 faces of the sealed mesh (original faces first)."""
        return np.concatenate([self.faces, self.cap_faces], axis=0)

    @property
    def is_closed(self) -> bool:
        """True when the input mesh had no boundary (sealing is the identity)."""
        return self.num_loops == 0


def seal_faces(faces: Any, num_verts: int) -> SealPlan:
    """Find the boundary loops of a triangle mesh and plan one centroid cap per loop.

    Args:
        faces: [F, 3] integer vertex indices (numpy or torch), consistently oriented.
        num_verts: V, number of vertices of the mesh (vertices not referenced by any face are allowed).
    Returns:
        A :class:`SealPlan`; ``plan.is_closed`` when there is nothing to seal.
    Raises:
        ValueError: when an edge is used by more than two faces, when an interior edge is used twice in
            the same direction (inconsistent orientation), or when a boundary vertex starts more than one
            boundary edge (the loops are ambiguous): no consistently oriented cap exists then.
    """
    if not isinstance(num_verts, (int, np.integer)) or num_verts <= 0:
        raise InputError(f"argument 'num_verts' must be a positive integer, got {num_verts!r}")
    num_verts = int(num_verts)
    faces = check_faces(faces, num_verts)

    # Directed half-edges a->b of every triangle.
    heads = faces.reshape(-1)
    tails = np.roll(faces, -1, axis=1).reshape(-1)
    directed = heads * num_verts + tails
    uniq_directed, directed_count = np.unique(directed, return_counts=True)
    if (directed_count > 1).any():
        key = int(uniq_directed[directed_count > 1][0])
        raise InputError(
            f"argument 'faces' is not consistently oriented or not manifold: the directed edge "
            f"({key // num_verts}, {key % num_verts}) is used by {int(directed_count[directed_count > 1][0])} faces"
        )
    lo, hi = np.minimum(heads, tails), np.maximum(heads, tails)
    undirected = lo * num_verts + hi
    uniq, inverse, count = np.unique(undirected, return_inverse=True, return_counts=True)
    if (count > 2).any():
        key = int(uniq[count > 2][0])
        raise InputError(
            f"argument 'faces' is non-manifold: edge ({key // num_verts}, {key % num_verts}) is used by "
            f"{int(count[count > 2][0])} faces, so a boundary cap cannot be built"
        )
    boundary = count[inverse] == 1
    b_heads, b_tails = heads[boundary], tails[boundary]

    if b_heads.size == 0:
        return SealPlan(num_verts, faces, (), np.zeros((0, 3), np.int64), np.zeros((0, num_verts)))

    if np.unique(b_heads).size != b_heads.size:
        bad = b_heads[np.flatnonzero(np.bincount(b_heads, minlength=num_verts)[b_heads] > 1)[0]]
        raise InputError(
            f"argument 'faces' is non-manifold at boundary vertex {int(bad)}: it starts more than one "
            f"boundary edge, so its boundary loops are ambiguous"
        )
    next_vertex = dict(zip(b_heads.tolist(), b_tails.tolist()))

    loops: list[np.ndarray] = []
    remaining = set(next_vertex)
    # Walk each loop from its smallest vertex so the plan does not depend on hash order.
    for start in sorted(next_vertex):
        if start not in remaining:
            continue
        loop = [start]
        remaining.discard(start)
        v = next_vertex[start]
        while v != start:
            if v not in remaining:
                raise InputError(
                    f"argument 'faces' has a boundary that does not close into a loop at vertex {v}"
                )
            loop.append(v)
            remaining.discard(v)
            v = next_vertex[v]
        loops.append(np.asarray(loop, dtype=np.int64))

    cap_faces = []
    cap_weights = np.zeros((len(loops), num_verts), dtype=np.float64)
    for l, loop in enumerate(loops):
        # Boundary edge a->b is owned by a face; the cap must traverse it as b->a to keep orientation.
        a, b = loop, np.roll(loop, -1)
        centre = np.full_like(loop, num_verts + l)
        cap_faces.append(np.stack([b, a, centre], axis=1))
        cap_weights[l, loop] = 1.0 / loop.size
    return SealPlan(num_verts, faces, tuple(loops), np.concatenate(cap_faces, axis=0), cap_weights)


def seal(verts: Any, plan: SealPlan) -> tuple[Any, np.ndarray]:
    """Append the cap vertices of ``plan`` to batched vertices.

    Args:
        verts: [B, V, 3] vertices (torch tensor of any float dtype and device, or numpy array), metres.
        plan: from :func:`seal_faces` for the faces of this mesh.
    Returns:
        verts_sealed [B, V + L, 3] of the same kind, dtype and device as ``verts`` (differentiable in torch;
        ``verts`` itself when the mesh is already closed), and faces_sealed [F', 3] int64 numpy.
    """
    if not isinstance(plan, SealPlan):
        raise TypeError(f"argument 'plan' must be a SealPlan from seal_faces(), got {type(plan).__name__}")
    if isinstance(verts, torch.Tensor):
        if not verts.is_floating_point():
            raise TypeError(f"argument 'verts' must be a floating-point tensor, got {verts.dtype}")
    elif isinstance(verts, np.ndarray):
        if not np.issubdtype(verts.dtype, np.floating):
            raise TypeError(f"argument 'verts' must be a floating-point array, got {verts.dtype}")
    else:
        raise TypeError(f"argument 'verts' must be a torch tensor or numpy array, got {type(verts).__name__}")
    if verts.ndim != 3 or verts.shape[1] != plan.num_verts or verts.shape[2] != 3:
        raise InputError(
            f"argument 'verts' must have shape [B, {plan.num_verts}, 3] to match the plan, got {tuple(verts.shape)}"
        )
    if plan.is_closed:
        return verts, plan.faces
    if isinstance(verts, torch.Tensor):
        weights = torch.as_tensor(plan.cap_weights, dtype=verts.dtype, device=verts.device)
        caps = torch.einsum("lv,bvc->blc", weights, verts)
        return torch.cat([verts, caps], dim=1), plan.faces_sealed
    caps = np.einsum("lv,bvc->blc", plan.cap_weights.astype(verts.dtype, copy=False), verts)
    return np.concatenate([verts, caps], axis=1), plan.faces_sealed
