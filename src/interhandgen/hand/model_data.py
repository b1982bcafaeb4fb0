"""The arrays that define a MANO-compatible hand model, with validation, I/O and mirroring.

All arrays are plain numpy (float64 / int64). Shapes, with V vertices, F faces, J = 16 joints:

- ``v_template``      [V, 3]       rest-pose vertices at mean shape, metres
- ``shapedirs``       [V, 3, S]    shape blend shapes (S = 10)
- ``posedirs``        [V, 3, 135]  pose-corrective blend shapes on (R_j - I) of joints 1..15, row-major
- ``J_regressor``     [J, V]       joint regressor (dense)
- ``weights``         [V, J]       linear-blend-skinning weights (rows sum to 1)
- ``parents``         [J]          kinematic parent of each joint, -1 for the root
- ``faces``           [F, 3]       triangles, counter-clockwise seen from outside
- ``hands_components``[45, 45]     pose PCA basis, one component per ROW, in axis-angle space
- ``hands_mean``      [45]         mean pose (axis-angle), added unless ``flat_hand_mean``
- ``fingertip_ids``   [5]          vertex ids of thumb, index, middle, ring, pinky tips
- ``side``            "right" | "left"
- ``name``            free text (e.g. "mano_v1_2", "open_hand")
"""

from __future__ import annotations

import dataclasses
import io
import os
from pathlib import Path

import numpy as np

from interhandgen._atomic import atomic_write_bytes as _atomic_write_bytes
from interhandgen.exceptions import InputError, MissingFileError
from interhandgen.safe_files import NpzReader

NUM_JOINTS = 16
NUM_POSE_FEATURES = 9 * (NUM_JOINTS - 1)
_MIRROR = np.array([-1.0, 1.0, 1.0])


@dataclasses.dataclass
class HandModelData:
    v_template: np.ndarray
    shapedirs: np.ndarray
    posedirs: np.ndarray
    J_regressor: np.ndarray
    weights: np.ndarray
    parents: np.ndarray
    faces: np.ndarray
    hands_components: np.ndarray
    hands_mean: np.ndarray
    fingertip_ids: np.ndarray
    side: str
    name: str = "hand"

    ARRAY_FIELDS = (
        "v_template", "shapedirs", "posedirs", "J_regressor", "weights", "parents",
        "faces", "hands_components", "hands_mean", "fingertip_ids",
    )

    def __post_init__(self) -> None:
        for f in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "hands_components", "hands_mean"):
            setattr(self, f, np.ascontiguousarray(np.asarray(getattr(self, f), dtype=np.float64)))
        for f in ("parents", "faces", "fingertip_ids"):
            setattr(self, f, np.ascontiguousarray(np.asarray(getattr(self, f), dtype=np.int64)))
        self.validate()

    @property
    def num_verts(self) -> int:
        return int(self.v_template.shape[0])

    @property
    def num_betas(self) -> int:
        return int(self.shapedirs.shape[2])

    def validate(self, source: str = "hand model data") -> None:
        """Raise ValueError naming the field if any array has the wrong shape, range or non-finite values."""
        V = self.v_template.shape[0] if self.v_template.ndim == 2 else -1
        expect = {
            "v_template": (V, 3),
            "shapedirs": (V, 3, None),
            "posedirs": (V, 3, NUM_POSE_FEATURES),
            "J_regressor": (NUM_JOINTS, V),
            "weights": (V, NUM_JOINTS),
            "parents": (NUM_JOINTS,),
            "faces": (None, 3),
            "hands_components": (45, 45),
            "hands_mean": (45,),
            "fingertip_ids": (5,),
        }
        if V <= 0 or self.v_template.ndim != 2 or self.v_template.shape[1] != 3:
            raise InputError(f"{source}: field 'v_template' must have shape [V, 3], got {list(self.v_template.shape)}")
        for field, shape in expect.items():
            arr = getattr(self, field)
            ok = arr.ndim == len(shape) and all(s is None or a == s for a, s in zip(arr.shape, shape))
            if not ok:
                want = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
                raise InputError(f"{source}: field '{field}' must have shape {want}, got {list(arr.shape)}")
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                raise InputError(f"{source}: field '{field}' contains NaN or inf")
        if self.parents[0] != -1 or np.any(self.parents[1:] < 0) or np.any(self.parents[1:] >= np.arange(1, NUM_JOINTS)):
            raise InputError(f"{source}: field 'parents' must be -1 for joint 0 and point to an earlier joint otherwise, got {self.parents.tolist()}")
        if self.faces.min() < 0 or self.faces.max() >= V:
            raise InputError(f"{source}: field 'faces' indexes vertices outside [0, {V})")
        if self.fingertip_ids.min() < 0 or self.fingertip_ids.max() >= V:
            raise InputError(f"{source}: field 'fingertip_ids' indexes vertices outside [0, {V})")
        if self.side not in ("right", "left"):
            raise InputError(f"{source}: field 'side' must be 'right' or 'left', got {self.side!r}")

    # ------------------------------------------------------------------ I/O
    def save_npz(self, path: str | os.PathLike) -> None:
        """Write atomically as an uncompressed-deterministic .npz (same data -> same bytes)."""
        path = Path(path)
        arrays = {f: getattr(self, f) for f in self.ARRAY_FIELDS}
        arrays["side"] = np.array(self.side)
        arrays["name"] = np.array(self.name)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        _atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load_npz(cls, path: str | os.PathLike) -> "HandModelData":
        path = Path(path)
        if not path.is_file():
            raise MissingFileError(f"hand model file not found: {path}")
        with NpzReader(path, "hand model .npz") as z:
            missing = [f for f in (*cls.ARRAY_FIELDS, "side") if f not in z.files]
            if missing:
                raise InputError(f"{path}: missing field(s) {missing}; expected {list(cls.ARRAY_FIELDS) + ['side', 'name']}")
            kwargs = {f: z[f] for f in cls.ARRAY_FIELDS}
            side = str(z["side"])
            name = str(z["name"]) if "name" in z.files else path.stem
        data = cls.__new__(cls)
        for k, v in kwargs.items():
            setattr(data, k, v)
        data.side, data.name = side, name
        try:
            data.__post_init__()
        except ValueError as exc:
            raise InputError(f"{path}: {exc}") from None
        except (TypeError, IndexError) as exc:  # arrays of a wrong kind that the checks above could not name
            raise InputError(f"{path}: malformed hand model arrays ({type(exc).__name__}: {exc})") from None
        return data

    def mirrored(self) -> "HandModelData":
        """The model of the other side: the mirror image in the plane x = 0.

        With M = diag(-1, 1, 1): vertices and blend shapes get x negated, faces are re-oriented, and rotations
        are conjugated (R -> M R M, i.e. axis-angle (x, y, z) -> (x, -y, -z)), which flips the sign of the pose
        features (R - I)_{rs} with exactly one of r, s equal to 0 (the x row/column) and, for the pose PCA,
        negates the y and z entries of every joint. Consequently the mirrored model with global_orient
        (x, -y, -z), transl (-x, y, z) and the SAME betas and pose coefficients gives vertices equal to the
        original's with x negated.
        """
        feat_sign = np.outer(_MIRROR, _MIRROR).reshape(-1)  # sign of (M R M)_{rs} relative to R_{rs}
        feat_sign = np.tile(feat_sign, NUM_JOINTS - 1)
        aa_sign = np.tile(np.array([1.0, -1.0, -1.0]), 15)
        return HandModelData(
            v_template=self.v_template * _MIRROR,
            shapedirs=self.shapedirs * _MIRROR[None, :, None],
            posedirs=self.posedirs * _MIRROR[None, :, None] * feat_sign[None, None, :],
            J_regressor=self.J_regressor.copy(),
            weights=self.weights.copy(),
            parents=self.parents.copy(),
            faces=self.faces[:, [0, 2, 1]].copy(),
            hands_components=self.hands_components * aa_sign[None, :],
            hands_mean=self.hands_mean * aa_sign,
            fingertip_ids=self.fingertip_ids.copy(),
            side="left" if self.side == "right" else "right",
            name=self.name,
        )
