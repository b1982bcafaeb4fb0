"""The two-hand sample format: :class:`TwoHandSet` and its ``.npz`` file.

A set holds N two-hand samples. Per hand side (``left``, ``right``), in the WORLD frame, metres:

- ``pose``          [N, 45]  the 15 finger joints, in ``pose_space``:
  ``"pca"`` = coefficients of the hand model's pose PCA (all 45 components, ``hands_components`` rows), or
  ``"axis_angle"`` = 15 x 3 joint rotation vectors. Like the hand layer, the model's ``hands_mean`` is added
  to the decoded joint rotations unless ``flat_hand_mean``.
- ``betas``         [N, 10]  shape coefficients.
- ``global_orient`` [N, 3]   axis-angle rotation of the root (it turns about the shaped rest root joint,
  not about the origin, exactly as in MANO / smplx).
- ``transl``        [N, 3]   translation added to every vertex after posing.

So that ``HandModel(data, use_pca=(pose_space == "pca"), flat_hand_mean=flat_hand_mean)(betas=..,
global_orient=.., hand_pose=pose, transl=..)`` gives the world vertices.

Set-wide attributes: ``pose_space``, ``flat_hand_mean``, the hand model (:class:`HandModelSpec`: the bundled
open hand, or MANO with the model file paths, their SHA-256 and whether the left shapedirs fix is applied),
optional per-sample labels (``category`` with ``category_names``, ``split`` with ``split_names``,
``object_id`` with ``object_names``), optional per-sample ``record_id`` strings (where each sample came from)
and ``object_pose`` [N, 7] (ARCTIC: articulation in radians, axis-angle rotation, translation in metres), and
free ``metadata`` (a JSON object). See docs/data.md for every key of the file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from interhandgen._atomic import atomic_write
from interhandgen.data.object_library import ObjectLibrary
from interhandgen.exceptions import InputError, MissingFileError
from interhandgen.hand.layer import HandModel
from interhandgen.hand.mano_io import MANO_DOWNLOAD_HINT, read_mano_data
from interhandgen.hand.model_data import HandModelData
from interhandgen.hand.open_hand import open_hand
from interhandgen.limits import check_hand_values
from interhandgen.safe_files import NpzReader

__all__ = [
    "FORMAT_VERSION",
    "HAND_SIDES",
    "POSE_SPACES",
    "HAND_FIELDS",
    "STANDARD_SPLITS",
    "HandParams",
    "HandModelSpec",
    "TwoHandSet",
    "concatenate",
    "pca_to_axis_angle",
    "axis_angle_to_pca",
    "full_pose_from",
    "pose_from_full",
    "atomic_write",
]

FORMAT_VERSION = 1
HAND_SIDES = ("left", "right")
POSE_SPACES = ("pca", "axis_angle")
# Per-hand arrays and their widths.
HAND_FIELDS = {"pose": 45, "betas": 10, "global_orient": 3, "transl": 3}
# Optional label groups: (ids key, names key).
LABEL_GROUPS = (("category", "category_names"), ("split", "split_names"), ("object_id", "object_names"))
OBJECT_POSE_DIM = 7
#: The project's split names (the trainer reads "train" and "validation"); loaders map InterHand2.6M's "val".
STANDARD_SPLITS = ("train", "validation", "test")


# ---------------------------------------------------------------------------------------------------------------------
# Pose-space conversions (numpy, float64; exact linear algebra)
# ---------------------------------------------------------------------------------------------------------------------

def _check_components(components: np.ndarray) -> np.ndarray:
    components = np.asarray(components, dtype=np.float64)
    if components.shape != (45, 45):
        raise InputError(f"argument 'components' must have shape [45, 45] (hands_components), got {list(components.shape)}")
    return components


def pca_to_axis_angle(coeffs: np.ndarray, components: np.ndarray) -> np.ndarray:
    """[N, K] PCA coefficients -> [N, 45] joint axis-angle (``coeffs @ components[:K]``, mean not added)."""
    components = _check_components(components)
    coeffs = np.asarray(coeffs, dtype=np.float64)
    if coeffs.ndim != 2 or not 1 <= coeffs.shape[1] <= 45:
        raise InputError(f"argument 'coeffs' must have shape [N, K] with 1 <= K <= 45, got {list(coeffs.shape)}")
    return coeffs @ components[: coeffs.shape[1]]


def axis_angle_to_pca(pose: np.ndarray, components: np.ndarray, num_comps: int = 45, project: bool = False) -> np.ndarray:
    """[N, 45] joint axis-angle (mean not included) -> [N, num_comps] PCA coefficients.

    With all 45 components this is the exact inverse of :func:`pca_to_axis_angle` (a linear solve; the
    components need not be orthonormal). Fewer components cannot represent every pose: that raises unless
    ``project=True``, which returns the least-squares coefficients (the pose's projection onto the span of
    the first ``num_comps`` components).
    """
    components = _check_components(components)
    pose = np.asarray(pose, dtype=np.float64)
    if pose.ndim != 2 or pose.shape[1] != 45:
        raise InputError(f"argument 'pose' must have shape [N, 45], got {list(pose.shape)}")
    if not isinstance(num_comps, (int, np.integer)) or not 1 <= num_comps <= 45:
        raise InputError(f"argument 'num_comps' must be an integer in [1, 45], got {num_comps!r}")
    if num_comps == 45:
        try:
            return np.linalg.solve(components.T, pose.T).T
        except np.linalg.LinAlgError:
            raise InputError("hands_components is singular; axis-angle poses cannot be converted to PCA coefficients") from None
    if not project:
        raise InputError(
            f"converting to {num_comps} < 45 PCA components discards the part of each pose outside their span; "
            "pass project=True to project explicitly"
        )
    basis = components[:num_comps].T  # [45, K]
    sol, *_ = np.linalg.lstsq(basis, pose.T, rcond=None)
    return sol.T


def _model_data(model: Any, side: str):
    """HandModelData of a HandModel or HandModelData (checked to be of ``side``)."""

    data = getattr(model, "data", model)
    if not isinstance(data, HandModelData):
        raise TypeError(f"models['{side}'] must be a HandModel or HandModelData, got {type(model).__name__}")
    if data.side != side:
        raise InputError(f"models['{side}'] is a {data.side} hand model")
    return data


def full_pose_from(pose: np.ndarray, pose_space: str, flat_hand_mean: bool, data) -> np.ndarray:
    """[N, 45] joint axis-angle as the hand layer applies it (PCA decoded, ``hands_mean`` added if not flat)."""
    _check_pose_space(pose_space)
    pose = np.asarray(pose, dtype=np.float64)
    joint = pca_to_axis_angle(pose, data.hands_components) if pose_space == "pca" else pose
    return joint if flat_hand_mean else joint + data.hands_mean


def pose_from_full(full: np.ndarray, pose_space: str, flat_hand_mean: bool, data, num_comps: int = 45,
                   project: bool = False) -> np.ndarray:
    """Inverse of :func:`full_pose_from`: [N, 45] in ``pose_space`` (PCA coefficients beyond ``num_comps`` are 0)."""
    _check_pose_space(pose_space)
    joint = np.asarray(full, dtype=np.float64) - (0.0 if flat_hand_mean else data.hands_mean)
    if pose_space == "axis_angle":
        return joint
    coeffs = axis_angle_to_pca(joint, data.hands_components, num_comps=num_comps, project=project)
    out = np.zeros((joint.shape[0], 45))
    out[:, :num_comps] = coeffs
    return out


def _check_pose_space(pose_space: str) -> None:
    if pose_space not in POSE_SPACES:
        raise InputError(f"pose_space must be one of {POSE_SPACES}, got {pose_space!r}")


# ---------------------------------------------------------------------------------------------------------------------
# Hand parameters and hand-model identity
# ---------------------------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class HandParams:
    """Parameters of one hand side for N samples (numpy float32 or float64, see module docstring)."""

    pose: np.ndarray
    betas: np.ndarray
    global_orient: np.ndarray
    transl: np.ndarray

    def __post_init__(self) -> None:
        for name in HAND_FIELDS:
            arr = np.asarray(getattr(self, name))
            if arr.dtype.kind not in "fiu":
                raise TypeError(f"field '{name}' must be numeric, got dtype {arr.dtype}")
            if arr.dtype not in (np.float32, np.float64):
                arr = arr.astype(np.float64)
            setattr(self, name, arr)

    def __len__(self) -> int:
        return int(self.pose.shape[0])

    def take(self, index) -> "HandParams":
        return HandParams(**{k: getattr(self, k)[index] for k in HAND_FIELDS})

    def astype(self, dtype) -> "HandParams":
        return HandParams(**{k: getattr(self, k).astype(dtype) for k in HAND_FIELDS})


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclasses.dataclass(frozen=True)
class HandModelSpec:
    """Which hand model the parameters belong to.

    ``kind`` "open_hand": the bundled open hand (:func:`interhandgen.hand.open_hand`), nothing else needed.
    ``kind`` "mano": MANO model files ``mano_right`` / ``mano_left`` (paths as strings; "" = not given yet),
    their SHA-256 (checked when the files are loaded; "" = not recorded) and ``fix_left_shapedirs`` (whether
    the left model is used with the shapedirs fix, as InterHand2.6M / IntagHand do, or without, as ARCTIC does).
    """

    kind: str = "open_hand"
    mano_right: str = ""
    mano_left: str = ""
    mano_right_sha256: str = ""
    mano_left_sha256: str = ""
    fix_left_shapedirs: bool = True

    def __post_init__(self) -> None:
        if self.kind not in ("open_hand", "mano"):
            raise InputError(f"hand_model must be 'open_hand' or 'mano', got {self.kind!r}")
        if self.kind == "open_hand" and (self.mano_right or self.mano_left):
            raise InputError("an open_hand spec takes no MANO paths")

    @classmethod
    def open_hand(cls) -> "HandModelSpec":
        return cls("open_hand")

    @classmethod
    def mano(cls, mano_dir: str | os.PathLike | None = None, *, right: str | os.PathLike | None = None,
             left: str | os.PathLike | None = None, fix_left_shapedirs: bool = True) -> "HandModelSpec":
        """MANO spec from a folder holding MANO_RIGHT.pkl / MANO_LEFT.pkl (or explicit file paths).

        Existing files are hashed (SHA-256) so that a later load can tell a different file; a folder without
        the files raises FileNotFoundError. With neither folder nor paths, the spec records no files yet.
        """
        if mano_dir is not None:
            mano_dir = Path(mano_dir)
            if not mano_dir.is_dir():
                raise MissingFileError(f"MANO folder {mano_dir} does not exist")
            right = right if right is not None else mano_dir / "MANO_RIGHT.pkl"
            left = left if left is not None else mano_dir / "MANO_LEFT.pkl"
        paths, hashes = {}, {}
        for side, p in (("right", right), ("left", left)):
            if p is None:
                paths[side], hashes[side] = "", ""
                continue
            p = Path(p).expanduser().resolve()
            if not p.is_file():
                raise MissingFileError(f"MANO {side} model file {p} does not exist")
            paths[side], hashes[side] = str(p), _sha256(p)
        return cls("mano", paths["right"], paths["left"], hashes["right"], hashes["left"], bool(fix_left_shapedirs))

    def load(self, pose_space: str = "pca", flat_hand_mean: bool = False, device: str | Any = "cpu",
             verify: bool = True) -> dict:
        """{"left": HandModel, "right": HandModel} with ``use_pca = (pose_space == "pca")`` (45 components).

        Raises FileNotFoundError when MANO paths are missing, ValueError when a file's SHA-256 differs from the
        recorded one (``verify=False`` skips the check).
        """
        import torch


        _check_pose_space(pose_space)
        use_pca = pose_space == "pca"
        models = {}
        for side in HAND_SIDES:
            if self.kind == "open_hand":

                data = _model_data(open_hand(side), side)
            else:

                path = self.mano_right if side == "right" else self.mano_left
                want = self.mano_right_sha256 if side == "right" else self.mano_left_sha256
                if not path:
                    raise MissingFileError(
                        f"this set uses MANO but records no {side} model file; give it with "
                        f"set.with_hand_model(HandModelSpec.mano(MANO_DIR)) or --mano-dir. {MANO_DOWNLOAD_HINT}"
                    )
                if verify and want and Path(path).is_file() and _sha256(Path(path)) != want:
                    raise InputError(f"MANO {side} model file {path} differs from the one recorded (SHA-256 {want[:12]}...)")
                data = read_mano_data(path, side=side, fix_left_shapedirs=self.fix_left_shapedirs)
            models[side] = HandModel(data, use_pca=use_pca, num_pca_comps=45, flat_hand_mean=flat_hand_mean).to(torch.device(device))
        return models

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {
            "hand_model": np.array(self.kind),
            "mano_right": np.array(self.mano_right),
            "mano_left": np.array(self.mano_left),
            "mano_right_sha256": np.array(self.mano_right_sha256),
            "mano_left_sha256": np.array(self.mano_left_sha256),
            "mano_fix_left_shapedirs": np.array(bool(self.fix_left_shapedirs)),
        }


# ---------------------------------------------------------------------------------------------------------------------
# The set
# ---------------------------------------------------------------------------------------------------------------------

def _as_index(index, n: int):
    """Normalise an index to something that keeps the sample axis (int -> length-1 slice)."""
    if isinstance(index, (int, np.integer)):
        i = int(index)
        if not -n <= i < n:
            raise IndexError(f"sample index {i} out of range for a set of {n}")
        i %= n
        return slice(i, i + 1)
    if isinstance(index, slice):
        return index
    arr = np.asarray(index)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise IndexError(f"boolean mask must have shape [{n}], got {list(arr.shape)}")
        return arr
    if arr.dtype.kind in "iu" and arr.ndim == 1:
        if arr.size and (arr.min() < -n or arr.max() >= n):
            raise IndexError(f"sample indices out of range for a set of {n}")
        return arr
    raise TypeError(f"a TwoHandSet is indexed by an int, slice, 1-D integer array or boolean mask, got {type(index).__name__}")


class TwoHandSet:
    """N two-hand samples in the world frame (metres), see the module docstring and docs/data.md."""

    def __init__(
        self,
        left: HandParams | Mapping[str, Any],
        right: HandParams | Mapping[str, Any],
        *,
        pose_space: str,
        flat_hand_mean: bool,
        hand_model: HandModelSpec | str = "open_hand",
        category: Sequence[int] | None = None,
        category_names: Sequence[str] | None = None,
        split: Sequence[int] | None = None,
        split_names: Sequence[str] | None = None,
        object_id: Sequence[int] | None = None,
        object_names: Sequence[str] | None = None,
        object_pose: np.ndarray | None = None,
        record_id: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | str | None = None,
        object_library: Any = None,
    ) -> None:
        self.left = left if isinstance(left, HandParams) else HandParams(**dict(left))
        self.right = right if isinstance(right, HandParams) else HandParams(**dict(right))
        _check_pose_space(pose_space)
        self.pose_space = pose_space
        if not isinstance(flat_hand_mean, (bool, np.bool_)):
            raise TypeError(f"flat_hand_mean must be a bool, got {type(flat_hand_mean).__name__}")
        self.flat_hand_mean = bool(flat_hand_mean)
        if isinstance(hand_model, str):
            hand_model = HandModelSpec(hand_model)
        if not isinstance(hand_model, HandModelSpec):
            raise TypeError(f"hand_model must be a HandModelSpec or 'open_hand'/'mano', got {type(hand_model).__name__}")
        self.hand_model = hand_model
        self.labels: dict[str, tuple[np.ndarray, tuple[str, ...]]] = {}
        for (key, names_key), ids, names in zip(
            LABEL_GROUPS, (category, split, object_id), (category_names, split_names, object_names)
        ):
            if (ids is None) != (names is None):
                raise InputError(f"'{key}' and '{names_key}' must be given together")
            if ids is not None:
                self.labels[key] = (np.asarray(ids), tuple(str(s) for s in names))
        self.object_pose = None if object_pose is None else np.asarray(object_pose)
        self.record_id = None if record_id is None else np.asarray(record_id, dtype=str)
        self.object_library = object_library  # interhandgen.data.object_library.ObjectLibrary or None
        if isinstance(metadata, str):
            try:
                metadata = json.loads(metadata)
            except json.JSONDecodeError as exc:
                raise InputError(f"metadata is not valid JSON: {exc}") from None
        metadata = dict(metadata or {})
        try:
            json.dumps(metadata)
        except TypeError as exc:
            raise TypeError(f"metadata must be JSON-serialisable: {exc}") from None
        self.metadata = metadata
        self.validate()

    # ------------------------------------------------------------------ validation
    def validate(self, source: str = "TwoHandSet") -> None:
        """Raise ValueError naming ``source`` and the field on any wrong shape, dtype, range or non-finite value."""
        n = len(self.left)
        for side in HAND_SIDES:
            hand = getattr(self, side)
            for name, width in HAND_FIELDS.items():
                arr = getattr(hand, name)
                field = f"{side}_{name}"
                if arr.ndim != 2 or arr.shape[1] != width or arr.shape[0] != n:
                    raise InputError(f"{source}: field '{field}' must have shape [N, {width}] with N = {n}, got {list(arr.shape)}")
                _check_finite(arr, source, field)
        for key, names_key in LABEL_GROUPS:
            if key not in self.labels:
                continue
            ids, names = self.labels[key]
            if ids.shape != (n,) or ids.dtype.kind not in "iu":
                raise InputError(f"{source}: field '{key}' must be an integer array of shape [{n}], got {ids.dtype} {list(ids.shape)}")
            if len(names) == 0 or len(set(names)) != len(names):
                raise InputError(f"{source}: field '{names_key}' must hold distinct names, got {list(names)}")
            if n and (ids.min() < 0 or ids.max() >= len(names)):
                raise InputError(f"{source}: field '{key}' has values outside [0, {len(names)}) ({names_key} has {len(names)} names)")
            self.labels[key] = (ids.astype(np.int64), names)
        if self.object_pose is not None:
            if self.object_pose.shape != (n, OBJECT_POSE_DIM) or self.object_pose.dtype.kind != "f":
                raise InputError(f"{source}: field 'object_pose' must be a float array of shape [{n}, {OBJECT_POSE_DIM}], got {list(self.object_pose.shape)}")
            _check_finite(self.object_pose, source, "object_pose")
        if self.record_id is not None and self.record_id.shape != (n,):
            raise InputError(f"{source}: field 'record_id' must have shape [{n}], got {list(self.record_id.shape)}")
        if self.object_library is not None:
            if not isinstance(self.object_library, ObjectLibrary):
                raise TypeError(f"{source}: object_library must be an ObjectLibrary, got {type(self.object_library).__name__}")
            if "object_id" not in self.labels or self.object_pose is None:
                raise InputError(f"{source}: an object library needs the fields 'object_id' and 'object_pose'")
            if tuple(self.object_library.names) != self.labels["object_id"][1]:
                raise InputError(f"{source}: field 'object_names' must equal 'object_library_names'")

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return len(self.left)

    def __repr__(self) -> str:
        extra = "".join(f", {k}={len(v[1])} names" for k, v in self.labels.items())
        return (f"TwoHandSet(N={len(self)}, pose_space={self.pose_space!r}, flat_hand_mean={self.flat_hand_mean}, "
                f"hand_model={self.hand_model.kind!r}{extra})")

    def hand(self, side: str) -> HandParams:
        if side not in HAND_SIDES:
            raise InputError(f"side must be 'left' or 'right', got {side!r}")
        return getattr(self, side)

    @property
    def category(self) -> np.ndarray | None:
        return self.labels["category"][0] if "category" in self.labels else None

    @property
    def category_names(self) -> tuple[str, ...] | None:
        return self.labels["category"][1] if "category" in self.labels else None

    @property
    def split(self) -> np.ndarray | None:
        return self.labels["split"][0] if "split" in self.labels else None

    @property
    def split_names(self) -> tuple[str, ...] | None:
        return self.labels["split"][1] if "split" in self.labels else None

    @property
    def object_id(self) -> np.ndarray | None:
        return self.labels["object_id"][0] if "object_id" in self.labels else None

    @property
    def object_names(self) -> tuple[str, ...] | None:
        return self.labels["object_id"][1] if "object_id" in self.labels else None

    def _label_kwargs(self, index=None) -> dict:
        kw = {}
        for key, names_key in LABEL_GROUPS:
            if key in self.labels:
                ids, names = self.labels[key]
                kw[key] = ids if index is None else ids[index]
                kw[names_key] = names
        return kw

    def _replace(self, **changes) -> "TwoHandSet":
        kw = dict(
            left=self.left, right=self.right, pose_space=self.pose_space, flat_hand_mean=self.flat_hand_mean,
            hand_model=self.hand_model, object_pose=self.object_pose, record_id=self.record_id,
            metadata=self.metadata, object_library=self.object_library, **self._label_kwargs(),
        )
        kw.update(changes)
        return TwoHandSet(**kw)

    def __getitem__(self, index) -> "TwoHandSet":
        index = _as_index(index, len(self))
        return self._replace(
            left=self.left.take(index), right=self.right.take(index),
            object_pose=None if self.object_pose is None else self.object_pose[index],
            record_id=None if self.record_id is None else self.record_id[index],
            **self._label_kwargs(index),
        )

    def select_split(self, name: str) -> "TwoHandSet":
        """The samples of split ``name`` (ValueError if the set has no splits or no such split)."""
        if "split" not in self.labels:
            raise InputError("this set has no 'split' labels")
        ids, names = self.labels["split"]
        if name not in names:
            raise InputError(f"no split {name!r}; the set has {list(names)}")
        return self[ids == names.index(name)]

    def with_hand_model(self, spec: HandModelSpec) -> "TwoHandSet":
        """The same parameters attributed to another hand model spec (e.g. to add MANO paths)."""
        return self._replace(hand_model=spec)

    def with_metadata(self, **items) -> "TwoHandSet":
        return self._replace(metadata={**self.metadata, **items})

    # ------------------------------------------------------------------ models and geometry
    def hand_models(self, device: str | Any = "cpu", verify: bool = True) -> dict:
        """{"left": HandModel, "right": HandModel} configured for this set's pose space and flat_hand_mean."""
        return self.hand_model.load(self.pose_space, self.flat_hand_mean, device=device, verify=verify)

    def _layers(self, models: Mapping[str, Any] | None, device) -> dict:
        """Hand layers with this set's conventions; given models are reused if already configured so."""
        import torch


        if models is None:
            return self.hand_models(device=device)
        use_pca = self.pose_space == "pca"
        out = {}
        for side in HAND_SIDES:
            if side not in models:
                raise InputError(f"models must have keys 'left' and 'right', got {sorted(models)}")
            m = models[side]
            data = _model_data(m, side)
            if (isinstance(m, HandModel) and m.use_pca == use_pca and m.pose_dim == 45
                    and m.flat_hand_mean == self.flat_hand_mean):
                out[side] = m
            else:
                dev = m.faces.device if isinstance(m, HandModel) else torch.device(device)
                out[side] = HandModel(data, use_pca=use_pca, num_pca_comps=45, flat_hand_mean=self.flat_hand_mean).to(dev)
        return out

    def forward(self, models: Mapping[str, Any] | None = None, device: str | Any = "cpu", dtype=None,
                batch_size: int = 8192, progress: bool = False) -> dict:
        """World vertices and joints of both hands: {side: (vertices [N, V, 3], joints [N, 21, 3])} tensors.

        ``models`` default to :meth:`hand_models`; dtype defaults to the stored arrays' dtype.
        """
        import torch
        from tqdm import tqdm

        layers = self._layers(models, device)
        out = {}
        for side in HAND_SIDES:
            hand = self.hand(side)
            layer = layers[side]
            dev = layer.faces.device
            dt = dtype or (torch.float64 if hand.pose.dtype == np.float64 else torch.float32)
            verts, joints = [], []
            starts = range(0, len(self), batch_size)
            for s in tqdm(starts, desc=f"{side} hands", disable=not progress or len(starts) < 2):
                sl = slice(s, s + batch_size)
                t = lambda a: torch.as_tensor(np.ascontiguousarray(a[sl]), dtype=dt, device=dev)  # noqa: E731
                with torch.no_grad():
                    res = layer(betas=t(hand.betas), global_orient=t(hand.global_orient), hand_pose=t(hand.pose),
                                transl=t(hand.transl))
                verts.append(res.vertices)
                joints.append(res.joints)
            if not verts:  # empty set: shapes still well defined
                V = layer.num_verts
                verts, joints = [torch.zeros(0, V, 3, dtype=dt, device=dev)], [torch.zeros(0, 21, 3, dtype=dt, device=dev)]
            out[side] = (torch.cat(verts), torch.cat(joints))
        return out

    def vertices(self, models: Mapping[str, Any] | None = None, **kw) -> dict:
        """{"left": [N, V, 3], "right": [N, V, 3]} world vertices (metres), see :meth:`forward`."""
        return {side: v for side, (v, _) in self.forward(models, **kw).items()}

    def joints(self, models: Mapping[str, Any] | None = None, **kw) -> dict:
        """{"left": [N, 21, 3], "right": [N, 21, 3]} world joints (metres, MANO21 order), see :meth:`forward`."""
        return {side: j for side, (_, j) in self.forward(models, **kw).items()}

    # ------------------------------------------------------------------ pose conventions
    def converted(self, pose_space: str | None = None, flat_hand_mean: bool | None = None,
                  models: Mapping[str, Any] | None = None, num_comps: int = 45, project: bool = False) -> "TwoHandSet":
        """The same hands with poses in another ``pose_space`` and/or ``flat_hand_mean`` convention.

        Exact (a linear solve with the models' ``hands_components``; the geometry is unchanged) except when
        converting to fewer than 45 PCA components, which needs ``project=True`` and stores the least-squares
        coefficients with the remaining ones 0. Output arrays are float64.
        """
        pose_space = self.pose_space if pose_space is None else pose_space
        flat = self.flat_hand_mean if flat_hand_mean is None else bool(flat_hand_mean)
        _check_pose_space(pose_space)
        if num_comps != 45 and pose_space != "pca":
            raise InputError("num_comps applies to pose_space 'pca' only")
        if pose_space == self.pose_space and flat == self.flat_hand_mean and num_comps == 45:
            return self
        if models is None:
            models = self.hand_model.load("pca", False)
        hands = {}
        for side in HAND_SIDES:
            data = _model_data(models[side], side)
            hand = self.hand(side)
            full = full_pose_from(hand.pose, self.pose_space, self.flat_hand_mean, data)
            pose = pose_from_full(full, pose_space, flat, data, num_comps=num_comps, project=project)
            hands[side] = dataclasses.replace(hand.astype(np.float64), pose=pose)
        return self._replace(left=hands["left"], right=hands["right"], pose_space=pose_space, flat_hand_mean=flat)

    # ------------------------------------------------------------------ I/O
    def to_arrays(self) -> dict[str, np.ndarray]:
        """Every key of the .npz file (see docs/data.md)."""
        arrays: dict[str, np.ndarray] = {
            "format_version": np.array(FORMAT_VERSION, dtype=np.int64),
            "pose_space": np.array(self.pose_space),
            "flat_hand_mean": np.array(self.flat_hand_mean),
            **self.hand_model.to_arrays(),
            "metadata": np.array(json.dumps(self.metadata, sort_keys=True)),
        }
        for side in HAND_SIDES:
            for name in HAND_FIELDS:
                arrays[f"{side}_{name}"] = getattr(self.hand(side), name)
        for key, names_key in LABEL_GROUPS:
            if key in self.labels:
                ids, names = self.labels[key]
                arrays[key] = ids.astype(np.int64)
                arrays[names_key] = np.array(names, dtype=str)
        if self.object_pose is not None:
            arrays["object_pose"] = self.object_pose
        if self.record_id is not None:
            arrays["record_id"] = self.record_id
        if self.object_library is not None:
            arrays.update(self.object_library.to_arrays())
        return arrays

    def save(self, path: str | os.PathLike) -> Path:
        """Write an uncompressed .npz atomically (temp file, fsync, rename). Returns the path."""
        path = Path(path)
        if path.suffix != ".npz":
            raise InputError(f"a TwoHandSet file must end in .npz, got {path}")
        arrays = self.to_arrays()
        atomic_write(path, lambda fh: np.savez(fh, **arrays))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TwoHandSet":
        """Read and validate a .npz written by :meth:`save`; errors name the file and the field."""
        path = Path(path)
        if not path.is_file() and not path.is_dir():
            raise MissingFileError(f"two-hand data file not found: {path}")
        z = NpzReader(path, "two-hand .npz")
        with z:
            files = set(z.files)
            required = ["format_version", "pose_space", "flat_hand_mean", "hand_model"] + [
                f"{s}_{n}" for s in HAND_SIDES for n in HAND_FIELDS
            ]
            missing = [k for k in required if k not in files]
            if missing:
                raise InputError(f"{path}: missing field(s) {missing}")
            version = z["format_version"]
            if version.shape != () or version.dtype.kind not in "iu":
                raise InputError(f"{path}: field 'format_version' must be an integer scalar, got {version.dtype} "
                                 f"{list(version.shape)}")
            version = int(version)
            if version != FORMAT_VERSION:
                raise InputError(f"{path}: field 'format_version' is {version}, this library reads version {FORMAT_VERSION}")

            def scalar_str(key, default=""):
                if key not in files:
                    return default
                a = z[key]
                if a.shape != () or a.dtype.kind != "U":
                    raise InputError(f"{path}: field '{key}' must be a string scalar, got {a.dtype} {list(a.shape)}")
                return str(a)

            def scalar_bool(key, default=None):
                if key not in files:
                    if default is None:
                        raise InputError(f"{path}: missing field '{key}'")
                    return default
                a = z[key]
                if a.shape != () or a.dtype != bool:
                    raise InputError(f"{path}: field '{key}' must be a boolean scalar, got {a.dtype} {list(a.shape)}")
                return bool(a)

            def float_array(key):
                a = z[key]
                if a.dtype.kind != "f":
                    raise InputError(f"{path}: field '{key}' must be floating point, got {a.dtype}")
                if a.ndim != 2:
                    raise InputError(f"{path}: field '{key}' must be a 2-D array [N, D], got shape {list(a.shape)}")
                return a

            hands = {side: HandParams(**{n: float_array(f"{side}_{n}") for n in HAND_FIELDS}) for side in HAND_SIDES}
            kind = scalar_str("hand_model")
            try:
                spec = HandModelSpec(
                    kind, scalar_str("mano_right"), scalar_str("mano_left"), scalar_str("mano_right_sha256"),
                    scalar_str("mano_left_sha256"), scalar_bool("mano_fix_left_shapedirs", True),
                )
            except ValueError as exc:
                raise InputError(f"{path}: field 'hand_model': {exc}") from None
            kw: dict[str, Any] = {}
            for key, names_key in LABEL_GROUPS:
                if (key in files) != (names_key in files):
                    raise InputError(f"{path}: fields '{key}' and '{names_key}' must be present together")
                if key in files:
                    names = z[names_key]
                    if names.ndim != 1 or names.dtype.kind != "U":
                        raise InputError(f"{path}: field '{names_key}' must be a 1-D string array, got {names.dtype} {list(names.shape)}")
                    kw[key], kw[names_key] = z[key], names.tolist()
            if "object_pose" in files:
                kw["object_pose"] = float_array("object_pose")
            if "record_id" in files:
                rid = z["record_id"]
                if rid.dtype.kind != "U":
                    raise InputError(f"{path}: field 'record_id' must be a string array, got {rid.dtype}")
                kw["record_id"] = rid
            if "object_library_names" in files:
                kw["object_library"] = ObjectLibrary.from_arrays(z, str(path))
            meta = scalar_str("metadata", "{}")
            try:
                meta = json.loads(meta)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}: field 'metadata' is not valid JSON: {exc}") from None
            if not isinstance(meta, dict):
                raise InputError(f"{path}: field 'metadata' must be a JSON object, got {type(meta).__name__}")
            pose_space = scalar_str("pose_space")
            if pose_space not in POSE_SPACES:
                raise InputError(f"{path}: field 'pose_space' must be one of {POSE_SPACES}, got {pose_space!r}")
            flat = scalar_bool("flat_hand_mean")
        obj = cls.__new__(cls)
        try:
            cls.__init__(obj, hands["left"], hands["right"], pose_space=pose_space, flat_hand_mean=flat,
                         hand_model=spec, metadata=meta, **kw)
        except (ValueError, TypeError) as exc:
            msg = str(exc).replace("TwoHandSet: ", "")
            raise InputError(f"{path}: {msg}") from None
        check_hand_values({f"{side}_{n}": getattr(getattr(obj, side), n) for side in HAND_SIDES for n in HAND_FIELDS},
                          str(path))
        return obj


def _check_finite(arr: np.ndarray, source: str, field: str) -> None:
    finite = np.isfinite(arr)
    if not finite.all():
        bad = np.argwhere(~finite)[0]
        raise InputError(f"{source}: field '{field}' contains NaN or inf (first at sample {int(bad[0])})")


def concatenate(sets: Iterable[TwoHandSet]) -> TwoHandSet:
    """One set holding the samples of ``sets`` in order.

    All sets must share pose_space, flat_hand_mean and hand model. Labels are merged by NAME (ids are
    re-mapped to the union of names, in order of first appearance). An optional field present in some sets
    but not all raises ValueError (nothing is dropped). Metadata: kept if equal in all, else
    ``{"parts": [metadata of each set]}``.
    """
    sets = list(sets)
    if not sets:
        raise InputError("concatenate needs at least one TwoHandSet")
    for s in sets:
        if not isinstance(s, TwoHandSet):
            raise TypeError(f"concatenate takes TwoHandSet objects, got {type(s).__name__}")
    first = sets[0]
    for i, s in enumerate(sets[1:], 1):
        for attr in ("pose_space", "flat_hand_mean", "hand_model"):
            if getattr(s, attr) != getattr(first, attr):
                raise InputError(f"set {i} has {attr}={getattr(s, attr)!r} but set 0 has {getattr(first, attr)!r}")
    kw: dict[str, Any] = {}
    for side in HAND_SIDES:
        parts = [s.hand(side) for s in sets]
        dtype = np.result_type(*[p.pose.dtype for p in parts])
        kw[side] = HandParams(**{n: np.concatenate([getattr(p, n).astype(dtype) for p in parts]) for n in HAND_FIELDS})

    def presence(name, has):
        flags = [has(s) for s in sets]
        if any(flags) and not all(flags):
            raise InputError(f"field '{name}' is present in sets {[i for i, f in enumerate(flags) if f]} but not in all {len(sets)} sets")
        return all(flags)

    for key, names_key in LABEL_GROUPS:
        if presence(key, lambda s: key in s.labels):
            names: list[str] = []
            for s in sets:
                names += [n for n in s.labels[key][1] if n not in names]
            ids = [np.array([names.index(n) for n in s.labels[key][1]], dtype=np.int64)[s.labels[key][0]] for s in sets]
            kw[key], kw[names_key] = np.concatenate(ids), names
    if presence("object_pose", lambda s: s.object_pose is not None):
        kw["object_pose"] = np.concatenate([s.object_pose for s in sets])
    if presence("record_id", lambda s: s.record_id is not None):
        kw["record_id"] = np.concatenate([s.record_id for s in sets])
    if presence("object_library", lambda s: s.object_library is not None):
        kw["object_library"] = _merge_libraries([s.object_library for s in sets], kw["object_names"])
    metas = [s.metadata for s in sets]
    kw["metadata"] = metas[0] if all(m == metas[0] for m in metas) else {"parts": metas}
    return TwoHandSet(kw.pop("left"), kw.pop("right"), pose_space=first.pose_space,
                      flat_hand_mean=first.flat_hand_mean, hand_model=first.hand_model, **kw)


def _merge_libraries(libraries: list, names: Sequence[str]):
    """One library for the merged ``names`` (ValueError if one name stands for different objects)."""
    source: dict[str, tuple[int, int]] = {}
    for li, lib in enumerate(libraries):
        for i, name in enumerate(lib.names):
            if name in source:
                lj, j = source[name]
                if not libraries[lj].same_object(j, lib, i):
                    raise ValueError(f"object '{name}' differs between set {lj} and set {li}")
            else:
                source[name] = (li, i)
    picked = [libraries[source[n][0]].take([source[n][1]]) for n in names]
    return ObjectLibrary(*(tuple(x for lib in picked for x in getattr(lib, f))
                           for f in ("names", "families", "params", "vertices", "faces", "parts")))
