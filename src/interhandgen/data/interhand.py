"""Exact loaders of InterHand2.6M's MANO parameters (licensed data; not distributed with interhandgen).

Two sources:

1. ``InterHand2.6M_{split}_MANO_NeuralAnnot.json`` (annotations/{split}/ of InterHand2.6M v1.0):
   ``{capture_id: {frame_idx: {"right": {"pose": [48], "shape": [10], "trans": [3]} | null, "left": ...}}}``.
   ``pose`` is axis-angle, global rotation first then 15 joints; parameters are in the WORLD frame (metres).
   InterHand2.6M evaluates them with ``smplx.create(..., 'mano', use_pca=False, is_rhand=...)``, i.e.
   ``flat_hand_mean=False`` (smplx's default: ``hands_mean`` is added to the 45 joint numbers), and applies
   the left-hand shapedirs fix (``shapedirs[:, 0, :] *= -1``) -- see tool/MANO_render/render.py and
   tool/MANO_world_to_camera/convert.py of facebookresearch/InterHand2.6M. Loaded as pose_space
   "axis_angle", flat_hand_mean False, MANO with fix_left_shapedirs True.

2. IntagHand's preprocessed ``{split}/anno/{idx}.pkl`` (dataset/interhand.py of Dw1010/IntagHand, also read
   by the InterHandGen reference code): one pickle per interacting-hand IMAGE (so one frame appears once per
   camera) holding a dict with ``mano_params = {"left"|"right": {"R": [1,3,3] root rotation matrix, "pose":
   [1,45] PCA coefficients, "shape": [1,10], "trans": [1,3]} | None}`` in the world frame, plus ``image``
   (the InterHand2.6M image record: capture, frame_idx, camera, ...), ``annotation``, ``inter_idx`` and
   ``camera`` (R, t, intrinsics; not needed for world-frame hands). IntagHand computed ``pose`` as
   ``axis2pca(hand_pose + hands_mean) = hand_pose @ inverse(hands_components)`` from the NeuralAnnot pose,
   and its ManoLayer decodes ``pca @ hands_components + hands_mean`` and rotates about the rest root joint
   before adding ``trans``: the smplx convention with all 45 PCA components and ``flat_hand_mean=False``. It
   applies the same left shapedirs fix. Loaded as pose_space "pca", flat_hand_mean False, MANO with
   fix_left_shapedirs True; ``R`` is converted to axis-angle.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from tqdm import tqdm

from interhandgen.data._records import LoadSummary, merge_summaries, safe_pickle_load
from interhandgen.data.format import HAND_SIDES, HandModelSpec, HandParams, TwoHandSet, concatenate
from interhandgen.rotations import matrix_to_axis_angle
from interhandgen.exceptions import InputError, MissingFileError
from interhandgen.safe_files import read_json

__all__ = ["load_interhand_mano_json", "load_intaghand_anno", "INTERHAND_MANO_SETTINGS", "INTAGHAND_MANO_SETTINGS"]

INTERHAND_MANO_SETTINGS = {
    "use_pca": False, "flat_hand_mean": False, "fix_left_shapedirs": True, "frame": "world", "units": "metres",
    "source": "facebookresearch/InterHand2.6M tool/MANO_render/render.py (smplx.create(..., 'mano', use_pca=False))",
}
INTAGHAND_MANO_SETTINGS = {
    "use_pca": True, "num_pca_comps": 45, "flat_hand_mean": False, "fix_left_shapedirs": True, "frame": "world",
    "units": "metres",
    "source": "Dw1010/IntagHand dataset/interhand.py (InterHandLoader.load_mano, cut_inter_img) and models/manolayer.py",
}
_SPLIT_FROM_NAME = re.compile(r"InterHand2\.6M_(\w+?)_MANO_NeuralAnnot\.json$")


def _numeric(value: Any, length: int) -> np.ndarray | None:
    """A finite float64 vector of ``length`` from a JSON list / numpy array, or None if malformed (booleans are
    not numbers: numpy would store true as 1.0)."""
    if _has_bool(value):
        return None
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if arr.shape != (length,) or not np.isfinite(arr).all():
        return None
    return arr


def _has_bool(value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return True
    if isinstance(value, np.ndarray):
        return value.dtype == bool
    return isinstance(value, (list, tuple)) and any(_has_bool(v) for v in value)


def _describe(value: Any, length: int) -> str:
    if _has_bool(value):
        return "contains true/false where numbers belong"
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return f"not numeric ({type(value).__name__})"
    if arr.shape != (length,):
        return f"shape {list(arr.shape)}, expected [{length}]"
    return "contains NaN or inf"


def _spec_for(mano_dir, hand_model: HandModelSpec | None, fix_left_shapedirs: bool) -> HandModelSpec:
    if hand_model is not None:
        if hand_model.kind != "mano" or hand_model.fix_left_shapedirs != fix_left_shapedirs:
            raise InputError(f"this data set needs a MANO spec with fix_left_shapedirs={fix_left_shapedirs}, got {hand_model}")
        return hand_model
    if mano_dir is not None:
        return HandModelSpec.mano(mano_dir, fix_left_shapedirs=fix_left_shapedirs)
    return HandModelSpec(kind="mano", fix_left_shapedirs=fix_left_shapedirs)


def _split_labels(split: str | None, n: int) -> dict:
    """Every sample in one split; InterHand2.6M's "val" is named "validation" (format.STANDARD_SPLITS)."""
    if split is None:
        return {}
    return {"split": np.zeros(n, dtype=np.int64), "split_names": ["validation" if split == "val" else split]}


# ---------------------------------------------------------------------------------------------------------------------
# InterHand2.6M NeuralAnnot json
# ---------------------------------------------------------------------------------------------------------------------

def load_interhand_mano_json(
    path: str | Path,
    *,
    mano_dir: str | Path | None = None,
    hand_model: HandModelSpec | None = None,
    split: str | None = None,
    skip_bad: bool = False,
    dtype=np.float32,
    progress: bool = False,
) -> tuple[TwoHandSet, LoadSummary]:
    """Read ``InterHand2.6M_{split}_MANO_NeuralAnnot.json`` into a TwoHandSet (frames with both hands).

    Args:
        mano_dir / hand_model: the MANO files to record (folder with MANO_RIGHT.pkl / MANO_LEFT.pkl, or a
            spec); without them the set records MANO without paths (add them later with with_hand_model).
        split: split name to label every sample with; default taken from the file name ("train", "val" ->
            "validation", "test"), none if the name does not say.
        skip_bad: skip (and count) malformed frames instead of raising.
        dtype: of the stored arrays (the json holds decimal numbers; float32 rounds them to ~1e-7 relative).
    Returns:
        (set, summary). Records are frames. Frames where a hand is null are counted in ``summary.filtered``
        under "left hand null", "right hand null" or "both hands null". Record ids "capture_id/frame_idx".
    Raises:
        BadRecordError (an InputError) naming the file, capture and frame of a malformed record.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"InterHand2.6M MANO file not found: {path}")
    if split is None:
        m = _SPLIT_FROM_NAME.search(path.name)
        split = m.group(1) if m else None
    raw = read_json(path, "InterHand2.6M MANO JSON")  # strict: duplicate frame keys, non-UTF-8, deep nesting
    if not isinstance(raw, dict):
        raise InputError(f"{path}: expected a JSON object {{capture_id: {{frame_idx: {{...}}}}}}, got {type(raw).__name__}")
    summary = LoadSummary(str(path))
    fields = {side: {k: [] for k in ("pose", "shape", "trans")} for side in HAND_SIDES}
    ids: list[str] = []
    for capture, frames in tqdm(raw.items(), desc="captures", disable=not progress):
        if not isinstance(frames, dict):
            summary.records += 1
            summary.bad(f"{path}: capture {capture}: expected an object of frames, got {type(frames).__name__}", skip_bad)
            continue
        for frame, rec in frames.items():
            summary.records += 1
            where = f"{path}: capture {capture} frame {frame}"
            if not isinstance(rec, dict) or set(HAND_SIDES) - set(rec):
                got = sorted(rec) if isinstance(rec, dict) else type(rec).__name__
                summary.bad(f"{where}: expected keys 'left' and 'right', got {got}", skip_bad)
                continue
            null = [side for side in HAND_SIDES if rec[side] is None]
            if null:
                summary.filter("both hands null" if len(null) == 2 else f"{null[0]} hand null")
                continue
            parsed, problem = {}, None
            for side in HAND_SIDES:
                hand = rec[side]
                if not isinstance(hand, dict):
                    problem = f"{side} hand: expected an object, got {type(hand).__name__}"
                    break
                for key, length in (("pose", 48), ("shape", 10), ("trans", 3)):
                    if key not in hand:
                        problem = f"{side} hand: missing key '{key}'"
                        break
                    arr = _numeric(hand[key], length)
                    if arr is None:
                        problem = f"{side} hand: '{key}' {_describe(hand[key], length)}"
                        break
                    parsed[side, key] = arr
                if problem:
                    break
            if problem:
                summary.bad(f"{where}: {problem}", skip_bad)
                continue
            for side in HAND_SIDES:
                for key in ("pose", "shape", "trans"):
                    fields[side][key].append(parsed[side, key])
            ids.append(f"{capture}/{frame}")
            summary.kept += 1
    summary.check()
    hands = {}
    for side in HAND_SIDES:
        stack = {k: (np.stack(v) if v else np.zeros((0, n))) for (k, v), n in zip(fields[side].items(), (48, 10, 3))}
        hands[side] = HandParams(
            pose=stack["pose"][:, 3:].astype(dtype), betas=stack["shape"].astype(dtype),
            global_orient=stack["pose"][:, :3].astype(dtype), transl=stack["trans"].astype(dtype),
        )
    meta = {
        "source": "InterHand2.6M MANO NeuralAnnot json", "file": str(path.resolve()),
        "record_id": "capture_id/frame_idx", "mano_layer": INTERHAND_MANO_SETTINGS, "load_summary": summary.to_dict(),
    }
    two_hands = TwoHandSet(
        hands["left"], hands["right"], pose_space="axis_angle", flat_hand_mean=False,
        hand_model=_spec_for(mano_dir, hand_model, True), record_id=ids, metadata=meta, **_split_labels(split, len(ids)),
    )
    return two_hands, summary


# ---------------------------------------------------------------------------------------------------------------------
# IntagHand anno/*.pkl
# ---------------------------------------------------------------------------------------------------------------------

_INTAGHAND_SPLIT_FOLDERS = ("train", "val", "test")


def _anno_files(anno_dir: Path) -> list[Path]:
    files = [p for p in anno_dir.iterdir() if p.suffix == ".pkl" and p.is_file()]
    # IntagHand names the files 0.pkl, 1.pkl, ...: numeric order is the data set order.
    return sorted(files, key=lambda p: (0, int(p.stem), "") if p.stem.isdigit() else (1, 0, p.stem))


def _intaghand_groups(path: Path) -> list[tuple[str | None, list[Path], Path]]:
    """[(split name or None, pkl files, folder)] for a .pkl file, an anno folder, a split folder or a root."""
    if path.is_file():
        return [(None, [path], path.parent)]
    if not path.is_dir():
        raise MissingFileError(f"IntagHand annotation path not found: {path}")
    if any(p.suffix == ".pkl" for p in path.iterdir()):
        split = path.parent.name if path.name == "anno" and path.parent.name in _INTAGHAND_SPLIT_FOLDERS else None
        return [(split, _anno_files(path), path)]
    if (path / "anno").is_dir():
        return [(path.name if path.name in _INTAGHAND_SPLIT_FOLDERS else None, _anno_files(path / "anno"), path / "anno")]
    groups = [(s, _anno_files(path / s / "anno"), path / s / "anno") for s in _INTAGHAND_SPLIT_FOLDERS if (path / s / "anno").is_dir()]
    if not groups:
        raise MissingFileError(f"{path}: no IntagHand annotations (*.pkl, anno/*.pkl or {{train,val,test}}/anno/*.pkl)")
    return groups


def _array(value: Any, shapes: Iterable[tuple[int, ...]]) -> tuple[np.ndarray | None, str]:
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "fiu":
        return None, f"expected a numeric numpy array, got {type(value).__name__}"
    for shape in shapes:
        if value.shape == shape:
            arr = value.astype(np.float64).reshape(shape[-2:] if len(shape) == 3 else shape[-1:])
            if not np.isfinite(arr).all():
                return None, "contains NaN or inf"
            return arr, ""
    return None, f"shape {list(value.shape)}, expected one of {[list(s) for s in shapes]}"


def load_intaghand_anno(
    path: str | Path,
    *,
    mano_dir: str | Path | None = None,
    hand_model: HandModelSpec | None = None,
    skip_bad: bool = False,
    unique_frames: bool = False,
    dtype=np.float32,
    progress: bool = False,
    rotation_tolerance: float = 1e-4,
) -> tuple[TwoHandSet, LoadSummary]:
    """Read IntagHand's ``anno/*.pkl`` into a TwoHandSet.

    Args:
        path: one .pkl, an ``anno`` folder, a split folder holding ``anno/``, or the preprocessed root holding
            ``train/anno``, ``val/anno``, ``test/anno`` (then every sample is labelled with its split; "val" is
            named "validation").
        unique_frames: keep only the first record of each (capture, frame_idx) -- IntagHand stores one record
            per camera view of a frame, all with the same world-frame MANO parameters. Dropped duplicates are
            counted under "duplicate frame (other camera)". Off by default: the InterHandGen reference trains
            on all records.
        rotation_tolerance: ``R`` must satisfy |R^T R - I| and |det R - 1| below this (else a bad record).
    Returns:
        (set, summary); records are pickle files. Record ids "<split>/<idx>:<capture>/<frame_idx>/<camera>"
        (without the part after ':' if a file has no ``image`` record).
    """
    path = Path(path)
    groups = _intaghand_groups(path)
    sets, summaries = [], []
    for split, files, folder in groups:
        summary = LoadSummary(str(folder))
        rows: dict[str, list[np.ndarray]] = {f"{s}_{k}": [] for s in HAND_SIDES for k in ("R", "pose", "shape", "trans")}
        ids: list[str] = []
        seen: set[tuple] = set()
        for f in tqdm(files, desc=f"{split or 'anno'} files", disable=not progress):
            summary.records += 1
            try:
                data = safe_pickle_load(f)
            except Exception as exc:  # unreadable pickle: a bad record like any other
                summary.bad(f"{f}: cannot unpickle ({type(exc).__name__}: {exc})", skip_bad)
                continue
            if not isinstance(data, dict) or not isinstance(data.get("mano_params"), dict):
                summary.bad(f"{f}: expected a dict with a 'mano_params' dict", skip_bad)
                continue
            mano = data["mano_params"]
            if set(HAND_SIDES) - set(mano):
                summary.bad(f"{f}: 'mano_params' must have keys 'left' and 'right', got {sorted(mano)}", skip_bad)
                continue
            null = [s for s in HAND_SIDES if mano[s] is None]
            if null:
                summary.filter("both hands null" if len(null) == 2 else f"{null[0]} hand null")
                continue
            image = data.get("image") if isinstance(data.get("image"), dict) else None
            frame_key = None
            if image is not None and all(k in image for k in ("capture", "frame_idx")):
                frame_key = (image["capture"], image["frame_idx"])
            if unique_frames:
                if frame_key is None:
                    summary.bad(f"{f}: unique_frames needs the 'image' record with 'capture' and 'frame_idx'", skip_bad)
                    continue
                if frame_key in seen:
                    summary.filter("duplicate frame (other camera)")
                    continue
            parsed, problem = {}, None
            for side in HAND_SIDES:
                hand = mano[side]
                if not isinstance(hand, dict):
                    problem = f"mano_params['{side}']: expected a dict, got {type(hand).__name__}"
                    break
                for key, shapes in (("R", [(1, 3, 3), (3, 3)]), ("pose", [(1, 45), (45,)]),
                                    ("shape", [(1, 10), (10,)]), ("trans", [(1, 3), (3,)])):
                    if key not in hand:
                        problem = f"mano_params['{side}']: missing key '{key}'"
                        break
                    arr, why = _array(hand[key], shapes)
                    if arr is None:
                        problem = f"mano_params['{side}']['{key}']: {why}"
                        break
                    parsed[f"{side}_{key}"] = arr
                if problem:
                    break
                R = parsed[f"{side}_R"]
                ortho = np.abs(R.T @ R - np.eye(3)).max()
                if ortho > rotation_tolerance or abs(np.linalg.det(R) - 1) > rotation_tolerance:
                    problem = f"mano_params['{side}']['R'] is not a rotation (|R^T R - I| = {ortho:.2e}, det = {np.linalg.det(R):.6f})"
                    break
            if problem:
                summary.bad(f"{f}: {problem}", skip_bad)
                continue
            for k, v in parsed.items():
                rows[k].append(v)
            rid = f"{split + '/' if split else ''}{f.stem}"
            if image is not None and frame_key is not None:
                rid += f":{image['capture']}/{image['frame_idx']}/{image.get('camera', '?')}"
            ids.append(rid)
            if frame_key is not None:
                seen.add(frame_key)
            summary.kept += 1
        summary.check()
        hands = {}
        for side in HAND_SIDES:
            stack = {k: (np.stack(rows[f"{side}_{k}"]) if ids else np.zeros((0,) + shp))
                     for k, shp in (("R", (3, 3)), ("pose", (45,)), ("shape", (10,)), ("trans", (3,)))}
            go = matrix_to_axis_angle(torch.as_tensor(stack["R"], dtype=torch.float64)).numpy() if ids else np.zeros((0, 3))
            hands[side] = HandParams(pose=stack["pose"].astype(dtype), betas=stack["shape"].astype(dtype),
                                     global_orient=go.astype(dtype), transl=stack["trans"].astype(dtype))
        meta = {
            "source": "IntagHand preprocessed InterHand2.6M anno/*.pkl",
            "record_id": "<split>/<idx>:<capture>/<frame_idx>/<camera>", "mano_layer": INTAGHAND_MANO_SETTINGS,
            "unique_frames": unique_frames,
        }
        sets.append(TwoHandSet(
            hands["left"], hands["right"], pose_space="pca", flat_hand_mean=False,
            hand_model=_spec_for(mano_dir, hand_model, True), record_id=ids, metadata=meta,
            **_split_labels(split, len(ids)),
        ))
        summaries.append(summary)
    summary = merge_summaries(str(path), summaries)
    two_hands = concatenate(sets)  # the parts' metadata are equal, so it is kept
    two_hands = two_hands.with_metadata(path=str(path.resolve()), load_summary=summary.to_dict())
    return two_hands, summary
