"""Validity checks of triangle meshes: closed, manifold, consistently oriented outward, self-intersection free.

Pure numpy (plus trimesh for the reference closed-mesh properties). Vertices [V, 3] float, faces [F, 3] int.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.spatial import cKDTree
from interhandgen.exceptions import InputError


def _as_mesh(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces)
    if v.ndim != 2 or v.shape[1] != 3:
        raise InputError(f"vertices must have shape [V, 3], got {list(v.shape)}")
    if f.ndim != 2 or f.shape[1] != 3 or f.dtype.kind not in "iu":
        raise InputError(f"faces must be an integer array of shape [F, 3], got {list(f.shape)} {f.dtype}")
    if len(f) and (f.min() < 0 or f.max() >= len(v)):
        raise InputError(f"faces index vertices outside [0, {len(v)})")
    if not np.isfinite(v).all():
        raise InputError("vertices contain NaN or inf")
    return v, f.astype(np.int64)


@dataclasses.dataclass
class ClosedMeshReport:
    """Result of :func:`closed_mesh_report`. volume in m^3 (signed; > 0 means outward-facing normals)."""

    edge_manifold: bool  # every undirected edge is used by exactly two faces
    oriented: bool  # the two faces of every edge traverse it in opposite directions
    watertight: bool  # trimesh.is_watertight
    winding_consistent: bool  # trimesh.is_winding_consistent
    volume: float
    euler_characteristic: int
    components: int
    vertex_manifold: bool  # the faces around every vertex form one fan (no pinched vertices)

    @property
    def ok(self) -> bool:
        return (self.edge_manifold and self.oriented and self.watertight and self.winding_consistent
                and self.vertex_manifold and self.volume > 0)


def closed_mesh_report(vertices: np.ndarray, faces: np.ndarray) -> ClosedMeshReport:
    """Closedness, manifoldness and orientation of a triangle mesh, from our own edge counts and trimesh's."""
    import trimesh

    v, f = _as_mesh(vertices, faces)
    directed = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    undirected = np.sort(directed, axis=1)
    _, counts = np.unique(undirected, axis=0, return_counts=True)
    edge_manifold = bool(np.all(counts == 2))
    _, dcounts = np.unique(directed, axis=0, return_counts=True)
    oriented = bool(edge_manifold and np.all(dcounts == 1))
    # Vertex manifold: around each vertex, the opposite edges of its faces form a single cycle.
    vertex_manifold = edge_manifold and _fans_are_single_cycles(f, len(v))
    mesh = trimesh.Trimesh(v, f, process=False)
    n_comp = int(len(trimesh.graph.connected_components(mesh.face_adjacency, nodes=np.arange(len(f))))) if len(f) else 0
    used = np.unique(f)
    euler = len(used) - len(counts) + len(f)
    return ClosedMeshReport(
        edge_manifold=edge_manifold,
        oriented=oriented,
        watertight=bool(mesh.is_watertight),
        winding_consistent=bool(mesh.is_winding_consistent),
        volume=float(mesh.volume),
        euler_characteristic=int(euler),
        components=n_comp,
        vertex_manifold=bool(vertex_manifold),
    )


def _fans_are_single_cycles(f: np.ndarray, num_verts: int) -> bool:
    """Each vertex's link (edges opposite to it) must be one cycle: #link edges == #link vertices, connected."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    # link edges of vertex a in face (a, b, c) are (b, c); label link vertices by (a, b) pairs.
    centre = np.concatenate([f[:, 0], f[:, 1], f[:, 2]])
    p = np.concatenate([f[:, 1], f[:, 2], f[:, 0]])
    q = np.concatenate([f[:, 2], f[:, 0], f[:, 1]])
    keys_p = centre * num_verts + p
    keys_q = centre * num_verts + q
    uniq, inv = np.unique(np.concatenate([keys_p, keys_q]), return_inverse=True)
    n = len(uniq)
    a, b = inv[: len(keys_p)], inv[len(keys_p):]
    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n))
    ncomp, _ = connected_components(graph, directed=False)
    # Links of different vertices share no node, so a manifold has exactly one component per used vertex.
    return bool(ncomp == len(np.unique(centre)))


def _orient(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Sign-bearing determinant det[b - a, c - a, d - a] for batches [N, 3] (positive: d above abc)."""
    return np.einsum("ij,ij->i", np.cross(b - a, c - a), d - a)


def _segments_cross_triangles(p: np.ndarray, q: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """[N] bool: segment pq crosses the interior of triangle abc (strict, touching and coplanar cases False)."""
    o1 = _orient(a, b, c, p)
    o2 = _orient(a, b, c, q)
    s1 = _orient(p, q, a, b)
    s2 = _orient(p, q, b, c)
    s3 = _orient(p, q, c, a)
    straddle = o1 * o2 < 0
    same = ((s1 > 0) & (s2 > 0) & (s3 > 0)) | ((s1 < 0) & (s2 < 0) & (s3 < 0))
    return straddle & same


def candidate_pairs(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """[K, 2] pairs (i < j) of faces sharing no vertex whose axis-aligned bounding boxes overlap."""
    v, f = _as_mesh(vertices, faces)
    tri = v[f]
    lo, hi = tri.min(1), tri.max(1)
    centre = 0.5 * (lo + hi)
    half = 0.5 * (hi - lo)
    radius = 2.0 * float(np.linalg.norm(half, axis=1).max()) + 1e-12
    pairs = cKDTree(centre).query_pairs(radius, output_type="ndarray")
    if len(pairs) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    i, j = pairs[:, 0], pairs[:, 1]
    overlap = np.all((lo[i] <= hi[j]) & (lo[j] <= hi[i]), axis=1)
    i, j = i[overlap], j[overlap]
    share = (f[i][:, :, None] == f[j][:, None, :]).any(axis=(1, 2))
    keep = ~share
    out = np.stack([i[keep], j[keep]], 1)
    out.sort(axis=1)
    return out[np.lexsort((out[:, 1], out[:, 0]))]


def self_intersections(vertices: np.ndarray, faces: np.ndarray, chunk: int = 200_000) -> np.ndarray:
    """[K, 2] pairs of non-adjacent faces (no shared vertex) that intersect.

    Two triangles in general position intersect iff an edge of one crosses the other (the intersection
    segment ends on such crossings), so each candidate pair from :func:`candidate_pairs` is tested with the
    six segment-triangle orientation tests. The predicates are evaluated in float64 with no tolerance;
    exactly touching or coplanar configurations count as not intersecting.
    """
    v, f = _as_mesh(vertices, faces)
    pairs = candidate_pairs(v, f)
    hits = []
    for s in range(0, len(pairs), chunk):
        i, j = pairs[s : s + chunk, 0], pairs[s : s + chunk, 1]
        ti, tj = v[f[i]], v[f[j]]
        hit = np.zeros(len(i), dtype=bool)
        for e0, e1 in ((0, 1), (1, 2), (2, 0)):
            hit |= _segments_cross_triangles(ti[:, e0], ti[:, e1], tj[:, 0], tj[:, 1], tj[:, 2])
            hit |= _segments_cross_triangles(tj[:, e0], tj[:, e1], ti[:, 0], ti[:, 1], ti[:, 2])
        hits.append(pairs[s : s + chunk][hit])
    return np.concatenate(hits) if hits else np.zeros((0, 2), dtype=np.int64)


def has_self_intersection(vertices: np.ndarray, faces: np.ndarray) -> bool:
    return bool(len(self_intersections(vertices, faces)))
