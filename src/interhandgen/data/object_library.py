"""An object library stored in a TwoHandSet file: closed meshes and convex parts, numpy arrays only.

M objects, in their own frames (metres). In the ``.npz`` (see docs/data.md), meshes and parts are concatenated
with offsets (nothing pickled):

- ``object_library_names`` [M] str (equal to the set's ``object_names``), ``object_library_family`` [M] str,
  ``object_library_params`` [M] str (a JSON object per object: the family's parameters, metres);
- ``object_library_vertices`` [sum V, 3] float64 and ``object_library_vertex_offsets`` [M + 1] int64;
- ``object_library_faces`` [sum F, 3] int64 (indices local to the object) and ``object_library_face_offsets``
  [M + 1];
- ``object_library_part_points`` [sum K, 3] float64 and ``object_library_part_offsets`` [P + 1] int64 (one
  point set per convex part), ``object_library_part_object`` [P] int64 (the object each part belongs to).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Sequence

import numpy as np

from interhandgen.exceptions import InputError

__all__ = ["ObjectLibrary", "LIBRARY_KEYS"]

LIBRARY_KEYS = ("object_library_names", "object_library_family", "object_library_params", "object_library_vertices",
                "object_library_vertex_offsets", "object_library_faces", "object_library_face_offsets",
                "object_library_part_points", "object_library_part_offsets", "object_library_part_object")


@dataclasses.dataclass(frozen=True, eq=False)
class ObjectLibrary:
    """Meshes, families, parameters and convex parts of M named objects (see the module docstring)."""

    names: tuple
    families: tuple
    params: tuple  # JSON strings
    vertices: tuple  # M arrays [V_i, 3] float64
    faces: tuple  # M arrays [F_i, 3] int64
    parts: tuple  # M tuples of [K, 3] float64 arrays

    def __post_init__(self) -> None:
        m = len(self.names)
        for field in ("families", "params", "vertices", "faces", "parts"):
            if len(getattr(self, field)) != m:
                raise InputError(f"object library: '{field}' has {len(getattr(self, field))} entries for {m} names")
        if len(set(self.names)) != m:
            raise InputError("object library: names must be distinct")
        for i, (v, f) in enumerate(zip(self.vertices, self.faces)):
            if v.ndim != 2 or v.shape[1] != 3 or not np.isfinite(v).all():
                raise InputError(f"object library: vertices of object {i} ({self.names[i]}) must be finite [V, 3]")
            if f.ndim != 2 or f.shape[1] != 3 or len(f) == 0 or f.min() < 0 or f.max() >= len(v):
                raise InputError(f"object library: faces of object {i} ({self.names[i]}) must be [F, 3] indices "
                                 f"into its {len(v)} vertices")
            for p in self.parts[i]:
                if p.ndim != 2 or p.shape[1] != 3 or len(p) < 4 or not np.isfinite(p).all():
                    raise InputError(f"object library: a convex part of object {i} ({self.names[i]}) must be "
                                     "finite [K >= 4, 3]")
            try:
                json.loads(self.params[i])
            except json.JSONDecodeError:
                raise InputError(f"object library: params of object {i} ({self.names[i]}) are not JSON") from None

    def __len__(self) -> int:
        return len(self.names)

    @classmethod
    def from_meshes(cls, names: Sequence[str], meshes: Sequence) -> "ObjectLibrary":
        """From :class:`interhandgen.objects.library.ObjectMesh` objects (or anything with family, params,
        vertices, faces and parts)."""
        return cls(tuple(str(n) for n in names), tuple(m.family for m in meshes),
                   tuple(json.dumps(m.params, sort_keys=True) for m in meshes),
                   tuple(np.asarray(m.vertices, dtype=np.float64) for m in meshes),
                   tuple(np.asarray(m.faces, dtype=np.int64) for m in meshes),
                   tuple(tuple(np.asarray(p, dtype=np.float64) for p in m.parts) for m in meshes))

    def index(self, name: str) -> int:
        return self.names.index(name)

    def same_object(self, i: int, other: "ObjectLibrary", j: int) -> bool:
        return (self.families[i] == other.families[j] and self.params[i] == other.params[j]
                and np.array_equal(self.vertices[i], other.vertices[j]) and np.array_equal(self.faces[i], other.faces[j]))

    def take(self, keep: Sequence[int]) -> "ObjectLibrary":
        keep = [int(k) for k in keep]
        return ObjectLibrary(*(tuple(getattr(self, f)[k] for k in keep) for f in
                               ("names", "families", "params", "vertices", "faces", "parts")))

    def to_arrays(self) -> dict[str, np.ndarray]:
        def offsets(arrays):
            return np.concatenate([[0], np.cumsum([len(a) for a in arrays])]).astype(np.int64)

        parts = [p for ps in self.parts for p in ps]
        owner = np.concatenate([np.full(len(ps), i, dtype=np.int64) for i, ps in enumerate(self.parts)]) \
            if parts else np.zeros(0, dtype=np.int64)
        return {
            "object_library_names": np.array(self.names, dtype=str),
            "object_library_family": np.array(self.families, dtype=str),
            "object_library_params": np.array(self.params, dtype=str),
            "object_library_vertices": np.concatenate(self.vertices).astype(np.float64),
            "object_library_vertex_offsets": offsets(self.vertices),
            "object_library_faces": np.concatenate(self.faces).astype(np.int64),
            "object_library_face_offsets": offsets(self.faces),
            "object_library_part_points": (np.concatenate(parts) if parts else np.zeros((0, 3))).astype(np.float64),
            "object_library_part_offsets": offsets(parts),
            "object_library_part_object": owner,
        }

    @classmethod
    def from_arrays(cls, z, source: str) -> "ObjectLibrary":
        """Read the library keys of an open .npz (``z``); errors name ``source`` and the field."""
        missing = [k for k in LIBRARY_KEYS if k not in z]
        if missing:
            raise InputError(f"{source}: object library field(s) {missing} missing")
        a = {k: z[k] for k in LIBRARY_KEYS}
        for k in ("object_library_names", "object_library_family", "object_library_params"):
            if a[k].ndim != 1 or a[k].dtype.kind != "U":
                raise InputError(f"{source}: field '{k}' must be a 1-D string array, got {a[k].dtype} {list(a[k].shape)}")
        m = len(a["object_library_names"])

        def split(values, offs_key, count, kind, width):
            offs = a[offs_key]
            if offs.ndim != 1 or offs.dtype.kind not in "iu" or len(offs) != count + 1 or offs[0] != 0 \
                    or (np.diff(offs) < 0).any() or offs[-1] != len(values):
                raise InputError(f"{source}: field '{offs_key}' must be {count + 1} non-decreasing offsets from 0 to "
                                 f"{len(values)}")
            if values.ndim != 2 or values.shape[1] != width or values.dtype.kind not in kind:
                raise InputError(f"{source}: object library array for '{offs_key}' has dtype {values.dtype} and "
                                 f"shape {list(values.shape)}, expected [K, {width}]")
            return [values[offs[i]:offs[i + 1]] for i in range(count)]

        verts = split(a["object_library_vertices"], "object_library_vertex_offsets", m, "f", 3)
        faces = split(a["object_library_faces"], "object_library_face_offsets", m, "iu", 3)
        owner = a["object_library_part_object"]
        if owner.ndim != 1 or owner.dtype.kind not in "iu" or (len(owner) and (owner.min() < 0 or owner.max() >= m)):
            raise InputError(f"{source}: field 'object_library_part_object' must hold object indices in [0, {m})")
        points = split(a["object_library_part_points"], "object_library_part_offsets", len(owner), "f", 3)
        parts = tuple(tuple(p.astype(np.float64) for p, o in zip(points, owner) if o == i) for i in range(m))
        try:
            return cls(tuple(a["object_library_names"].tolist()), tuple(a["object_library_family"].tolist()),
                       tuple(a["object_library_params"].tolist()), tuple(v.astype(np.float64) for v in verts),
                       tuple(f.astype(np.int64) for f in faces), parts)
        except InputError as exc:
            raise InputError(f"{source}: {exc}") from None
