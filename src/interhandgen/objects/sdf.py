"""Exact signed distance to a closed object mesh, batched in torch (CPU and CUDA).

:func:`object_signed_distance` returns, for points [B, P, 3] and one object mesh per sample (or one shared by
the batch), the exact signed distance (negative inside), the closest surface point and the outward unit
direction of the distance's gradient. It uses the project's exact kernels (closest point on a triangle,
angle-weighted pseudo-normal inside test of :mod:`interhandgen.geometry.queries`) with bounding-sphere pruning:
each point is first tested against the ``near`` triangles with the smallest lower bound |p - c| - R, which
bounds its distance from above; then against every triangle whose lower bound does not exceed that upper bound
(so the minimum is exact).

A mesh shared by the whole batch goes through :class:`ObjectSDF`, whose per-mesh constants (triangles,
bounding spheres, unit normals, the pseudo-normal of every face's 7 features) are built once (callers that query
one object many times, the grasp optimiser, keep it). Its second pass also drops the (point, face) pairs whose
distance to the face's PLANE exceeds the upper bound (a second lower bound of the distance to the triangle):
the same exact minimum with about half the exact point-triangle tests near curved surfaces.

:func:`differentiable_sdf` turns a query into a value with a gradient: (p - q) . n with q and n held fixed, which
equals the signed distance at the query point and has the signed distance's exact gradient there (a plane
model of the surface for small moves, as in the hand-hand optimisation's cached correspondences).
"""

from __future__ import annotations

import math

import numpy as np
import torch

# The project's exact kernels; imported in one place.
from interhandgen.geometry.queries import _closest_on_triangle, _PseudoNormals

__all__ = ["object_signed_distance", "differentiable_sdf", "ObjectSDF", "NEAR_TRIANGLES"]

#: Triangles per point (smallest lower bounds) tested first, for an upper bound of the distance.
NEAR_TRIANGLES = 8
#: (point, triangle) pairs per chunk of the exhaustive pass.
_CHUNK = 1 << 20
#: Faces per leaf of :class:`ObjectSDF` (a k-d split of the face centres) and leaves searched in its first pass.
LEAF = 8
_PASS1_LEAVES = 4


def object_signed_distance(points: torch.Tensor, verts: torch.Tensor, faces: torch.Tensor,
                           near: int = NEAR_TRIANGLES, far: float | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Exact signed distance of points to a closed, outward-oriented mesh (negative inside).

    Args:
        points: [B, P, 3]; verts: [B, V, 3] or [V, 3] (one mesh for the whole batch); faces: [F, 3] long.
        far: optional distance (metres): points certainly farther than it from the surface (every triangle's lower
            bound exceeds it) skip the exact pass and are reported OUTSIDE at the best distance of the first pass
            (an upper bound). For optimisers whose points start outside and move less than ``far`` between
            queries; leave it None for exact values everywhere.
    Returns:
        sdf [B, P] float64, closest [B, P, 3] float64 (closest surface point), direction [B, P, 3] float64 (unit
        outward gradient of the signed distance: sign * (p - q) / |p - q|, the pseudo-normal on the surface).
        No gradient.
    """
    if points.ndim != 3 or points.shape[-1] != 3:
        raise ValueError(f"argument 'points' must have shape [B, P, 3], got {tuple(points.shape)}")
    if verts.ndim == 2:  # one mesh for the whole batch: its index
        return ObjectSDF(verts, faces)(points, near=near, far=far)
    with torch.no_grad():
        p = points.detach().double()
        v = verts.detach().double()
        shape = p.shape
        if v.ndim != 3 or v.shape[0] != p.shape[0] or v.shape[-1] != 3:
            raise ValueError(f"argument 'verts' must have shape [V, 3] or [B, V, 3] with B = {p.shape[0]}, "
                             f"got {tuple(verts.shape)}")
        faces = faces.to(device=p.device, dtype=torch.long)
        B, P, _ = p.shape
        tri = v[:, faces]  # [B, F, 3, 3]
        F = tri.shape[1]
        centre = tri.mean(2)
        radius = (tri - centre[:, :, None]).norm(dim=-1).amax(-1)
        origin = centre.mean(1, keepdim=True)
        lower = torch.cdist(p - origin, centre - origin) - radius[:, None, :]  # [B, P, F]
        pseudo = _PseudoNormals(v, faces)
        flat = p.reshape(-1, 3)
        sample = torch.arange(B, device=p.device).repeat_interleave(P)
        n = flat.shape[0]
        lower = lower.reshape(n, F)
        # Pass 1: the ``near`` triangles with the smallest lower bounds give an upper bound of each distance.
        T = min(int(near), F)
        face = lower.topk(T, dim=1, largest=False).indices
        best_d, best_q, best_n = _best_of(flat, sample, face, tri, pseudo)
        # Pass 2: every (point, triangle) pair whose lower bound does not exceed that upper bound (exact minimum).
        step = max(1, _CHUNK // F)
        exact_rows = torch.arange(n, device=p.device)
        certain_far = torch.zeros(n, dtype=torch.bool, device=p.device)
        if far is not None:
            certain_far = lower.amin(1) > far
            exact_rows = exact_rows[~certain_far]
        for s in range(0, exact_rows.numel(), step):
            rows = exact_rows[s:s + step]
            pi, ti = (lower[rows] <= best_d[rows, None] + 1e-9).nonzero(as_tuple=True)
            pi = rows[pi]
            q, feature = _closest_on_triangle(flat[pi], tri[sample[pi], ti])
            d = (flat[pi] - q).norm(dim=-1)
            better = d < best_d[pi]
            if not bool(better.any()):
                continue
            pi, ti, q, feature, d = pi[better], ti[better], q[better], feature[better], d[better]
            best = torch.full((n,), math.inf, dtype=p.dtype, device=p.device).scatter_reduce(0, pi, d, reduce="amin")
            win = d == best[pi]
            pi, ti, q, feature, d = pi[win], ti[win], q[win], feature[win], d[win]
            best_d[pi], best_q[pi] = d, q
            best_n[pi] = pseudo.at(sample[pi], ti, feature)
        return _signed(flat, best_d, best_q, best_n, certain_far, shape)


class ObjectSDF:
    """Exact signed distance to ONE closed, outward-oriented mesh, its constants built once (module docstring).
    ``ObjectSDF(verts, faces)(points, far=...)`` returns what :func:`object_signed_distance` returns for a shared
    mesh (the same exact minimum).

    Args:
        verts: [V, 3]; faces: [F, 3] long.
    """

    def __init__(self, verts: torch.Tensor, faces: torch.Tensor):
        with torch.no_grad():
            v = verts.detach().double()
            if v.ndim != 2 or v.shape[-1] != 3:
                raise ValueError(f"argument 'verts' must have shape [V, 3], got {tuple(verts.shape)}")
            faces = faces.to(device=v.device, dtype=torch.long)
            self.tri = v[faces]  # [F, 3, 3]
            self.normal = _feature_normals(faces, _PseudoNormals(v[None], faces))
            self.unit = torch.nn.functional.normalize(
                torch.cross(self.tri[:, 1] - self.tri[:, 0], self.tri[:, 2] - self.tri[:, 0], dim=-1), dim=-1)
            self.centre = self.tri.mean(1)
            self.radius = (self.tri - self.centre[:, None]).norm(dim=-1).amax(-1)
            self.origin = self.centre.mean(0)
            members = _kd_leaves(self.centre.cpu().numpy(), LEAF)
            self.members = torch.as_tensor(members, device=v.device)  # [C, LEAF]
            inner = self.centre[self.members]
            self.leaf_centre = inner.mean(1)
            self.leaf_radius = ((inner - self.leaf_centre[:, None]).norm(dim=-1) + self.radius[self.members]).amax(1)

    def __call__(self, points: torch.Tensor, near: int = NEAR_TRIANGLES, far: float | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Points [B, P, 3] -> sdf [B, P], closest [B, P, 3], direction [B, P, 3] (float64, no gradient; ``far``
        as in :func:`object_signed_distance`)."""
        return self._query(points, near, far)[:3]

    def clearance(self, points: torch.Tensor, far: float) -> torch.Tensor:
        """[B] a LOWER bound of the smallest signed distance of each row of points [B, P, 3] that lie outside the
        object (hands approaching it, as in the grasp placement): exact when some point is within ``far`` of the
        surface (the minimum over those points' exact values), else the smallest distance bound of the row's
        points (their leaves' bounding spheres), above ``far``. A row may move this far towards the object without
        any of its points crossing the surface (the distance is 1-Lipschitz). Points deeper inside than ``far``
        count with that bound, not their depth: rows that start inside need the exact query."""
        sdf, _, _, certain_far, bound = self._query(points, NEAR_TRIANGLES, far)
        return torch.where(certain_far, bound, sdf.reshape(-1)).view(points.shape[:2]).amin(1)

    def _query(self, points: torch.Tensor, near: int, far: float | None) -> tuple:
        with torch.no_grad():
            if points.ndim != 3 or points.shape[-1] != 3:
                raise ValueError(f"argument 'points' must have shape [B, P, 3], got {tuple(points.shape)}")
            shape = points.shape
            flat = points.detach().double().reshape(-1, 3).to(self.centre.device)
            n = flat.shape[0]
            C, L = self.members.shape
            leaf_lower = torch.cdist(flat - self.origin, self.leaf_centre - self.origin) - self.leaf_radius  # [n, C]
            # Pass 1: the ``near`` faces with the smallest bounds in the nearest leaves: an upper bound.
            top = leaf_lower.topk(min(_PASS1_LEAVES, C), dim=1, largest=False).indices
            cand = self.members[top].reshape(n, -1)
            lower = (flat[:, None] - self.centre[cand]).norm(dim=-1) - self.radius[cand]
            face = torch.gather(cand, 1, lower.topk(min(int(near), cand.shape[1]), dim=1, largest=False).indices)
            T = face.shape[1]
            p = flat[:, None].expand(n, T, 3).reshape(-1, 3)
            q, feature = _closest_on_triangle(p, self.tri[face.reshape(-1)])
            best_d, arg = (p - q).norm(dim=-1).view(n, T).min(dim=1)
            pick = arg + T * torch.arange(n, device=flat.device)
            best_q = q[pick]
            best_n = self.normal[face.reshape(-1)[pick], feature[pick]]
            # Pass 2: the faces of every leaf whose bound does not exceed the upper bound, then every such face
            # whose sphere bound and plane distance (both lower bounds) do not exceed it.
            rows_all = torch.arange(n, device=flat.device)
            certain_far = torch.zeros(n, dtype=torch.bool, device=flat.device)
            if far is not None:
                certain_far = leaf_lower.amin(1) > far
                rows_all = rows_all[~certain_far]
            step = max(1, _CHUNK // (C * L))
            for s in range(0, rows_all.numel(), step):
                rows = rows_all[s:s + step]
                pi, ci = (leaf_lower[rows] <= best_d[rows, None] + 1e-9).nonzero(as_tuple=True)
                pi = rows[pi][:, None].expand(-1, L)
                ti = self.members[ci]
                rel = flat[pi] - self.centre[ti]
                keep = rel.norm(dim=-1) - self.radius[ti] <= best_d[pi] + 1e-9
                pi, ti = pi[keep], ti[keep]
                keep = ((flat[pi] - self.tri[ti, 0]) * self.unit[ti]).sum(-1).abs() <= best_d[pi] + 1e-9
                pi, ti = pi[keep], ti[keep]
                q, feature = _closest_on_triangle(flat[pi], self.tri[ti])
                d = (flat[pi] - q).norm(dim=-1)
                better = d < best_d[pi]
                if not bool(better.any()):
                    continue
                pi, ti, q, feature, d = pi[better], ti[better], q[better], feature[better], d[better]
                best = torch.full((n,), math.inf, dtype=flat.dtype, device=flat.device).scatter_reduce(
                    0, pi, d, reduce="amin")
                win = d == best[pi]
                pi, ti, q, feature, d = pi[win], ti[win], q[win], feature[win], d[win]
                best_d[pi], best_q[pi] = d, q
                best_n[pi] = self.normal[ti, feature]
            return _signed(flat, best_d, best_q, best_n, certain_far, shape) + (certain_far, leaf_lower.amin(1))


def _kd_leaves(centre: np.ndarray, leaf: int) -> np.ndarray:
    """Face indices [C, leaf]: the points ``centre`` [F, 3] split recursively at the median of their longest
    extent until at most ``leaf`` remain; a smaller leaf is padded by repeating its own first face."""
    out, todo = [], [np.arange(len(centre))]
    while todo:
        idx = todo.pop()
        if len(idx) <= leaf:
            out.append(np.concatenate([idx, np.full(leaf - len(idx), idx[0])]))
            continue
        pts = centre[idx]
        axis = int(np.argmax(np.ptp(pts, axis=0)))
        order = idx[np.argsort(pts[:, axis], kind="stable")]
        half = len(order) // 2
        todo += [order[half:], order[:half]]
    return np.stack(out)


def _feature_normals(faces: torch.Tensor, pseudo: _PseudoNormals) -> torch.Tensor:
    """Pseudo-normals [F, 7, 3] per face and feature of :func:`_closest_on_triangle` (0 the face, 1..3 its
    edges, 4..6 its corners), looked up once instead of per query."""
    e0, e1, e2 = pseudo.edge[0].unbind(1)
    va, vb, vc = pseudo.vertex[0][faces].unbind(1)
    return torch.stack([pseudo.face[0], e0, e1, e2, va, vb, vc], 1)


def _signed(flat, best_d, best_q, best_n, certain_far, shape):
    """The signed distance, closest point and direction from the closest feature's pseudo-normal."""
    offset = flat - best_q
    inside = ((offset * best_n).sum(-1) < 0) & ~certain_far
    sign = torch.where(inside, -1.0, 1.0).to(offset.dtype)
    length = offset.norm(dim=-1, keepdim=True)
    unit_normal = torch.nn.functional.normalize(best_n, dim=-1)
    direction = torch.where(length > 1e-9, sign[:, None] * offset / length.clamp_min(1e-300), unit_normal)
    return (sign * best_d).view(shape[:2]), best_q.view(shape), direction.view(shape)


def _best_of(pts: torch.Tensor, sample: torch.Tensor, face: torch.Tensor, tri: torch.Tensor, pseudo) -> tuple:
    """Closest of the candidate faces [N, T] for points [N, 3]: distance [N], point [N, 3], pseudo-normal [N, 3]."""
    N, T = face.shape
    p = pts[:, None].expand(N, T, 3).reshape(-1, 3)
    q, feature = _closest_on_triangle(p, tri[sample[:, None], face].reshape(-1, 3, 3))
    d, arg = (p - q).norm(dim=-1).view(N, T).min(dim=1)
    pick = arg + T * torch.arange(N, device=pts.device)
    normal = pseudo.at(sample, face.reshape(-1)[pick], feature[pick])
    return d, q[pick], normal


def differentiable_sdf(points: torch.Tensor, closest: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """[B, P] signed distance with gradient w.r.t. ``points`` [B, P, 3], from a query's fixed closest points and
    directions (see the module docstring); exact at the queried points, a plane model near them."""
    return ((points - closest.to(points.dtype)) * direction.to(points.dtype)).sum(-1)
