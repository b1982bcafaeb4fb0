"""The object-conditioned model's frame and the object's surface samples (encoder input, guidance).

**Object frame** (docs/objects_model.md, with a figure): the origin at the object's centre of mass (the library
frame's origin, placed in the world by ``object_pose``), the axes of the WORLD frame (gravity along -z). Why:
p(x_anchor | O) needs a frame in which the anchor's pose relative to the object is defined, so the anchor hand
can no longer be the frame itself; keeping the world's axes (instead of the object's own axes) keeps gravity fixed
in the frame, and whether a grasp holds depends on where "down" is (a palm under a bowl holds it, above it does
not). The object's orientation reaches the network through its surface points, expressed in this frame.

A pair with an object is the usual canonical vector pair x [N, 2, 64] (docs/data.md) with ONE change: the anchor's
rotation/translation slots hold its root rotation R_a and centre joint J_a - c in the object frame (c the object's
centre, world), instead of the identity and zero. The other hand stays relative to the anchor
(R_a^T R_o, R_a^T (J_o - J_a)), exactly as without an object, so the object-free model's conditional stage and the
object model's share one representation, and :func:`interhandgen.data.canonical.to_world` decodes both with
``anchor_world = (R_a, J_a)``.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Mapping, NamedTuple

import numpy as np
import torch

from interhandgen.data.canonical import IDENTITY_ROT6D, ROT_SLICE, TRANSL_SLICE, mirror, to_canonical
from interhandgen.data.format import TwoHandSet
from interhandgen.exceptions import InputError
from interhandgen.objects.grasps import surface_samples as grasp_surface_samples
from interhandgen.rotations import axis_angle_to_matrix, matrix_to_rot6d, rot6d_to_matrix

__all__ = ["SURFACE_POINTS", "surface_samples", "ObjectFramePairs", "to_object_frame", "object_frame_training_arrays",
           "anchor_world_pose", "rotate_about_z", "canonical_anchor_tail", "family_orientations"]

#: Surface points (with normals) per object given to the object encoder.
SURFACE_POINTS = 256
_MIRROR = torch.tensor([-1.0, 1.0, 1.0])


def surface_samples(vertices: np.ndarray, faces: np.ndarray, num: int = SURFACE_POINTS, seed: int = 0) -> np.ndarray:
    """[num, 6] area-weighted surface points (metres) and outward unit face normals of a closed mesh, deterministic
    for (mesh, num, seed): the grasp generator's sampler (:func:`interhandgen.objects.grasps.surface_samples`)
    with a generator seeded by ``seed``."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3 or len(f) == 0:
        raise InputError(f"surface_samples: expected vertices [V, 3] and faces [F, 3], got {v.shape} and {f.shape}")
    if num < 1:
        raise InputError(f"surface_samples: num must be >= 1, got {num}")
    pts, nrm = grasp_surface_samples(SimpleNamespace(vertices=v, faces=f), int(num), np.random.default_rng(seed))
    return np.concatenate([pts, nrm], axis=1)


class ObjectFramePairs(NamedTuple):
    """Result of :func:`to_object_frame`.

    x: [N, 2, 64] canonical vectors with the anchor's slots in the object frame (module docstring).
    points: [N, P, 6] the object's surface points and normals in the object frame (None when not asked for).
    center: [N, 3] the object's centre (world, metres): world = object frame + center.
    """

    x: torch.Tensor
    points: torch.Tensor | None
    center: torch.Tensor


def _library_samples(two_hands: TwoHandSet, num_points: int) -> list[np.ndarray]:
    lib = two_hands.object_library
    return [surface_samples(lib.vertices[i], lib.faces[i], num_points) for i in range(len(lib))]


def to_object_frame(two_hands: TwoHandSet, models: Mapping | None = None, num_points: int = SURFACE_POINTS,
                    dtype: torch.dtype = torch.float64, points: bool = True) -> ObjectFramePairs:
    """Pairs with an object library -> object-frame vectors, the objects' surface samples (``points`` False: None,
    for callers that need only the vectors) and centres."""
    if two_hands.object_library is None or two_hands.object_pose is None:
        raise InputError("to_object_frame: the set has no object library (fields 'object_library_*', 'object_pose')")
    if np.any(two_hands.object_pose[:, 0] != 0.0):
        raise InputError("field 'object_pose': articulated objects (articulation != 0) are not library objects")
    can = to_canonical(two_hands, models, anchor="left", dtype=torch.float64)
    pose = torch.as_tensor(two_hands.object_pose, dtype=torch.float64)
    R_obj = axis_angle_to_matrix(pose[:, 1:4])
    center = pose[:, 4:7]
    x = can.x.clone()
    x[:, 0, ROT_SLICE] = matrix_to_rot6d(can.anchor_rotation)
    x[:, 0, TRANSL_SLICE] = can.anchor_center - center
    if not points:
        return ObjectFramePairs(x.to(dtype), None, center.to(dtype))
    samples = torch.as_tensor(np.stack(_library_samples(two_hands, num_points)))  # [M, P, 6]
    ids = torch.as_tensor(two_hands.labels["object_id"][0], dtype=torch.long)
    local = samples[ids]
    pts = torch.einsum("nij,npj->npi", R_obj, local[..., :3])
    nrm = torch.einsum("nij,npj->npi", R_obj, local[..., 3:])
    return ObjectFramePairs(x.to(dtype), torch.cat([pts, nrm], -1).to(dtype), center.to(dtype))


def object_frame_training_arrays(two_hands: TwoHandSet, split: str | None = "train", mirror_augment: bool = False,
                                 models: Mapping | None = None, num_points: int = SURFACE_POINTS
                                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 (x [N, 2, 64], points [N, P, 6]) of one split, for the trainer; ``mirror_augment`` appends the
    mirrored pairs (sides swapped; the object's points mirrored in x = 0, which is what
    :func:`interhandgen.data.canonical.mirror` does to ``object_pose`` for a template mirrored in x = 0)."""
    if split is not None:
        if "split" not in two_hands.labels:
            raise InputError(f"split {split!r} requested but the set has no 'split' field")
        two_hands = two_hands.select_split(split)
    if len(two_hands) == 0:
        raise InputError(f"split {split!r} is empty")
    models = models or two_hands.hand_models()
    pairs = to_object_frame(two_hands, models, num_points)
    x, points = pairs.x, pairs.points
    if mirror_augment:
        mirrored = to_object_frame(mirror(two_hands, models), models, num_points, points=False)
        m = torch.cat([_MIRROR, _MIRROR]).to(points)
        x = torch.cat([x, mirrored.x])
        points = torch.cat([points, points * m])  # the mirrored template's samples are the mirrored samples
    return x.float(), points.float()


def anchor_world_pose(x: torch.Tensor, center: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(R_a [N, 3, 3], J_a [N, 3]) world anchor pose of object-frame vectors x [N, 2, 64] and centres [N, 3] or
    [3], for :func:`interhandgen.data.canonical.to_world`."""
    x = x.to(torch.float64)
    return rot6d_to_matrix(x[:, 0, ROT_SLICE]), x[:, 0, TRANSL_SLICE] + center.to(x).expand(x.shape[0], 3)


def canonical_anchor_tail(like: torch.Tensor) -> torch.Tensor:
    """[9] the anchor's slots without an object: identity 6D rotation, zero translation."""
    return torch.tensor([*IDENTITY_ROT6D, 0.0, 0.0, 0.0], dtype=like.dtype, device=like.device)


def rotate_about_z(x_anchor_rigid: torch.Tensor, points: torch.Tensor, angle: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn a scene about the world z axis (through the object's centre): gravity is unchanged, so the rotated
    grasp is as valid as the original.

    Args: x_anchor_rigid [B, 9] (6D rotation, translation of the anchor in the object frame), points [B, P, 6],
        angle [B] radians. Returns the rotated (x_anchor_rigid, points). The other hand, relative to the anchor,
        does not change.
    """
    c, s = torch.cos(angle), torch.sin(angle)
    zero, one = torch.zeros_like(c), torch.ones_like(c)
    Rz = torch.stack([c, -s, zero, s, c, zero, zero, zero, one], -1).reshape(-1, 3, 3).to(points)
    rot = x_anchor_rigid[:, :6].reshape(-1, 2, 3)  # the two columns
    rot = torch.einsum("bij,bkj->bki", Rz, rot).reshape(-1, 6)
    tr = torch.einsum("bij,bj->bi", Rz, x_anchor_rigid[:, 6:9])
    p = torch.einsum("bij,bpj->bpi", Rz, points[..., :3])
    n = torch.einsum("bij,bpj->bpi", Rz, points[..., 3:])
    return torch.cat([rot, tr], 1), torch.cat([p, n], -1)



def family_orientations(two_hands: TwoHandSet, max_per_family: int = 64) -> dict[str, list[list[float]]]:
    """Per object family, up to ``max_per_family`` world rotations (axis-angle, rounded to 1e-6) of the set's
    objects, in the set's order: what an object model records to place a new object of a family as the training
    objects were placed (``sample --object-family``)."""
    if two_hands.object_library is None or two_hands.object_pose is None:
        raise InputError("family_orientations: the set has no object library")
    fams = np.asarray(two_hands.object_library.families)[two_hands.labels["object_id"][0]]
    out: dict[str, list[list[float]]] = {}
    for fam, aa in zip(fams.tolist(), two_hands.object_pose[:, 1:4]):
        rows = out.setdefault(str(fam), [])
        if len(rows) < max_per_family:
            rows.append([round(float(a), 6) for a in aa])
    return dict(sorted(out.items()))
