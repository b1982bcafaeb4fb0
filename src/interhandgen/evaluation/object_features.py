"""Object inputs of the object-aware evaluator: surface points of each pair's object in the left hand's canonical
frame (the evaluator's frame), and the object numbers it learns to regress beside the hands' parameters.

Surface points: per library object, ``4 Q`` area-weighted random points on its triangles (numpy Generator with a
fixed seed) reduced to ``Q`` by farthest-point sampling, so they are a deterministic function of the mesh (the
same object in two files gets the same points). Per pair they are placed by ``object_pose`` (world = R v + t) and
brought into the canonical frame of the left hand: p_c = R_a^T (p_w - J_a), with R_a, J_a from
:func:`interhandgen.data.canonical.to_canonical` (the same transform as the hands).

Regression targets of the object (12 numbers): the object's rotation in the canonical frame (R_a^T R_o, 6D), the
centroid of its surface points in the canonical frame (metres) and the extents of its mesh's bounding box in its
own frame, sorted (metres).
"""

from __future__ import annotations

import numpy as np
import torch

from interhandgen.data.canonical import to_canonical
from interhandgen.exceptions import InputError
from interhandgen.geometry.points import farthest_point_sample
from interhandgen.objects.metrics import require_objects
from interhandgen.rotations import axis_angle_to_matrix, matrix_to_rot6d

__all__ = ["OBJECT_POINTS", "OBJECT_TARGETS", "object_surface_points", "canonical_object_points"]

#: Object surface points given to an object-aware evaluator (the hands give 2 x 128).
OBJECT_POINTS = 128
#: Regressed object numbers: rotation 6D, centroid 3, sorted extents 3.
OBJECT_TARGETS = 12
_SURFACE_SEED = 0


def object_surface_points(vertices: np.ndarray, faces: np.ndarray, num_points: int) -> np.ndarray:
    """[num_points, 3] well-spread points on the surface of a mesh (vertices [V, 3], faces [F, 3]), deterministic."""
    v = np.asarray(vertices, dtype=np.float64)
    tri = v[np.asarray(faces, dtype=np.int64)]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    if not area.sum() > 0:
        raise InputError("object mesh has zero surface area; cannot sample surface points")
    rng = np.random.default_rng(_SURFACE_SEED)
    dense = 4 * num_points
    face = rng.choice(len(tri), size=dense, p=area / area.sum())
    u, w = rng.random((2, dense))
    flip = u + w > 1.0
    u[flip], w[flip] = 1.0 - u[flip], 1.0 - w[flip]
    pts = tri[face, 0] + u[:, None] * (tri[face, 1] - tri[face, 0]) + w[:, None] * (tri[face, 2] - tri[face, 0])
    idx = farthest_point_sample(torch.as_tensor(pts)[None], num_points)[0].numpy()
    return pts[idx]


def canonical_object_points(two_hands, models, num_points: int = OBJECT_POINTS, device="cpu",
                            name: str = "the set", with_targets: bool = False):
    """Object surface points [N, Q, 3] (float32, metres) of every pair in the left hand's canonical frame.

    ``with_targets``: also return the object's regression targets [N, 12] (see the module docstring).
    """
    library = require_objects(two_hands, name)
    can = to_canonical(two_hands, models, anchor="left", device=device, dtype=torch.float64)
    Ra, Ja = can.anchor_rotation.cpu().numpy(), can.anchor_center.cpu().numpy()
    pose = np.asarray(two_hands.object_pose, dtype=np.float64)
    Ro = axis_angle_to_matrix(torch.as_tensor(pose[:, 1:4])).numpy()
    local = np.empty((len(two_hands), num_points, 3))
    extents = np.empty((len(two_hands), 3))
    for k in np.unique(two_hands.object_id):
        rows = two_hands.object_id == k
        local[rows] = object_surface_points(library.vertices[k], library.faces[k], num_points)
        v = library.vertices[k]
        extents[rows] = np.sort(v.max(0) - v.min(0))[::-1]
    world = np.einsum("nij,nqj->nqi", Ro, local) + pose[:, None, 4:7]
    canon = np.einsum("nji,nqj->nqi", Ra, world - Ja[:, None, :])
    points = torch.as_tensor(canon, dtype=torch.float32)
    if not with_targets:
        return points
    rot = matrix_to_rot6d(torch.as_tensor(np.einsum("nji,njk->nik", Ra, Ro))).numpy()
    targets = np.concatenate([rot, canon.mean(1), extents], axis=1)
    return points, torch.as_tensor(targets, dtype=torch.float32)
