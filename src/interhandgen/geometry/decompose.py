"""Convex parts of a closed mesh, for the MuJoCo stability test (MuJoCo collides convex shapes only: a mesh geom is
replaced by its convex hull, which fills a mug's handle hole or a bowl's inside).

A mesh whose convex hull exceeds its volume by at most :data:`CONVEX_TOLERANCE` is its own single part. Any other
mesh is cut into convex parts by CoACD (Wei et al., SIGGRAPH 2022; the ``coacd`` package, ``pip install
'interhandgen[physics]'``), deterministic for a given seed. CoACD approximates: its parts' hulls may stand out
of the mesh by up to about ``threshold`` times the mesh's bounding-box diagonal (its concavity measure), so the
decomposed object is slightly fuller than the mesh; the procedural objects of :mod:`interhandgen.objects.library`
carry exact parts instead and never come here.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import ConvexHull

from interhandgen.exceptions import InputError

__all__ = ["CONVEX_TOLERANCE", "hull_excess", "convex_parts", "require_coacd"]

#: Relative volume excess of the convex hull over the mesh below which a mesh is taken as convex (one part).
CONVEX_TOLERANCE = 1e-3


def require_coacd():
    """The ``coacd`` module, or ImportError naming the extra that installs it."""
    try:
        import coacd
    except ImportError as exc:
        raise ImportError("cutting a non-convex mesh into convex parts needs CoACD: pip install "
                          f"'interhandgen[physics]' (or pip install coacd) [{exc}]") from None
    return coacd


def _mesh_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Enclosed volume of a closed, outward-oriented triangle mesh (divergence theorem)."""
    a, b, c = (vertices[faces[:, k]] for k in range(3))
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def _closed(faces: np.ndarray) -> bool:
    """Every edge is shared by exactly two faces (an open or non-manifold mesh, e.g. a scanned template, has no
    volume to compare with its hull; CoACD's own preprocessing makes it manifold)."""
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    return bool((counts == 2).all())


def hull_excess(vertices: np.ndarray, faces: np.ndarray) -> float:
    """(volume of the convex hull - volume of the mesh) / volume of the mesh, for a closed outward-oriented mesh
    ``vertices`` [V, 3], ``faces`` [F, 3]; 0 for a convex mesh."""
    v = np.asarray(vertices, dtype=np.float64)
    volume = _mesh_volume(v, np.asarray(faces, dtype=np.int64))
    if not volume > 0:
        raise InputError(f"the mesh encloses no positive volume ({volume:.3g} m^3): it must be closed, with its faces "
                         "oriented outwards")
    return (ConvexHull(v).volume - volume) / volume


def convex_parts(vertices: np.ndarray, faces: np.ndarray, threshold: float = 0.05, seed: int = 0
                 ) -> tuple[np.ndarray, ...]:
    """Convex parts (point sets [K_i, 3], float64, the mesh's frame) whose hulls' union covers the mesh.

    One part, the mesh's own vertices, when the mesh is closed and convex within :data:`CONVEX_TOLERANCE`;
    otherwise (an open mesh too) CoACD's parts at concavity ``threshold`` (CoACD's default 0.05; smaller: more,
    tighter parts) with ``seed``. Raises
    ImportError (with the install hint) when a non-convex mesh meets a missing ``coacd``.
    """
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    if _closed(f) and hull_excess(v, f) <= CONVEX_TOLERANCE:
        return (v.copy(),)
    if not 0 < threshold < 1:
        raise InputError(f"threshold must be in (0, 1) (CoACD's concavity, relative to the mesh's size), got {threshold}")
    coacd = require_coacd()
    coacd.set_log_level("error")
    pieces = coacd.run_coacd(coacd.Mesh(v, f), threshold=threshold, seed=seed)
    parts = tuple(np.asarray(p[0], dtype=np.float64) for p in pieces)
    if not parts or any(len(p) < 4 for p in parts):
        raise RuntimeError(f"CoACD returned {len(parts)} parts, some with fewer than 4 vertices")
    return parts
