"""ARCTIC's articulated object templates and their placement, exactly as ARCTIC's object layer does it.

Facts (zc-alexfan/arctic, ``common/object_tensors.py`` and ``docs/data/data_doc.md``; read, not copied):

- A template is the folder ``meta/object_vtemplates/<name>/`` with ``mesh.obj`` (the simplified mesh ARCTIC's
  numbers are computed on; vertices in **millimetres**, ARCTIC divides them by 1000 after loading with
  ``trimesh`` and ``process=False``, so the vertex order of the file is kept) and ``parts.json`` (one 0/1 label
  per mesh vertex).
- Which label is the articulated (top) part: ARCTIC's layer adds 1 to the labels and articulates the vertices
  whose id is 1, i.e. **label 0 = top** (``forward_7d_batch``; its evaluation code likewise takes id 2, label 1,
  as the bottom part). Its data_doc.md says the opposite ("1 for top; 0 for bottom"). The code is what produced
  ARCTIC's published meshes and metrics, so it is followed here (:data:`TOP_PART_LABEL`).
- Per frame ``<seq>.object.npy`` holds 7 numbers: articulation angle (radians), axis-angle rotation, translation
  (millimetres; ARCTIC divides by 1000). The top part is rotated by the angle about the axis (0, 0, -1) through
  the template's origin, then the whole object by the global rotation, then translated:
  ``world = R(rot) [R(-angle about z) v if top else v] + trans / 1000``.

In a TwoHandSet an articulated object becomes **one library entry per distinct (object, articulation angle)**
with the articulation baked into its mesh; the stored ``object_pose`` then has articulation 0 and places that
entry rigidly (world = R v + t), like every library object. Frames that share an angle share the entry; a rigid
frame (angle exactly 0) uses the entry named after the object. Entries carry no convex parts (ARCTIC ships no
convex decomposition); the MuJoCo stability test cuts them into parts when it needs them
(:func:`interhandgen.objects.metrics.object_parts`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from interhandgen.data.object_library import ObjectLibrary
from interhandgen.exceptions import InputError, MissingFileError
from interhandgen.rotations import axis_angle_to_matrix

__all__ = ["ArcticTemplate", "read_arctic_template", "articulate_template", "arctic_object_world_vertices",
           "arctic_object_library", "TOP_PART_LABEL", "ARTICULATION_AXIS", "TEMPLATE_UNITS_TO_METRES"]

#: parts.json label of the articulated (top) part in ARCTIC's object layer (see the module docstring).
TOP_PART_LABEL = 0
#: Axis of the top part's articulation in the template frame (ARCTIC's ``z_axis``).
ARTICULATION_AXIS = (0.0, 0.0, -1.0)
#: ARCTIC's template vertices and object translations are in millimetres.
TEMPLATE_UNITS_TO_METRES = 1e-3


@dataclasses.dataclass(frozen=True, eq=False)
class ArcticTemplate:
    """One ARCTIC object template: vertices [V, 3] (metres), faces [F, 3], ``top`` [V] bool, file hashes."""

    name: str
    vertices: np.ndarray
    faces: np.ndarray
    top: np.ndarray
    sha256: str  # of mesh.obj and parts.json together


def read_arctic_template(folder: str | Path) -> ArcticTemplate:
    """Read ``<folder>/mesh.obj`` and ``<folder>/parts.json`` (the object's name is the folder's name)."""
    import trimesh

    folder = Path(folder)
    mesh_p, parts_p = folder / "mesh.obj", folder / "parts.json"
    for p in (mesh_p, parts_p):
        if not p.is_file():
            raise MissingFileError(f"ARCTIC object template file not found: {p} (expected "
                                   "meta/object_vtemplates/<name>/mesh.obj and parts.json)")
    try:
        mesh = trimesh.load_mesh(str(mesh_p), process=False)
    except Exception as exc:  # any parse failure of a user file is an input error naming it
        raise InputError(f"{mesh_p}: cannot read the mesh ({type(exc).__name__}: {exc})") from None
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise InputError(f"{mesh_p}: expected one triangle mesh, got {type(mesh).__name__}")
    try:
        labels = np.asarray(json.loads(parts_p.read_text()))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{parts_p}: not JSON ({exc})") from None
    v = np.asarray(mesh.vertices, dtype=np.float64)
    if labels.shape != (len(v),) or not np.isin(labels, (0, 1)).all():
        raise InputError(f"{parts_p}: expected one 0/1 label per vertex of {mesh_p.name} ({len(v)}), got an array "
                         f"of shape {list(labels.shape)} with values {np.unique(labels)[:5].tolist()}")
    digest = hashlib.sha256(mesh_p.read_bytes() + parts_p.read_bytes()).hexdigest()
    return ArcticTemplate(folder.name, v * TEMPLATE_UNITS_TO_METRES, np.asarray(mesh.faces, dtype=np.int64),
                          labels.astype(np.int64) == TOP_PART_LABEL, digest)


def articulate_template(vertices: np.ndarray, top: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """Template vertices [V, 3] with the top part articulated by each angle [N] (radians): [N, V, 3] float64,
    in the template's frame (the top part turned by the angle about :data:`ARTICULATION_AXIS`)."""
    angles = torch.as_tensor(np.asarray(angles, dtype=np.float64)).reshape(-1, 1)
    R = axis_angle_to_matrix(angles * torch.tensor(ARTICULATION_AXIS, dtype=torch.float64)).numpy()
    v = np.asarray(vertices, dtype=np.float64)
    out = np.broadcast_to(v, (len(R),) + v.shape).copy()
    out[:, top] = np.einsum("nij,vj->nvi", R, v[top])
    return out


def arctic_object_world_vertices(template: ArcticTemplate, object_params: np.ndarray) -> np.ndarray:
    """World vertices [N, V, 3] (metres) of ``template`` placed by rows of ``<seq>.object.npy`` [N, 7] in ARCTIC's
    units (angle rad, axis-angle, translation mm): what ARCTIC's object layer returns, in float64."""
    p = np.asarray(object_params, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 7:
        raise InputError(f"argument 'object_params' must have shape [N, 7], got {list(p.shape)}")
    local = articulate_template(template.vertices, template.top, p[:, 0])
    R = axis_angle_to_matrix(torch.as_tensor(p[:, 1:4])).numpy()
    return np.einsum("nij,nvj->nvi", R, local) + p[:, None, 4:7] * TEMPLATE_UNITS_TO_METRES


def arctic_object_library(object_names: Sequence[str], object_index: np.ndarray, angles: np.ndarray,
                          templates_dir: str | Path) -> tuple[ObjectLibrary, np.ndarray]:
    """Library entries for frames of ARCTIC objects, one per distinct (object, angle), articulation baked in.

    Args:
        object_names: the K ARCTIC object names (template folder names under ``templates_dir``).
        object_index: [N] index into ``object_names`` per frame; angles: [N] articulation (radians) per frame.
    Returns:
        (library, entry [N] int64: the library entry of each frame). Entry names are ``<object>`` for angle 0
        and ``<object>@<angle!r>`` otherwise; family = the ARCTIC object name; params record the angle and the
        template's SHA-256.
    """
    templates_dir = Path(templates_dir)
    if not templates_dir.is_dir():
        raise MissingFileError(f"ARCTIC object templates folder not found: {templates_dir} "
                               "(expected meta/object_vtemplates/ with one folder per object)")
    object_index = np.asarray(object_index, dtype=np.int64)
    angles = np.asarray(angles, dtype=np.float64)
    names, families, params, verts, faces = [], [], [], [], []
    entry = np.empty(len(object_index), dtype=np.int64)
    for k, obj in enumerate(object_names):
        frames = np.flatnonzero(object_index == k)
        if not frames.size:
            continue
        template = read_arctic_template(templates_dir / obj)
        uniq, inverse = np.unique(angles[frames], return_inverse=True)
        baked = articulate_template(template.vertices, template.top, uniq)
        for a, v in zip(uniq, baked):
            names.append(obj if a == 0.0 else f"{obj}@{float(a)!r}")
            families.append(obj)
            params.append(json.dumps({"source": "ARCTIC", "articulation_rad": float(a),
                                      "template_sha256": template.sha256}, sort_keys=True))
            verts.append(v)
            faces.append(template.faces)
        entry[frames] = len(names) - len(uniq) + inverse.reshape(-1)
    library = ObjectLibrary(tuple(names), tuple(families), tuple(params), tuple(verts), tuple(faces),
                            tuple(() for _ in names))
    return library, entry
