"""Synthetic meshes with known geometry for tests and benchmarks of the geometry module.

* :func:`open_tube`: a capped cylinder with one end left open (one boundary loop, like MANO's wrist).
* :func:`blob_topology` / :func:`blob_pairs`: smooth, star-shaped, hand-sized deformed ellipsoids with a
  fixed closed topology (1538 vertices, 3072 faces), placed in pairs that touch or overlap.

All lengths in metres. Deterministic for a given seed.
"""

from __future__ import annotations

import numpy as np

__all__ = ["open_tube", "blob_topology", "blob_pairs", "BLOB_SEMI_AXES"]

#: Semi-axes (metres) of the blob ellipsoid: roughly a flat hand (18 x 9 x 3 cm).
BLOB_SEMI_AXES = (0.09, 0.045, 0.015)


def open_tube(radius: float = 0.01, length: float = 0.05, sections: int = 16, rings: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Cylinder along +z, closed at z=0 by a fan around a centre vertex, open at z=length.

    Returns:
        verts [sections * rings + 1, 3] float64, faces [F, 3] int64, outward-oriented; the boundary loop
        at z=length has ``sections`` edges.
    """
    angles = 2.0 * np.pi * np.arange(sections) / sections
    z = np.linspace(0.0, length, rings)
    ring = np.stack([radius * np.cos(angles), radius * np.sin(angles)], axis=1)
    verts = np.concatenate([
        np.concatenate([np.repeat(ring[None], rings, 0), np.repeat(z[:, None, None], sections, 1)], axis=2).reshape(-1, 3),
        np.zeros((1, 3)),
    ])
    centre = sections * rings
    faces = []
    for r in range(rings - 1):
        for s in range(sections):
            a, b = r * sections + s, r * sections + (s + 1) % sections
            c, d = a + sections, b + sections
            faces += [[a, b, d], [a, d, c]]
    for s in range(sections):
        faces.append([centre, (s + 1) % sections, s])
    return verts, np.asarray(faces, dtype=np.int64)


def blob_topology() -> tuple[np.ndarray, np.ndarray]:
    """Unit-sphere vertices [1538, 3] and faces [3072, 3] (a UV sphere, watertight and outward-oriented)."""
    import trimesh

    sphere = trimesh.creation.uv_sphere(radius=1.0, count=[26, 32])
    sphere.merge_vertices()
    verts = np.asarray(sphere.vertices, dtype=np.float64)
    faces = np.asarray(sphere.faces, dtype=np.int64)
    return verts, faces


def _random_rotations(rng: np.random.Generator, n: int) -> np.ndarray:
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
        2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
        2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
    ], axis=1).reshape(n, 3, 3)


def _blobs(rng: np.random.Generator, unit: np.ndarray, n: int) -> np.ndarray:
    """n deformed ellipsoids centred at the origin: radial bumps of a few low-frequency harmonics."""
    freqs = rng.normal(size=(n, 4, 3)) * 2.0
    phases = rng.uniform(0, 2 * np.pi, size=(n, 4))
    amps = rng.uniform(0.0, 0.08, size=(n, 4))
    bump = (amps[:, None, :] * np.sin(np.einsum("vc,nkc->nvk", unit, freqs) + phases[:, None, :])).sum(-1)
    radial = 1.0 + bump  # >= 0.68: the surface stays star-shaped, hence free of self-intersections
    return unit[None] * radial[..., None] * np.asarray(BLOB_SEMI_AXES)


def _vertex_normals_np(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    tri = verts[:, faces]
    n = np.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0])
    acc = np.zeros_like(verts)
    for k in range(3):
        np.add.at(acc, (slice(None), faces[:, k]), n)
    return acc / np.linalg.norm(acc, axis=-1, keepdims=True)


def blob_pairs(batch: int, seed: int = 0, overlap: float = 0.01) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of randomly rotated blobs placed in contact, most of them interpenetrating.

    A random vertex p of blob a with normal n is picked; blob b is translated so that its extreme vertex
    in direction -n sits on p (the two surfaces then touch, tangent to the same plane), then pushed along
    -n by a random depth in [-overlap/4, overlap] metres (negative = a small gap). About 80% of the pairs
    interpenetrate (up to about ``overlap`` deep) and the rest nearly touch, as in generated two-hand samples.

    Returns:
        verts_a [batch, 1538, 3], verts_b [batch, 1538, 3] float64 in metres, and the shared faces [3072, 3].
    """
    if not overlap >= 0:
        raise ValueError(f"argument 'overlap' must be a non-negative depth in metres, got {overlap!r}")
    rng = np.random.default_rng(seed)
    unit, faces = blob_topology()
    a = np.einsum("nij,nvj->nvi", _random_rotations(rng, batch), _blobs(rng, unit, batch))
    b = np.einsum("nij,nvj->nvi", _random_rotations(rng, batch), _blobs(rng, unit, batch))
    rows = np.arange(batch)
    pick = rng.integers(0, unit.shape[0], size=batch)
    contact = a[rows, pick]
    normal = _vertex_normals_np(a, faces)[rows, pick]
    support = b[rows, np.einsum("nvc,nc->nv", b, normal).argmin(axis=1)]
    depth = rng.uniform(-overlap / 4, overlap, size=batch)
    offset = contact - support - depth[:, None] * normal
    return a, b + offset[:, None, :], faces
