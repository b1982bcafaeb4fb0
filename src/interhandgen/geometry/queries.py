"""Batched distance, inside and contact queries between two meshes in torch (CPU and CUDA).

Shapes: B batch, P query points, V/W vertices, F faces. Lengths in metres; reports convert to mm.

Two levels of exactness:

* exact: closest surface point + angle-weighted pseudo-normal sign for inside tests (exact for closed,
  consistently oriented, self-intersection-free meshes; cross-checked against the generalised winding
  number, :func:`winding_numbers`), and exact point-to-triangle distances; float64, with (point,
  triangle) pairs pruned by triangle bounding spheres.
* fast: nearest vertex plus the sign of the offset along that vertex's area-weighted normal, O(V x W) matrix
  products; the fast penetration depth then verifies its deepest candidates exactly
  (:func:`signed_distance_few`), so it reports no false depths. Errors against exact are measured in
  ``docs/geometry.md``.

Everything here is a metric (no gradients) except :func:`nearest_vertex`'s distances; the differentiable
penalty is :func:`interhandgen.geometry.penetration_loss`.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import torch

from interhandgen.geometry.mesh import check_pair, seal_torch, vertex_normals, _faces_tensor
from interhandgen.geometry.points import gather_rows
from interhandgen.exceptions import InputError

__all__ = [
    "nearest_vertex",
    "winding_numbers",
    "points_inside",
    "point_to_surface_distance",
    "signed_distance_few",
    "penetration_depth",
    "min_distance",
    "vertex_clusters",
    "min_vertex_distance_clustered",
    "contact_vertices",
    "proximity_ratio",
    "DEFAULT_PROXIMITY_THRESHOLD",
    "DEFAULT_CONTACT_THRESHOLD",
]

#: Two hands count as "in proximity" when their minimum distance is below this (metres); see docs/geometry.md.
DEFAULT_PROXIMITY_THRESHOLD = 0.01
#: A vertex is "in contact" when another hand's vertex is closer than this (metres).
DEFAULT_CONTACT_THRESHOLD = 0.002

# (point, triangle) pairs per chunk of the exact kernels: their temporaries then peak near 300 MB in float64.
_CHUNK_ELEMS = 1 << 20


def nearest_vertex(points: torch.Tensor, targets: torch.Tensor, chunk_elems: int = 1 << 18) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest target vertex of every point, per sample.

    The search ranks |q|^2 - 2 p.q (the squared distance minus the per-point constant |p|^2) with one
    batched matrix product per chunk of at most ``chunk_elems`` (point, target) pairs; coordinates are
    centred first so the rounding of that form stays far below the vertex spacing. The returned distance
    is then recomputed directly from the chosen pair.

    Args:
        points: [B, P, 3]; targets: [B, Q, 3] (same dtype and device).
    Returns:
        dist [B, P] (differentiable w.r.t. both inputs: the distance to the selected vertex) and idx [B, P] long.
    """
    points, targets = check_pair(points, targets)
    B, P, _ = points.shape
    Q = targets.shape[1]
    idx = torch.empty(B, P, dtype=torch.long, device=points.device)
    with torch.no_grad():
        centre = targets.mean(dim=1, keepdim=True)
        p, q = points.detach() - centre, targets.detach() - centre
        q_sq = (q * q).sum(-1).unsqueeze(1)  # [B, 1, Q]
        q_t = q.transpose(1, 2)
        rows = max(1, chunk_elems // Q)
        batch_step = max(1, rows // P)
        point_step = P if batch_step > 1 else rows
        for b0 in range(0, B, batch_step):
            bs = slice(b0, b0 + batch_step)
            for p0 in range(0, P, point_step):
                ps = slice(p0, p0 + point_step)
                score = torch.baddbmm(q_sq[bs], p[bs, ps], q_t[bs], alpha=-2.0)
                idx[bs, ps] = score.min(dim=-1).indices  # same index as argmin (first minimum), 2x faster on CPU
    dist = (points - gather_rows(targets, idx)).norm(dim=-1)
    return dist, idx


# ---------------------------------------------------------------------------------------------------------------------
# Exact kernels on flattened (point, sample) lists
# ---------------------------------------------------------------------------------------------------------------------

def _winding_flat(points: torch.Tensor, batch: torch.Tensor, tri: torch.Tensor) -> torch.Tensor:
    """Winding numbers of points [N, 3] (sample index batch [N]) w.r.t. triangles tri [B, F, 3, 3]."""
    F = tri.shape[1]
    out = torch.empty(points.shape[0], dtype=tri.dtype, device=tri.device)
    step = max(1, _CHUNK_ELEMS // F)
    for s in range(0, points.shape[0], step):
        rel = tri[batch[s:s + step]] - points[s:s + step, None, None, :]  # [n, F, 3, 3]
        a, b, c = rel[:, :, 0], rel[:, :, 1], rel[:, :, 2]
        la, lb, lc = a.norm(dim=-1), b.norm(dim=-1), c.norm(dim=-1)
        det = (a * torch.cross(b, c, dim=-1)).sum(-1)
        den = la * lb * lc + (a * b).sum(-1) * lc + (b * c).sum(-1) * la + (c * a).sum(-1) * lb
        # Van Oosterom-Strackee: solid angle = 2 atan2(det, den); winding number = sum / (4 pi).
        out[s:s + step] = torch.atan2(det, den).sum(-1) / (2.0 * math.pi)
    return out


def _segment_param(x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """Clamped parameter in [0, 1] of the closest point on segments e to offsets x (point minus start)."""
    ee = (e * e).sum(-1)
    t = (x * e).sum(-1) / torch.where(ee > 0, ee, torch.ones_like(ee))
    return torch.where(ee > 0, t, torch.zeros_like(t)).clamp(0.0, 1.0)


def _closest_on_triangle(p: torch.Tensor, tri: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Closest point on triangles tri [K, 3, 3] to points p [K, 3], and the feature it lies on.

    Returns:
        q [K, 3], and feature [K] long: 0 the face interior, 1..3 the edge starting at corner k-1
        (ab, bc, ca), 4..6 the corner k-4 (a, b, c).
    """
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    n = torch.cross(b - a, c - a, dim=-1)
    nn = (n * n).sum(-1)
    # The foot of the perpendicular lies in the triangle iff p is left of all three edges (seen along n).
    left = torch.stack([(torch.cross(tri[:, (k + 1) % 3] - tri[:, k], p - tri[:, k], dim=-1) * n).sum(-1)
                        for k in range(3)], dim=-1)
    interior = (left >= 0).all(dim=-1) & (nn > 0)
    foot = p - ((p - a) * n).sum(-1, keepdim=True) * n / torch.where(nn > 0, nn, torch.ones_like(nn)).unsqueeze(-1)

    starts = tri  # edge k goes from corner k to corner k+1
    edges = tri.roll(-1, dims=1) - tri
    t = _segment_param(p[:, None] - starts, edges)  # [K, 3]
    on_edge = starts + t.unsqueeze(-1) * edges
    d_edge = ((p[:, None] - on_edge) ** 2).sum(-1)
    k = d_edge.argmin(dim=-1)
    rows = torch.arange(p.shape[0], device=p.device)
    q_edge, t_k = on_edge[rows, k], t[rows, k]
    # An edge's closest point at an end of the segment is a corner.
    edge_feature = torch.where(t_k <= 0, 4 + k, torch.where(t_k >= 1, 4 + (k + 1) % 3, 1 + k))
    q = torch.where(interior.unsqueeze(-1), foot, q_edge)
    feature = torch.where(interior, torch.zeros_like(edge_feature), edge_feature)
    return q, feature


class _PseudoNormals:
    """Angle-weighted pseudo-normals of a closed mesh (Baerentzen & Aanaes 2005), batched, float64.

    For a closed, consistently oriented, self-intersection-free mesh, a point p is inside iff
    (p - q) . N < 0, where q is the closest surface point and N the pseudo-normal of the feature
    (face, edge or vertex) that q lies on. This makes the inside test as local as the distance query.
    """

    def __init__(self, verts: torch.Tensor, faces: torch.Tensor):
        tri = verts[:, faces]  # [B, F, 3, 3]
        self.tri = tri
        self.faces = faces
        self.face = torch.nn.functional.normalize(
            torch.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0], dim=-1), dim=-1)
        # Edge pseudo-normal: the sum of the normals of its two faces.
        self.edge = self.face.unsqueeze(2) + self.face[:, _edge_neighbours(faces)]  # [B, F, 3, 3]
        # Vertex pseudo-normal: incident face normals weighted by the face's angle at the vertex.
        angles = []
        for k in range(3):
            u = tri[:, :, (k + 1) % 3] - tri[:, :, k]
            w = tri[:, :, (k + 2) % 3] - tri[:, :, k]
            angles.append(torch.atan2(torch.cross(u, w, dim=-1).norm(dim=-1), (u * w).sum(-1)))
        vertex = torch.zeros_like(verts)
        for k in range(3):
            vertex = vertex.index_add(1, faces[:, k], self.face * angles[k].unsqueeze(-1))
        self.vertex = vertex

    def at(self, batch: torch.Tensor, face: torch.Tensor, feature: torch.Tensor) -> torch.Tensor:
        """Pseudo-normals [K, 3] of the features (see :func:`_closest_on_triangle`) of faces of samples."""
        edge_k = (feature - 1).clamp(0, 2)
        corner_k = (feature - 4).clamp(0, 2)
        n_face = self.face[batch, face]
        n_edge = self.edge[batch, face, edge_k]
        n_vertex = self.vertex[batch, self.faces[face, corner_k]]
        return torch.where((feature == 0).unsqueeze(-1), n_face,
                           torch.where((feature <= 3).unsqueeze(-1), n_edge, n_vertex))


@functools.lru_cache(maxsize=32)
def _edge_neighbours_cached(faces_bytes: bytes, num_faces: int) -> np.ndarray:
    faces = np.frombuffer(faces_bytes, dtype=np.int64).reshape(num_faces, 3)
    heads, tails = faces.reshape(-1), np.roll(faces, -1, axis=1).reshape(-1)
    n = int(faces.max()) + 1
    key = heads * n + tails
    twin = tails * n + heads
    order = np.argsort(key)
    pos = np.searchsorted(key[order], twin)
    pos = np.minimum(pos, key.size - 1)
    found = key[order][pos] == twin
    if not found.all():
        raise InputError("the mesh is not closed: an edge has no opposite half-edge (seal it first)")
    return (order[pos] // 3).reshape(num_faces, 3)


def _edge_neighbours(faces: torch.Tensor) -> torch.Tensor:
    """[F, 3] index of the face across edge k (corner k -> k+1) of each face of a closed mesh."""
    f = faces.detach().cpu().numpy().astype(np.int64)
    return torch.as_tensor(_edge_neighbours_cached(f.tobytes(), f.shape[0]), device=faces.device)


def _surface_query(
    points: torch.Tensor, verts: torch.Tensor, faces: torch.Tensor, mask: torch.Tensor | None = None,
    bound: torch.Tensor | None = None, signed: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Exact distance [B, P] (float64) from points to a triangle mesh, and optionally their inside mask.

    Only (point, triangle) pairs that can hold the minimum are evaluated: a triangle lies within its
    bounding sphere (centre c, radius R), so its distance is at least |p - c| - R, and every point is at
    most min_t(|p - c_t| + R_t) from the surface. Points outside ``mask`` get +inf (and not inside);
    with a per-sample ``bound`` [B], points farther than it from the surface get +inf (only a minimum
    known to be at most ``bound`` is wanted). ``signed`` needs a closed mesh and no ``bound``.
    The loop runs over samples and chunks of points (exact evaluation is not a hot path).
    """
    verts = verts.double()
    points = points.double()
    B, P, _ = points.shape
    tri = verts[:, faces]
    F = tri.shape[1]
    centre = tri.mean(dim=2)  # [B, F, 3]
    radius = (tri - centre[:, :, None]).norm(dim=-1).amax(dim=-1)  # [B, F]
    pseudo = _PseudoNormals(verts, faces) if signed else None
    dist = torch.full((B, P), math.inf, dtype=torch.float64, device=points.device)
    inside = torch.zeros((B, P), dtype=torch.bool, device=points.device) if signed else None
    step = max(1, _CHUNK_ELEMS // F)
    for b in range(B):
        rows = torch.arange(P, device=points.device) if mask is None else mask[b].nonzero(as_tuple=True)[0]
        origin = centre[b].mean(dim=0)
        for s in range(0, rows.numel(), step):
            idx = rows[s:s + step]
            pts = points[b, idx]
            d_centre = torch.cdist(pts - origin, centre[b] - origin)  # [n, F]
            upper = (d_centre + radius[b]).amin(dim=-1)
            if bound is not None:
                upper = torch.minimum(upper, bound[b])
            # Slack of 1e-9 m absorbs the rounding of the product form of cdist.
            pi, ti = (d_centre - radius[b] <= upper[:, None] + 1e-9).nonzero(as_tuple=True)
            if pi.numel() == 0:
                continue
            q, feature = _closest_on_triangle(pts[pi], tri[b, ti])
            d = (pts[pi] - q).norm(dim=-1)
            best = torch.full((idx.numel(),), math.inf, dtype=torch.float64, device=points.device)
            best = best.scatter_reduce(0, pi, d, reduce="amin")
            dist[b, idx] = best
            if signed:
                # One minimising pair per point (any of tied ones gives the same feature's pseudo-normal).
                pair = torch.arange(pi.numel(), device=pi.device)
                winner = torch.full((idx.numel(),), -1, dtype=torch.long, device=pi.device)
                winner = winner.scatter_reduce(0, pi[d == best[pi]], pair[d == best[pi]], reduce="amax")
                w = winner[winner >= 0]
                normal = pseudo.at(torch.full_like(w, b), ti[w], feature[w])
                side = ((pts[pi[w]] - q[w]) * normal).sum(-1)
                inside[b, idx[pi[w]]] = side < 0
    return dist, inside


def _triangles(verts: torch.Tensor, faces: Any) -> torch.Tensor:
    return verts[:, _faces_tensor(faces, verts)]


def winding_numbers(points: torch.Tensor, verts: torch.Tensor, faces: Any) -> torch.Tensor:
    """Generalised winding numbers [B, P] (float64) of points w.r.t. a mesh, O(P x F).

    For a closed, outward-oriented mesh this is 1 inside and 0 outside (undefined on the surface); it is
    the slow, independent reference for :func:`points_inside`.
    Args:
        points: [B, P, 3]; verts: [B, V, 3]; faces: [F, 3].
    """
    points, verts = check_pair(points, verts)
    with torch.no_grad():
        tri = _triangles(verts.detach().double(), faces)
        B, P, _ = points.shape
        batch = torch.arange(B, device=points.device).repeat_interleave(P)
        return _winding_flat(points.detach().double().reshape(-1, 3), batch, tri).reshape(B, P)


def points_inside(points: torch.Tensor, verts: torch.Tensor, faces: Any) -> torch.Tensor:
    """Exact inside test [B, P] bool of points against a mesh (open meshes are sealed first).

    Closest surface point + angle-weighted pseudo-normal sign; agrees with the winding number for closed,
    self-intersection-free meshes (tested). Points outside the mesh's bounding box are outside.
    """
    points, verts = check_pair(points, verts)
    with torch.no_grad():
        verts_sealed, faces_sealed = seal_torch(verts.detach(), faces)
        _, inside = _signed_query(points.detach(), verts_sealed, faces_sealed)
        return inside


def _signed_query(points: torch.Tensor, verts_sealed: torch.Tensor, faces_sealed: torch.Tensor):
    lo = verts_sealed.amin(dim=1, keepdim=True)
    hi = verts_sealed.amax(dim=1, keepdim=True)
    in_box = ((points >= lo) & (points <= hi)).all(dim=-1)
    return _surface_query(points, verts_sealed, faces_sealed, mask=in_box, signed=True)


def point_to_surface_distance(points: torch.Tensor, verts: torch.Tensor, faces: Any) -> torch.Tensor:
    """Exact unsigned distance [B, P] (float64, metres) from points to the triangles of a mesh."""
    points, verts = check_pair(points, verts)
    with torch.no_grad():
        dist, _ = _surface_query(points.detach(), verts.detach(), _faces_tensor(faces, verts))
        return dist


# ---------------------------------------------------------------------------------------------------------------------
# Penetration depth
# ---------------------------------------------------------------------------------------------------------------------

def fast_inside(points: torch.Tensor, verts_sealed: torch.Tensor, faces_sealed: Any,
                target_stride: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest-vertex + normal inside test: (inside [B, P] bool, distance to that vertex [B, P]).

    A point is taken to be inside when its offset from the nearest vertex of the (sealed) mesh points
    against that vertex's area-weighted normal. The distance keeps its gradient. With ``target_stride`` k > 1
    only every k-th vertex is a candidate (normals still come from the whole mesh): k^2 fewer distance
    evaluations when the points are strided too, at the price of a coarser test.
    """
    if target_stride == 1:
        dist, idx = nearest_vertex(points, verts_sealed)
    else:
        candidates = torch.arange(0, verts_sealed.shape[1], int(target_stride), device=verts_sealed.device)
        dist, sub = nearest_vertex(points, verts_sealed[:, candidates])
        idx = candidates[sub]
    with torch.no_grad():
        normals = vertex_normals(verts_sealed.detach(), faces_sealed)
        offset = points.detach() - gather_rows(verts_sealed.detach(), idx)
        inside = (offset * gather_rows(normals, idx)).sum(-1) < 0
    return inside, dist


#: Points per sample whose inside test and depth the fast method evaluates exactly (the deepest estimates).
FAST_DEPTH_CANDIDATES = 64
#: Triangles per point evaluated exactly in :func:`signed_distance_few`, in rounds for uncertified points.
_NEAR_TRIANGLES = (16, 128, 1024)


def signed_distance_few(points: torch.Tensor, verts_sealed: torch.Tensor, faces_sealed: torch.Tensor,
                        near_triangles: tuple[int, ...] = _NEAR_TRIANGLES) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact distance [B, K] (float64, metres) to a closed mesh and exact inside mask [B, K] of a few points per
    sample, batched (no loop over samples).

    Each point is tested exactly against the T triangles with the smallest bounding-sphere lower bound
    |p - c| - R; its result is certified when the best exact distance is at most the next lower bound (no
    other triangle can be closer). Uncertified points (deep points under flat surfaces, where many
    triangles have similar bounds) are retried with the next, larger T of ``near_triangles``, and the few
    left after the last are recomputed by the exhaustive per-sample query. The inside test is the sign along
    the angle-weighted pseudo-normal of the closest feature, as in :func:`points_inside`.

    Args:
        points: [B, K, 3]; verts_sealed: [B, V, 3] of a closed mesh; faces_sealed: [F, 3] long.
    """
    points = points.double()
    verts = verts_sealed.double()
    B, K, _ = points.shape
    tri = verts[:, faces_sealed]  # [B, F, 3, 3]
    F = tri.shape[1]
    centre = tri.mean(dim=2)
    radius = (tri - centre[:, :, None]).norm(dim=-1).amax(dim=-1)  # [B, F]
    origin = centre.mean(dim=1, keepdim=True)
    lower = (torch.cdist(points - origin, centre - origin) - radius[:, None, :]).reshape(B * K, F)
    flat = points.reshape(-1, 3)
    sample = torch.arange(B, device=points.device).repeat_interleave(K)
    pseudo = _PseudoNormals(verts, faces_sealed)
    dist = torch.full((B * K,), math.inf, dtype=torch.float64, device=points.device)
    inside = torch.zeros(B * K, dtype=torch.bool, device=points.device)
    todo = torch.arange(B * K, device=points.device)
    for T in near_triangles:
        T = min(int(T), F)
        bounds, face = lower[todo].topk(min(T + 1, F), dim=1, largest=False)  # ascending
        face = face[:, :T]
        n = todo.numel()
        p = flat[todo][:, None].expand(n, T, 3).reshape(-1, 3)
        q, feature = _closest_on_triangle(p, tri[sample[todo][:, None], face].reshape(-1, 3, 3))
        d, arg = (p - q).norm(dim=-1).view(n, T).min(dim=1)
        pick = arg + T * torch.arange(n, device=points.device)
        normal = pseudo.at(sample[todo], face.reshape(-1)[pick], feature[pick])
        dist[todo] = d
        inside[todo] = ((flat[todo] - q[pick]) * normal).sum(-1) < 0
        # Slack of 1e-9 m absorbs the rounding of the product form of cdist.
        todo = todo[d > bounds[:, T] + 1e-9] if T < F else todo[:0]
        if todo.numel() == 0:
            break
    if todo.numel():
        mask = torch.zeros(B * K, dtype=torch.bool, device=points.device)
        mask[todo] = True
        d_full, in_full = _surface_query(points, verts, faces_sealed, mask=mask.view(B, K), signed=True)
        dist = torch.where(mask, d_full.reshape(-1), dist)
        inside = torch.where(mask, in_full.reshape(-1), inside)
    return dist.view(B, K), inside.view(B, K)


def _depth_one_way(points: torch.Tensor, verts_sealed: torch.Tensor, faces_sealed: torch.Tensor, method: str,
                   candidates: int = FAST_DEPTH_CANDIDATES) -> torch.Tensor:
    if method == "fast":
        # The nearest-vertex + normal estimate only ranks the points: it reports false depths near concave
        # regions (tens of mm where the exact depth is 0), so the deepest ``candidates`` estimates are checked
        # with the exact inside test and exact surface distance, and only verified depths are reported.
        inside, dist = fast_inside(points, verts_sealed, faces_sealed)
        estimate = torch.where(inside, dist, torch.zeros_like(dist))
        top = estimate.topk(min(int(candidates), estimate.shape[1]), dim=1)
        cand = gather_rows(points, top.indices)
        exact, exact_inside = signed_distance_few(cand, verts_sealed, faces_sealed)
        verified = exact_inside & (top.values > 0)
        return torch.where(verified, exact, torch.zeros_like(exact)).amax(dim=1).to(points.dtype)
    dist, inside = _signed_query(points, verts_sealed, faces_sealed)
    return torch.where(inside, dist, torch.zeros_like(dist)).amax(dim=1).to(points.dtype)


#: Growth of the intersection boxes (metres): absorbs the rounding of the box corners.
_BOX_SLACK = 1e-7


#: Triangle clusters of the clustered signed distance (fastest of 96, 192, 384 on the sealed open hand).
_FACE_CLUSTERS = 192


def face_clusters(verts: torch.Tensor, faces: torch.Tensor, num_clusters: int = _FACE_CLUSTERS) -> torch.Tensor:
    """A fixed partition of a mesh's faces into clusters [C, M] (face indices, padded by repeating a member),
    from the triangle centroids of ``verts`` [V, 3] (any pose: only the grouping is taken from it; the bounds
    are recomputed per posed mesh, so results do not depend on it). About 20 ms for the sealed open hand."""
    f = faces.detach().cpu().to(torch.int64)
    centroids = verts.detach().cpu().double()[f].mean(dim=1)
    return vertex_clusters(centroids, min(int(num_clusters), f.shape[0]))[1]


class _ClusterBounds:
    """Bounding spheres of the triangles [B, F] and of fixed clusters of them [B, C] (see :func:`face_clusters`).

    A triangle with sphere (c, r) is at least |p - c| - r and at most |p - c| + r from p; a cluster (centre C,
    radius R over its triangles' spheres) likewise for its closest triangle.
    """

    def __init__(self, tri: torch.Tensor, members: torch.Tensor) -> None:
        self.tri, self.members = tri, members.to(tri.device)
        M = self.members.shape[1]
        # vertex_clusters pads a cluster by repeating its first member.
        self.member_ok = (torch.arange(M, device=tri.device) == 0) | (self.members != self.members[:, :1])
        self.centre_t = tri.mean(dim=2)  # [B, F, 3]
        self.radius_t = (tri - self.centre_t[:, :, None]).norm(dim=-1).amax(dim=-1)  # [B, F]
        ct = self.centre_t[:, self.members]
        self.centre_c = ct.mean(dim=2)  # [B, C, 3]
        self.radius_c = ((ct - self.centre_c[:, :, None]).norm(dim=-1) + self.radius_t[:, self.members]).amax(dim=-1)

    def upper_bound(self, p: torch.Tensor, sample: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cluster lower bounds [n, C] and an upper bound [n] of the surface distance of points p [n, 3]: the
        smallest triangle upper bound within the cluster of smallest lower bound (a real distance bound)."""
        lower_c = (p[:, None] - self.centre_c[sample]).norm(dim=-1) - self.radius_c[sample]
        nearest = self.members[lower_c.argmin(dim=1)]  # [n, M]
        upper = ((p[:, None] - self.centre_t[sample[:, None], nearest]).norm(dim=-1)
                 + self.radius_t[sample[:, None], nearest]).amin(dim=1)
        return lower_c, upper

    def signed_distance(self, p: torch.Tensor, sample: torch.Tensor, lower_c: torch.Tensor, upper: torch.Tensor,
                        pseudo: "_PseudoNormals") -> tuple[torch.Tensor, torch.Tensor]:
        """Exact distance [n] (float64) and inside flag [n] of points p [n, 3] (mesh ``sample[i]``).

        Only the clusters with lower bound <= ``upper`` can hold the closest triangle, within them only the
        triangles with lower bound <= the smallest triangle upper bound; those are evaluated exactly. The
        inside test is the sign along the pseudo-normal of the closest feature, as in :func:`points_inside`.
        """
        n = p.shape[0]
        # Slack of 1e-12 m absorbs the rounding of the float64 bounds.
        point, cluster = torch.nonzero(lower_c <= upper[:, None] + 1e-12, as_tuple=True)
        faces = self.members[cluster]  # [P, M]
        dt = (p[point][:, None] - self.centre_t[sample[point][:, None], faces]).norm(dim=-1)
        rt = self.radius_t[sample[point][:, None], faces]
        ok = self.member_ok[cluster]
        upper_t = torch.where(ok, dt + rt, torch.full_like(dt, math.inf)).amin(dim=1)
        upper = torch.full((n,), math.inf, dtype=p.dtype, device=p.device).scatter_reduce(0, point, upper_t,
                                                                                          reduce="amin")
        pi, mi = torch.nonzero(ok & (dt - rt <= upper[point][:, None] + 1e-12), as_tuple=True)
        owner, face = point[pi], faces[pi, mi]
        q, feature = _closest_on_triangle(p[owner], self.tri[sample[owner], face])
        d = (p[owner] - q).norm(dim=-1)
        best = torch.full((n,), math.inf, dtype=d.dtype, device=p.device).scatter_reduce(0, owner, d, reduce="amin")
        win = torch.nonzero(d == best[owner], as_tuple=True)[0]
        # One minimising triangle per point (any tied one gives the same sign).
        slot = torch.full((n,), -1, dtype=torch.long, device=p.device).scatter_reduce(0, owner[win], win,
                                                                                       reduce="amax")
        normal = pseudo.at(sample, face[slot], feature[slot])
        inside = ((p - q[slot]) * normal).sum(-1) < 0
        return best, inside


#: Candidates per sample evaluated exactly in each round of the boxed depth (then the rest is pruned).
_DEPTH_ROUNDS = (4, 16, 64)


def _depth_one_way_boxed(points: torch.Tensor, verts_sealed: torch.Tensor, faces_sealed: torch.Tensor,
                         lo: torch.Tensor, hi: torch.Tensor, chunk: int = 32) -> torch.Tensor:
    """Exact depth [B] (float64) of the deepest of ``points`` [B, N, 3] inside the closed mesh, testing only the
    points inside the boxes ``lo``/``hi`` [B, 3] (NaN rows: no point is tested, depth 0).

    Exact provided every point strictly inside the mesh lies in its box, which holds for the box of the
    boolean intersection of the two solids. Branch and bound over the in-box points of a chunk of samples
    (flat, no padding): every point gets a cheap upper bound of its surface distance (triangle-cluster
    spheres); per sample the points with the largest bounds are evaluated exactly first, in rounds, and after
    each round every point whose bound is at most the sample's deepest verified depth is dropped (it cannot be
    deeper, inside or not).
    """
    p_all = points.double()
    inbox = ((p_all >= (lo - _BOX_SLACK)[:, None]) & (p_all <= (hi + _BOX_SLACK)[:, None])).all(dim=-1)
    depth = torch.zeros(p_all.shape[0], dtype=torch.float64, device=p_all.device)
    members = face_clusters(verts_sealed[0], faces_sealed)
    for s in range(0, p_all.shape[0], chunk):
        rows, idx = torch.nonzero(inbox[s:s + chunk], as_tuple=True)
        if rows.numel() == 0:
            continue
        verts = verts_sealed[s:s + chunk].double()
        bounds = _ClusterBounds(verts[:, faces_sealed], members)
        pseudo = _PseudoNormals(verts, faces_sealed)
        p = p_all[s:s + chunk][rows, idx]
        lower_c, upper = bounds.upper_bound(p, rows)
        best = torch.zeros(verts.shape[0], dtype=torch.float64, device=p.device)
        # Order by sample, then by decreasing bound: the rank of a point within its sample picks each round.
        order = torch.argsort(upper, descending=True, stable=True)
        order = order[torch.argsort(rows[order], stable=True)]
        active = order
        round_sizes = list(_DEPTH_ROUNDS)
        while active.numel():
            k = round_sizes.pop(0) if round_sizes else None
            smp = rows[active]
            if k is None:
                pick = torch.ones_like(smp, dtype=torch.bool)
            else:
                first = torch.searchsorted(smp, smp, right=False)  # smp is sorted: start of each sample's run
                pick = (torch.arange(smp.numel(), device=p.device) - first) < k
            sel = active[pick]
            d, inside = bounds.signed_distance(p[sel], rows[sel], lower_c[sel], upper[sel], pseudo)
            best = best.scatter_reduce(0, rows[sel], torch.where(inside, d, torch.zeros_like(d)), reduce="amax")
            rest = active[~pick]
            active = rest[upper[rest] > best[rows[rest]]]
        depth[s:s + chunk] = best
    return depth


def penetration_depth(
    verts_a: torch.Tensor, faces_a: Any, verts_b: torch.Tensor, faces_b: Any, method: str = "fast",
    region: tuple[Any, Any] | None = None,
) -> torch.Tensor:
    """Deepest vertex of either hand inside the other, per sample, in metres (0 when none is inside).

    For each vertex of hand a inside the (sealed) hand b, its depth is its distance to b's surface; the
    result is the maximum over those and over the vertices of b inside a.

    Args:
        verts_a: [B, V, 3], faces_a: [F, 3]; verts_b: [B, W, 3], faces_b: [G, 3]. Metres.
        method: "exact" (pseudo-normal inside test, exact point-to-triangle distance, every vertex; float64
            internally) or "fast": the nearest-vertex + normal estimate ranks the vertices, and the deepest
            ``FAST_DEPTH_CANDIDATES`` (64) per hand and sample are checked exactly (inside test and surface
            distance). Every reported depth is thus an exact depth of a vertex that is truly inside, so the
            fast value never exceeds the exact one (no false positives); it can be lower when the estimate
            misses the deepest vertex. Its measured error is in docs/geometry.md.
        region: with ``method="exact"`` only: (lo, hi) [B, 3] metres, a box per sample known to contain every
            vertex of either hand that lies inside the other, e.g. the box of the boolean intersection
            (``penetration_volume(..., return_bounds=True)``); NaN rows mean no intersection (depth 0). Only the
            vertices in the box are tested, exactly: same result, a fraction of the work (4.4x faster on 200
            penetrating pairs of bundled-model samples, identical values). Both need hands free of
            self-intersections (fingers passing through each other), where "inside" is ill-defined: there the
            boolean and the pseudo-normal test can disagree and so can the two ways.
    Returns:
        [B] depths in metres, dtype of the input, no gradient.
    """
    verts_a, verts_b = check_pair(verts_a, verts_b)
    if method not in ("fast", "exact"):
        raise InputError(f"argument 'method' must be 'fast' or 'exact', got {method!r}")
    if region is not None:
        if method != "exact":
            raise InputError("argument 'region' is only used with method='exact'")
        lo, hi = (torch.as_tensor(r, dtype=torch.float64, device=verts_a.device) for r in region)
        if lo.shape != (verts_a.shape[0], 3) or hi.shape != (verts_a.shape[0], 3):
            raise InputError(f"argument 'region' must be two [B, 3] corner arrays with B = {verts_a.shape[0]}, "
                             f"got {tuple(lo.shape)} and {tuple(hi.shape)}")
    with torch.no_grad():
        va, vb = verts_a.detach(), verts_b.detach()
        sealed_a, fa = seal_torch(va, faces_a, "faces_a")
        sealed_b, fb = seal_torch(vb, faces_b, "faces_b")
        if region is not None:
            depth = torch.maximum(_depth_one_way_boxed(va, sealed_b, fb, lo, hi),
                                  _depth_one_way_boxed(vb, sealed_a, fa, lo, hi))
        else:
            depth = torch.maximum(_depth_one_way(va, sealed_b, fb, method), _depth_one_way(vb, sealed_a, fa, method))
    return depth.to(verts_a.dtype)


# ---------------------------------------------------------------------------------------------------------------------
# Distance and contact
# ---------------------------------------------------------------------------------------------------------------------

def min_distance(
    verts_a: torch.Tensor, verts_b: torch.Tensor, faces_a: Any | None = None, faces_b: Any | None = None
) -> torch.Tensor:
    """Minimum distance between two hands per sample, in metres.

    Without faces: the smallest vertex-to-vertex distance. With both ``faces_a`` and ``faces_b``: the
    smallest exact vertex-to-surface distance in both directions (vertices of a to triangles of b and vice
    versa), which is never larger than the vertex-to-vertex value and equals the true surface-to-surface
    distance whenever the closest pair involves a vertex (it misses edge-to-edge closest pairs). Neither
    is signed: interpenetrating hands give a small positive value (use :func:`penetration_depth`).

    Args:
        verts_a: [B, V, 3]; verts_b: [B, W, 3].
    Returns:
        [B] in the input dtype (float64 arithmetic for the surface variant), no gradient.
    """
    verts_a, verts_b = check_pair(verts_a, verts_b)
    if (faces_a is None) != (faces_b is None):
        raise InputError("pass both 'faces_a' and 'faces_b' for the surface distance, or neither for vertex-to-vertex")
    with torch.no_grad():
        va, vb = verts_a.detach(), verts_b.detach()
        d_ab, _ = nearest_vertex(va, vb)
        vertex_min = d_ab.amin(dim=1)
        if faces_a is None:
            return vertex_min
        best = vertex_min.double()
        for points, verts, faces in ((va, vb, faces_b), (vb, va, faces_a)):
            faces_t = _faces_tensor(faces, verts)
            tri = verts.double()[:, faces_t]
            # Every point of a triangle is within its longest edge of each of its corners, so a vertex
            # whose nearest corner is farther than (best + longest edge) cannot improve on best.
            longest = (tri - tri.roll(1, dims=2)).norm(dim=-1).amax(dim=(1, 2))
            d_near, _ = nearest_vertex(points, verts)
            mask = d_near.double() <= (best + longest)[:, None]
            dist, _ = _surface_query(points, verts, faces_t, mask=mask, bound=best)
            best = torch.minimum(best, dist.amin(dim=1))
        return best.to(verts_a.dtype)


def contact_vertices(
    verts_a: torch.Tensor, verts_b: torch.Tensor, threshold: float = DEFAULT_CONTACT_THRESHOLD
) -> tuple[torch.Tensor, torch.Tensor]:
    """Vertices of each hand within ``threshold`` metres of some vertex of the other hand.

    Returns:
        (mask_a [B, V] bool, mask_b [B, W] bool).
    """
    verts_a, verts_b = check_pair(verts_a, verts_b)
    _check_threshold(threshold)
    with torch.no_grad():
        d_ab, _ = nearest_vertex(verts_a.detach(), verts_b.detach())
        d_ba, _ = nearest_vertex(verts_b.detach(), verts_a.detach())
    return d_ab < threshold, d_ba < threshold


def proximity_ratio(min_dist: Any, threshold: float = DEFAULT_PROXIMITY_THRESHOLD) -> float:
    """Fraction of samples whose two hands are closer than ``threshold`` metres (ProxRatio).

    Args:
        min_dist: [N] minimum distances in metres (e.g. from :func:`min_distance`), numpy or torch.
        threshold: metres; the default (1 cm) is this project's choice, see docs/geometry.md.
    """
    _check_threshold(threshold)
    d = torch.as_tensor(min_dist).detach()
    if d.ndim != 1 or d.numel() == 0:
        raise InputError(f"argument 'min_dist' must be a non-empty 1-D array of distances, got shape {tuple(d.shape)}")
    if not d.is_floating_point():
        raise TypeError(f"argument 'min_dist' must be floating point, got {d.dtype}")
    if not torch.isfinite(d).all() or (d < 0).any():
        raise InputError("argument 'min_dist' must hold finite, non-negative distances")
    return float((d < threshold).double().mean())


def _check_threshold(threshold: float) -> None:
    if not isinstance(threshold, (int, float)) or not math.isfinite(threshold) or threshold <= 0:
        raise InputError(f"argument 'threshold' must be a positive number of metres, got {threshold!r}")


# ---------------------------------------------------------------------------------------------------------------------
# Exact minimum vertex distance of many pairs by cluster bounds
# ---------------------------------------------------------------------------------------------------------------------

def vertex_clusters(template: torch.Tensor, num_clusters: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed partition of a mesh's vertices into clusters, for :func:`min_vertex_distance_clustered`.

    Centres are farthest-point samples of ``template`` [V, 3] (starting at vertex 0); every vertex joins its
    nearest centre on the template. Only the partition is taken from the template: the cluster radii are
    recomputed for every posed mesh, so bounds built on them are exact for any pose.

    Returns:
        centres [K] long (vertex indices) and members [K, M] long: cluster k's vertex indices, padded to the
        largest cluster size M by repeating its first member (a repeat cannot change a minimum).
    """
    if not isinstance(template, torch.Tensor) or template.ndim != 2 or template.shape[1] != 3:
        raise InputError(f"argument 'template' must be a tensor [V, 3], got "
                         f"{list(template.shape) if isinstance(template, torch.Tensor) else type(template).__name__}")
    V = template.shape[0]
    if isinstance(num_clusters, bool) or not isinstance(num_clusters, int) or not 1 <= num_clusters <= V:
        raise InputError(f"argument 'num_clusters' must be an integer in [1, {V}], got {num_clusters!r}")
    t = template.detach().double().cpu()
    centres = torch.zeros(num_clusters, dtype=torch.long)
    nearest = (t - t[0]).norm(dim=-1)
    for k in range(1, num_clusters):
        centres[k] = nearest.argmax()
        nearest = torch.minimum(nearest, (t - t[centres[k]]).norm(dim=-1))
    owner = torch.cdist(t, t[centres]).argmin(dim=1)
    owner[centres] = torch.arange(num_clusters)  # a centre always belongs to its own cluster
    groups = [torch.nonzero(owner == k, as_tuple=True)[0] for k in range(num_clusters)]
    size = max(g.numel() for g in groups)
    members = torch.stack([torch.cat([g, g[:1].expand(size - g.numel())]) for g in groups])
    return centres, members


def min_vertex_distance_clustered(
    verts_a: torch.Tensor, verts_b: torch.Tensor, clusters_a: tuple[torch.Tensor, torch.Tensor],
    clusters_b: tuple[torch.Tensor, torch.Tensor], chunk: int = 256, seed_pairs: int = 4,
    return_stats: bool = False,
):
    """Exact smallest vertex-to-vertex distance [B] (float64, metres) between two meshes per sample.

    Same value as :func:`min_distance` without faces, computed with cluster bounds instead of the full V x W
    distance matrix: with cluster centres c_i, c_j and per-sample radii r_i = max |v - c_i| over the cluster's
    vertices, every vertex pair of clusters i and j is at least |c_i - c_j| - r_i - r_j apart, and the closest
    apart. The ``seed_pairs`` cluster pairs with the smallest lower bounds are evaluated exactly first (direct
    differences, float64); their minimum U is a distance of a real vertex pair, so an upper bound. Only the
    cluster pairs whose lower bound is at most U can hold a smaller distance; they are evaluated exactly too, and
    the minimum over all evaluated pairs is the exact minimum. Vectorised over samples and cluster pairs.

    Args:
        verts_a: [B, V, 3]; verts_b: [B, W, 3] (metres).
        clusters_a, clusters_b: (centres, members) of each mesh from :func:`vertex_clusters`.
        chunk: samples per step (memory: chunk x candidate pairs x M^2 distances).
        seed_pairs: cluster pairs per sample evaluated before pruning.
        return_stats: also return the number of cluster pairs evaluated per sample [B].
    """
    verts_a, verts_b = check_pair(verts_a, verts_b)
    for name, (centres, members), verts in (("clusters_a", clusters_a, verts_a), ("clusters_b", clusters_b, verts_b)):
        if centres.ndim != 1 or members.ndim != 2 or members.shape[0] != centres.shape[0]:
            raise InputError(f"argument '{name}' must be (centres [K], members [K, M]) from vertex_clusters")
        if int(members.max()) >= verts.shape[1] or int(members.min()) < 0:
            raise InputError(f"argument '{name}' indexes vertex {int(members.max())} but the mesh has "
                             f"{verts.shape[1]} vertices")
        covered = torch.zeros(verts.shape[1], dtype=torch.bool)
        covered[members.cpu().reshape(-1)] = True
        if not covered.all():
            raise InputError(f"argument '{name}' does not cover every vertex of its mesh")
    device = verts_a.device
    ca_idx, ma = (t.to(device) for t in clusters_a)
    cb_idx, mb = (t.to(device) for t in clusters_b)
    B = verts_a.shape[0]
    out = torch.empty(B, dtype=torch.float64, device=device)
    counts = torch.empty(B, dtype=torch.long, device=device)
    with torch.no_grad():
        for s in range(0, B, chunk):
            a = verts_a[s:s + chunk].detach().double()
            b = verts_b[s:s + chunk].detach().double()
            n = a.shape[0]
            ca, cb = a[:, ca_idx], b[:, cb_idx]  # [n, K, 3]
            ra = (a[:, ma] - ca[:, :, None]).norm(dim=-1).amax(dim=-1)  # [n, K]
            rb = (b[:, mb] - cb[:, :, None]).norm(dim=-1).amax(dim=-1)
            centre_dist = (ca[:, :, None] - cb[:, None]).norm(dim=-1)  # [n, Ka, Kb]
            lower = (centre_dist - ra[:, :, None] - rb[:, None, :]).flatten(1)  # [n, Ka * Kb]
            # A tight upper bound first: the exact minimum over the few cluster pairs with the smallest lower
            # bounds (real vertex pairs), so that the pruning below keeps few cluster pairs.
            first = lower.topk(min(seed_pairs, lower.shape[1]), dim=1, largest=False).indices  # [n, S]
            rows = torch.arange(n, device=device)[:, None].expand_as(first)
            Kb = cb_idx.shape[0]
            best = _cluster_pair_min(a, b, ma, mb, rows.reshape(-1), first.reshape(-1), Kb, n)
            # Slack of 1e-12 m absorbs the rounding of the float64 bounds.
            keep = lower <= best[:, None] + 1e-12
            keep[rows, first] = False  # already evaluated
            sample, pair = torch.nonzero(keep, as_tuple=True)
            # A tighter lower bound for the survivors, still without their M x M distances: every vertex of
            # cluster i is at least |v - c_j| - r_j from every vertex of cluster j (and symmetrically).
            i, j = pair // Kb, pair % Kb
            to_cb = (a[sample[:, None], ma[i]] - cb[sample, j][:, None]).norm(dim=-1).amin(dim=1) - rb[sample, j]
            to_ca = (b[sample[:, None], mb[j]] - ca[sample, i][:, None]).norm(dim=-1).amin(dim=1) - ra[sample, i]
            survive = torch.maximum(to_cb, to_ca) <= best[sample] + 1e-12
            sample, pair = sample[survive], pair[survive]
            best = torch.minimum(best, _cluster_pair_min(a, b, ma, mb, sample, pair, Kb, n))
            out[s:s + n] = best
            counts[s:s + n] = torch.bincount(sample, minlength=n) + first.shape[1]
    return (out, counts) if return_stats else out


def _cluster_pair_min(a: torch.Tensor, b: torch.Tensor, ma: torch.Tensor, mb: torch.Tensor, sample: torch.Tensor,
                      pair: torch.Tensor, num_b: int, num_samples: int) -> torch.Tensor:
    """Per-sample minimum [n] (+inf where none) of the exact vertex distances of the listed cluster pairs
    (sample [T], pair [T] = i * num_b + j) of meshes a [n, V, 3] and b [n, W, 3] with members ma, mb."""
    best = torch.full((num_samples,), math.inf, dtype=a.dtype, device=a.device)
    step = max(1, (1 << 21) // (ma.shape[1] * mb.shape[1]))
    for t0 in range(0, sample.numel(), step):
        ss, pp = sample[t0:t0 + step], pair[t0:t0 + step]
        # Coordinate-major [3, T, M] so that each squared difference is a contiguous [T, Ma, Mb] array.
        pa = a[ss[:, None], ma[pp // num_b]].permute(2, 0, 1)  # [3, T, Ma]
        pb = b[ss[:, None], mb[pp % num_b]].permute(2, 0, 1)  # [3, T, Mb]
        d2 = (pa[0, :, :, None] - pb[0, :, None, :]).square_()
        for k in (1, 2):
            d2.add_((pa[k, :, :, None] - pb[k, :, None, :]).square_())
        d2 = d2.flatten(1).amin(dim=1)
        best = best.scatter_reduce(0, ss, d2.sqrt(), reduce="amin")
    return best
