"""Exact loader of ARCTIC's MANO and object parameters (licensed data; not distributed with interhandgen).

Files (docs/data/data_doc.md of zc-alexfan/arctic): ``raw_seqs/<subject>/<seq>.mano.npy`` holds a pickled dict
(``np.load(path, allow_pickle=True).item()``) with, per hand ``"right"`` / ``"left"``:

- ``rot``  (T, 3) global rotation, axis-angle;  ``pose`` (T, 45) joint rotations, axis-angle;
- ``trans`` (T, 3) translation, metres (ARCTIC passes it to smplx unchanged);
- ``shape`` (10,) betas, one per sequence (ARCTIC repeats it over frames; (T, 10) is accepted too);
- ``fitting_err`` (T,) per-frame fitting error (validated for shape, not stored).

``<seq>.object.npy``: (T, 7) = articulation (radians), rotation (axis-angle), translation in MILLIMETRES
(ARCTIC divides it by 1000 before its object layer, src/arctic/processing.py); stored here as metres in
``object_pose``. The object is the part of the sequence name before the first '_' (ARCTIC's own rule in
src/arctic/preprocess_dataset.py), stored as ``object_id`` / ``object_names``.

MANO settings: ARCTIC evaluates these parameters with ``smplx.MANO(use_pca=False, flat_hand_mean=False)``
(common/body_models.py, ``build_mano_aa`` / ``construct_layers``) and does NOT apply the left-hand shapedirs
fix; the left ``shape`` parameters were fitted with the original MANO_LEFT shapedirs (see also
zc-alexfan/arctic issue #50). Loaded as pose_space "axis_angle", flat_hand_mean False, MANO with
fix_left_shapedirs False.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from interhandgen.data._records import LoadSummary, safe_npy_load
from interhandgen.data.arctic_objects import arctic_object_library
from interhandgen.data.format import HAND_SIDES, HandModelSpec, HandParams, TwoHandSet
from interhandgen.data.interhand import _spec_for
from interhandgen.exceptions import InputError, MissingFileError

__all__ = ["load_arctic_sequences", "ARCTIC_MANO_SETTINGS", "arctic_sequence_files"]

ARCTIC_MANO_SETTINGS = {
    "use_pca": False, "flat_hand_mean": False, "fix_left_shapedirs": False, "frame": "world", "units": "metres",
    "object_translation_units_in_file": "millimetres (converted to metres)",
    "source": "zc-alexfan/arctic common/body_models.py (build_mano_aa, construct_layers), src/arctic/processing.py",
}
_MANO_SUFFIX = ".mano.npy"


def arctic_sequence_files(path: str | Path) -> list[Path]:
    """The ``*.mano.npy`` files under ``path`` (a file, a subject folder, or raw_seqs/), sorted."""
    path = Path(path)
    if path.is_file():
        if not path.name.endswith(_MANO_SUFFIX):
            raise InputError(f"{path}: expected an ARCTIC '<seq>.mano.npy' file")
        return [path]
    if not path.is_dir():
        raise MissingFileError(f"ARCTIC path not found: {path}")
    files = sorted(p for p in path.rglob(f"*{_MANO_SUFFIX}") if p.is_file())
    if not files:
        raise MissingFileError(f"{path}: no '*{_MANO_SUFFIX}' files (expected raw_seqs/<subject>/<seq>.mano.npy)")
    return files


def _hand_arrays(hand: Any, side: str) -> tuple[dict[str, np.ndarray] | None, str]:
    """Validate one hand dict; returns ({rot, pose, trans, shape [T,10], fitting_err}, "") or (None, problem)."""
    if not isinstance(hand, dict):
        return None, f"'{side}': expected a dict, got {type(hand).__name__}"
    out = {}
    for key in ("rot", "pose", "trans", "shape", "fitting_err"):
        if key not in hand:
            return None, f"'{side}': missing key '{key}'"
        try:
            arr = np.asarray(hand[key])
        except (TypeError, ValueError) as exc:
            return None, f"'{side}'['{key}']: not an array ({exc})"
        if arr.dtype.kind not in "fiu":
            return None, f"'{side}'['{key}']: expected numbers, got dtype {arr.dtype}"
        out[key] = arr
    T = out["rot"].shape[0] if out["rot"].ndim == 2 else -1
    want = {"rot": (T, 3), "pose": (T, 45), "trans": (T, 3), "fitting_err": (T,)}
    for key, shape in want.items():
        if T < 0 or out[key].shape != shape:
            return None, f"'{side}'['{key}']: shape {list(out[key].shape)}, expected {['T' if i == 0 else s for i, s in enumerate(shape)]} with T from 'rot'"
    shape = out["shape"]
    if shape.shape == (10,):
        out["shape"] = np.broadcast_to(shape, (T, 10))
    elif shape.shape != (T, 10):
        return None, f"'{side}'['shape']: shape {list(shape.shape)}, expected [10] or [T, 10]"
    return out, ""


def load_arctic_sequences(
    path: str | Path,
    *,
    mano_dir: str | Path | None = None,
    hand_model: HandModelSpec | None = None,
    skip_bad: bool = False,
    include_objects: bool = True,
    object_templates: str | Path | None = None,
    dtype=np.float32,
    progress: bool = False,
) -> tuple[TwoHandSet, LoadSummary]:
    """Read ARCTIC ``raw_seqs`` sequences into a TwoHandSet (one sample per frame; both hands always present).

    Args:
        path: raw_seqs/ (all subjects), one subject folder, or one ``<seq>.mano.npy``.
        include_objects: also read ``<seq>.object.npy`` into ``object_pose`` (metres) and ``object_id``; a
            missing or malformed object file is then a bad sequence.
        object_templates: ARCTIC's ``meta/object_vtemplates/`` folder: also store the object meshes as an object
            library (:func:`interhandgen.data.arctic_objects.arctic_object_library`: one entry per distinct
            (object, articulation angle), the articulation baked into the mesh and 0 in ``object_pose``).
        skip_bad: skip and count bad records: a frame with a non-finite value (named "<subject>/<seq> frame t")
            or a whole sequence file whose structure is wrong (counted in ``skipped_files``).
    Returns:
        (set, summary); records are frames. Record ids "<subject>/<seq>/<frame>".
    """
    if object_templates is not None and not include_objects:
        raise InputError("object_templates needs include_objects=True (the object poses place the templates)")
    files = arctic_sequence_files(path)
    summary = LoadSummary(str(path))
    cols: dict[str, list[np.ndarray]] = {f"{s}_{k}": [] for s in HAND_SIDES for k in ("rot", "pose", "trans", "shape")}
    objects: list[np.ndarray] = []
    object_names: list[str] = []
    object_ids: list[np.ndarray] = []
    ids: list[str] = []
    for f in tqdm(files, desc="ARCTIC sequences", disable=not progress):
        seq = f.name[: -len(_MANO_SUFFIX)]
        name = f"{f.parent.name}/{seq}"
        try:
            raw = safe_npy_load(f)
        except Exception as exc:  # unreadable file: a bad sequence like any other
            summary.bad(f"{f}: cannot read ({type(exc).__name__}: {exc})", skip_bad, whole_file=True)
            continue
        if not isinstance(raw, dict) or set(HAND_SIDES) - set(raw):
            got = sorted(raw) if isinstance(raw, dict) else type(raw).__name__
            summary.bad(f"{f}: expected a dict with keys 'left' and 'right', got {got}", skip_bad, whole_file=True)
            continue
        hands, problem = {}, ""
        for side in HAND_SIDES:
            hands[side], problem = _hand_arrays(raw[side], side)
            if problem:
                break
        if not problem and hands["left"]["rot"].shape[0] != hands["right"]["rot"].shape[0]:
            problem = f"left hand has {hands['left']['rot'].shape[0]} frames, right hand {hands['right']['rot'].shape[0]}"
        if problem:
            summary.bad(f"{f}: {problem}", skip_bad, whole_file=True)
            continue
        T = hands["right"]["rot"].shape[0]
        if T == 0:
            summary.bad(f"{f}: the sequence holds no frames (T = 0)", skip_bad, whole_file=True)
            continue
        obj = None
        if include_objects:
            obj_path = f.with_name(seq + ".object.npy")
            if not obj_path.is_file():
                summary.bad(f"{f}: object file {obj_path.name} not found (pass include_objects=False to read hands only)",
                            skip_bad, whole_file=True)
                continue
            try:
                obj = np.asarray(safe_npy_load(obj_path))
            except Exception as exc:
                summary.bad(f"{obj_path}: cannot read ({type(exc).__name__}: {exc})", skip_bad, whole_file=True)
                continue
            if obj.shape != (T, 7) or obj.dtype.kind not in "fiu":
                summary.bad(f"{obj_path}: shape {list(obj.shape)} dtype {obj.dtype}, expected numbers of shape [{T}, 7]",
                            skip_bad, whole_file=True)
                continue
        summary.records += T
        finite = np.ones(T, dtype=bool)
        for side in HAND_SIDES:
            for key, arr in hands[side].items():
                finite &= np.isfinite(arr.reshape(T, -1).astype(np.float64)).all(axis=1)
        if obj is not None:
            finite &= np.isfinite(obj.astype(np.float64)).all(axis=1)
        for t in np.flatnonzero(~finite):
            summary.bad(f"{f}: {name} frame {int(t)} contains NaN or inf", skip_bad)
        keep = np.flatnonzero(finite)
        for side in HAND_SIDES:
            for key in ("rot", "pose", "trans", "shape"):
                cols[f"{side}_{key}"].append(np.asarray(hands[side][key])[keep])
        if obj is not None:
            obj = obj[keep].astype(np.float64)
            obj[:, 4:7] /= 1000.0  # millimetres -> metres
            objects.append(obj)
            obj_name = seq.split("_")[0]
            if obj_name not in object_names:
                object_names.append(obj_name)
            object_ids.append(np.full(len(keep), object_names.index(obj_name), dtype=np.int64))
        ids += [f"{name}/{int(t)}" for t in keep]
        summary.kept += len(keep)
    summary.check()
    params = {}
    for side in HAND_SIDES:
        cat = {k: (np.concatenate(cols[f"{side}_{k}"]) if cols[f"{side}_{k}"] else np.zeros((0, w)))
               for k, w in (("rot", 3), ("pose", 45), ("trans", 3), ("shape", 10))}
        params[side] = HandParams(pose=cat["pose"].astype(dtype), betas=cat["shape"].astype(dtype),
                                  global_orient=cat["rot"].astype(dtype), transl=cat["trans"].astype(dtype))
    kw: dict[str, Any] = {}
    if include_objects and object_names:
        pose, ids_ = np.concatenate(objects), np.concatenate(object_ids)
        if object_templates is not None:
            library, entry = arctic_object_library(object_names, ids_, pose[:, 0], object_templates)
            pose[:, 0] = 0.0  # baked into the library entry
            kw.update(object_pose=pose.astype(dtype), object_id=entry, object_names=list(library.names),
                      object_library=library)
        else:
            kw.update(object_pose=pose.astype(dtype), object_id=ids_, object_names=object_names)
    meta = {
        "source": "ARCTIC raw_seqs", "path": str(Path(path).resolve()), "record_id": "<subject>/<seq>/<frame>",
        "mano_layer": ARCTIC_MANO_SETTINGS,
        "object_pose": "articulation (rad), axis-angle rotation, translation (metres)" if "object_pose" in kw else None,
        "object_library": ("ARCTIC templates from " + str(Path(object_templates).resolve()) + ": one entry per "
                           "(object, articulation angle), articulation baked in (object_pose articulation 0)")
        if "object_library" in kw else None,
        "load_summary": summary.to_dict(),
    }
    two_hands = TwoHandSet(params["left"], params["right"], pose_space="axis_angle", flat_hand_mean=False,
                           hand_model=_spec_for(mano_dir, hand_model, False), record_id=ids, metadata=meta, **kw)
    return two_hands, summary
