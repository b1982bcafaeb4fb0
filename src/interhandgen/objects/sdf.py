"""Exact signed distance to a closed object mesh, batched in torch (CPU and CUDA).

:func:`object_signed_distance` returns, for points [B, P, 3] and one object mesh per sample (or one shared by
the batch), the exact signed distance (negative inside), the closest surface point and the outward unit
direction of the distance's gradient. It uses the project's exact kernels (closest point on a triangle,
angle-weighted pseudo-normal inside test of :mod:`interhandgen.geometry.queries`) with the bounding-sphere
pruning of :func:`interhandgen.geometry.signed_distance_few`: each point is first tested against the ``near``
triangles with the smallest lower bound |p - c| - R, which bounds its distance from above; then against every
triangle whose lower bound does not exceed that upper bound (so the minimum is exact).

:func:`differentiable_sdf` turns a query into a value with a gradient: (p - q) . n with q and n held fixed, which
equals the signed distance at the query point and has the signed distance's exact gradient there (a plane
model of the surface for small moves, as in the hand-hand optimisation's cached correspondences).
"""

from __future__ import annotations

import math

import torch

# The project's exact kernels; imported in one place.
from interhandgen.geometry.queries import _closest_on_triangle, _PseudoNormals

__all__ = ["object_signed_distance", "differentiable_sdf", "NEAR_TRIANGLES"]

#: Triangles per point (smallest lower bounds) tested first, for an upper bound of the distance.
NEAR_TRIANGLES = 8
#: (point, triangle) pairs per chunk of the exhaustive pass.
_CHUNK = 1 << 20


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
    with torch.no_grad():
        p = points.detach().double()
        if p.ndim != 3 or p.shape[-1] != 3:
            raise ValueError(f"argument 'points' must have shape [B, P, 3], got {tuple(points.shape)}")
        v = verts.detach().double()
        shape = p.shape
        if v.ndim == 2:  # one mesh for the whole batch: one sample of B * P points
            v, p = v[None], p.reshape(1, -1, 3)
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
