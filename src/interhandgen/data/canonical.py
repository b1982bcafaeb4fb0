"""The model's canonical two-hand representation, mirroring, and standardisation.

Per hand, 64 numbers (``layout`` below): 45 pose (PCA coefficients of the hand model, all 45 components,
``hands_mean`` added by the layer, i.e. ``flat_hand_mean=False``), 10 shape (betas), 6 rotation (first two
COLUMNS of the rotation matrix, :func:`interhandgen.rotations.matrix_to_rot6d`) and 3 translation (metres).

Canonical frame (as in InterHandGen): both hands are centred on the middle-finger MCP joint
(:data:`interhandgen.hand.CENTER_JOINT`) of the posed world hand. The anchor hand gets the identity
rotation and zero translation; with R_a, R_o the world root rotations and J_a, J_o the world centre joints,
the other hand gets

    R_rel = R_a^T R_o,        t_rel = R_a^T (J_o - J_a).

A pair is stored as x [N, 2, 64], anchor first. Going back (:func:`to_world`) the anchor's world pose
(R_a, J_a) is applied (identity and origin when not given) and, because MANO's global rotation turns about the
shaped rest root joint (not the origin), each hand's ``transl`` is solved through the layer's kinematics:
transl = J_target - J_center(global_orient, pose, betas, transl = 0), exact because transl enters linearly.
J_center is :func:`center_joint_world`, the closed form of the hand layer's kinematic chain for that joint.

The anchor's rotation/translation slots are constants in data (identity 6D [1,0,0,0,1,0], zero translation);
:func:`to_world` ignores them (the denoiser is not trained on them).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Mapping, NamedTuple

import numpy as np
import torch

from interhandgen.data.format import (
    HAND_SIDES,
    HandModelSpec,
    HandParams,
    TwoHandSet,
    _model_data,
    atomic_write,
    full_pose_from,
    pose_from_full,
)
from interhandgen.hand.joints import CENTER_JOINT
from interhandgen.rotations import axis_angle_to_matrix, matrix_to_axis_angle, matrix_to_rot6d, rot6d_to_matrix
from interhandgen.exceptions import InputError, MissingFileError

__all__ = [
    "HAND_DIM",
    "LAYOUT_VERSION",
    "RIGID_SLICE",
    "POSE_SLICE",
    "BETAS_SLICE",
    "ROT_SLICE",
    "TRANSL_SLICE",
    "IDENTITY_ROT6D",
    "CanonicalPairs",
    "to_canonical",
    "canonical_vertices",
    "ANCHOR_SIDE",
    "to_world",
    "mirror",
    "mirror_canonical",
    "mirror_error",
    "rest_root_joint",
    "center_joint_world",
    "Standardizer",
    "load_training_arrays",
]

# The canonical 64-number layout of one hand, defined here once (docs/data.md); LAYOUT_VERSION names it in model
# files, so a model trained on another layout is refused instead of decoded wrongly.
LAYOUT_VERSION = 1
HAND_DIM = 64
POSE_SLICE = slice(0, 45)
BETAS_SLICE = slice(45, 55)
ROT_SLICE = slice(55, 61)
TRANSL_SLICE = slice(61, 64)
RIGID_SLICE = slice(ROT_SLICE.start, TRANSL_SLICE.stop)  # rotation + translation: constant for the anchor
IDENTITY_ROT6D = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
# The side the generators place at the canonical origin (the cascade samples it first).
ANCHOR_SIDE = "left"
# Mirror in the plane x = 0, and its action on axis-angle vectors (M R M  <->  (x, -y, -z)).
_MIRROR = np.array([-1.0, 1.0, 1.0])
_AA_MIRROR = np.array([1.0, -1.0, -1.0])


def canonical_vertices(x: torch.Tensor, model) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode raw (de-standardised) canonical hand vectors [B, 64] with a hand layer ``model`` (:class:`interhandgen.hand.HandModel`) into vertices and joints in the anchor frame.

    The hand is posed with zero global orientation, centred on its middle-finger MCP joint, then rotated by the
    6D rotation about that joint and moved to the translation: v = R (v0 - c0) + t. Differentiable.
    Returns vertices [B, V, 3] and joints [B, 21, 3], metres.
    """
    if x.dim() != 2 or x.shape[1] != HAND_DIM:
        raise InputError(f"x must have shape [B, 64], got {list(x.shape)}")
    out = model(betas=x[:, BETAS_SLICE], hand_pose=x[:, POSE_SLICE])
    R = rot6d_to_matrix(x[:, ROT_SLICE])
    c = out.joints[:, CENTER_JOINT : CENTER_JOINT + 1]
    t = x[:, None, TRANSL_SLICE]
    verts = (out.vertices - c) @ R.transpose(1, 2) + t
    joints = (out.joints - c) @ R.transpose(1, 2) + t
    return verts, joints


def _other(side: str) -> str:
    if side not in HAND_SIDES:
        raise InputError(f"anchor must be 'left' or 'right', got {side!r}")
    return "right" if side == "left" else "left"


def _models_data(models: Mapping[str, Any] | None, spec: HandModelSpec) -> dict:
    if models is None:
        models = spec.load("pca", False)
    if not isinstance(models, Mapping) or set(HAND_SIDES) - set(models):
        raise InputError("models must be a mapping with keys 'left' and 'right'")
    return {side: _model_data(models[side], side) for side in HAND_SIDES}


def center_joint_world(data, betas: torch.Tensor, full_pose: torch.Tensor, global_orient: torch.Tensor,
                       transl: torch.Tensor) -> torch.Tensor:
    """[N, 3] world position of the centre joint (:data:`interhandgen.hand.CENTER_JOINT`), metres.

    The closed form of the hand layer's kinematic chain for that one joint: with J_k(betas) the shaped rest
    joints and A_k the world rigid transform of joint k (A_root(x) = R (x - J_0) + J_0 + transl, A_k(x) =
    A_parent(k)(R_k (x - J_k) + J_k)), the posed joint is A_parent(c)(J_c). Only the rotations of its ancestors
    enter (for MANO's tree the middle MCP's parent is the root, so only global_orient does), which makes this
    about 100x cheaper than a full forward pass; tests check it against the layer's joints.

    Args:
        data: HandModelData. betas [N, S], full_pose [N, 45] (mean-included joint axis-angle), global_orient [N, 3],
        transl [N, 3]; one dtype and device.
    """
    chain = []  # the centre joint's ancestors, nearest first
    k = int(data.parents[CENTER_JOINT])
    while k >= 0:
        chain.append(k)
        k = int(data.parents[k])
    rows = [CENTER_JOINT] + chain
    reg = data.J_regressor[rows]  # [K, V]
    base = torch.as_tensor(reg @ data.v_template, dtype=betas.dtype, device=betas.device)  # [K, 3]
    dirs = torch.as_tensor(np.einsum("kv,vds->kds", reg, data.shapedirs), dtype=betas.dtype, device=betas.device)
    rest = base + torch.einsum("kds,ns->nkd", dirs, betas)  # [N, K, 3]
    x = rest[:, 0]
    for i, k in enumerate(chain, start=1):
        aa = global_orient if k == 0 else full_pose[:, 3 * (k - 1): 3 * k]
        J_k = rest[:, i]
        x = (axis_angle_to_matrix(aa) @ (x - J_k)[..., None])[..., 0] + J_k
    return x + transl


class CanonicalPairs(NamedTuple):
    """Result of :func:`to_canonical`.

    x: [N, 2, 64] canonical vectors, anchor first. anchor_rotation: [N, 3, 3] world root rotation of the
    anchor (R_a). anchor_center: [N, 3] world centre joint of the anchor (J_a), metres.
    """

    x: torch.Tensor
    anchor_rotation: torch.Tensor
    anchor_center: torch.Tensor


def to_canonical(
    two_hands: TwoHandSet,
    models: Mapping[str, Any] | None = None,
    anchor: str = "left",
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float64,
) -> CanonicalPairs:
    """World parameters -> canonical vectors x [N, 2, 64] (anchor first) and the anchor's world pose.

    Args:
        two_hands: the set (any pose space / flat_hand_mean; poses are converted exactly to the canonical
            PCA coefficients with the models' own ``hands_components`` and ``hands_mean``).
        models: {"left", "right"}: HandModel or HandModelData; default ``two_hands.hand_models()``.
        anchor: the side that gets the identity frame.
        dtype: of the outputs; arithmetic is float64.
    """
    other = _other(anchor)
    data = _models_data(models, two_hands.hand_model)
    dev = torch.device(device)
    f64 = torch.float64
    parts, rot, center = {}, {}, {}
    for side in HAND_SIDES:
        hand = two_hands.hand(side)
        full = full_pose_from(hand.pose, two_hands.pose_space, two_hands.flat_hand_mean, data[side])
        coeffs = pose_from_full(full, "pca", False, data[side])
        t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float64), dtype=f64, device=dev)  # noqa: E731
        betas, go = t(hand.betas), t(hand.global_orient)
        rot[side] = axis_angle_to_matrix(go)
        center[side] = center_joint_world(data[side], betas, t(full), go, t(hand.transl))
        parts[side] = (t(coeffs), betas)
    R_a, J_a = rot[anchor], center[anchor]
    R_rel = R_a.transpose(1, 2) @ rot[other]
    t_rel = (R_a.transpose(1, 2) @ (center[other] - J_a)[..., None])[..., 0]
    n = len(two_hands)
    anchor_vec = torch.cat([
        *parts[anchor],
        torch.tensor(IDENTITY_ROT6D, dtype=f64, device=dev).expand(n, 6),
        torch.zeros(n, 3, dtype=f64, device=dev),
    ], dim=1)
    other_vec = torch.cat([*parts[other], matrix_to_rot6d(R_rel), t_rel], dim=1)
    x = torch.stack([anchor_vec, other_vec], dim=1)
    return CanonicalPairs(x.to(dtype), R_a.to(dtype), J_a.to(dtype))


def _check_x(x: torch.Tensor, name: str = "x") -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 3 or tuple(x.shape[1:]) != (2, HAND_DIM):
        raise InputError(f"{name} must have shape [N, 2, {HAND_DIM}], got {list(x.shape)}")
    if not torch.isfinite(x).all():
        raise InputError(f"{name} contains NaN or inf")


def to_world(
    x: torch.Tensor,
    models: Mapping[str, Any] | None = None,
    anchor: str = "left",
    anchor_world: tuple[torch.Tensor, torch.Tensor] | None = None,
    hand_model: HandModelSpec | None = None,
    pose_space: str = "pca",
    flat_hand_mean: bool = False,
    **set_fields,
) -> TwoHandSet:
    """Canonical vectors x [N, 2, 64] (anchor first) -> a world-frame :class:`TwoHandSet` (float64).

    Args:
        models: the hand models x was made with; default loaded from ``hand_model``.
        anchor_world: (R_a [N, 3, 3], J_a [N, 3]) the anchor's world rotation and centre joint (metres), e.g.
            from :func:`to_canonical`; default identity and the origin. The anchor's own rotation/translation
            slots in x are ignored.
        hand_model: spec recorded in the output (default: the bundled open hand).
        pose_space, flat_hand_mean: conventions of the output poses (exact conversion).
        set_fields: extra TwoHandSet fields (category, category_names, metadata, ...).
    """
    _check_x(x)
    other = _other(anchor)
    spec = hand_model or HandModelSpec.open_hand()
    data = _models_data(models, spec)
    dev = x.device
    x = x.detach().to(torch.float64)
    n = x.shape[0]
    if anchor_world is None:
        R_a = torch.eye(3, dtype=torch.float64, device=dev).expand(n, 3, 3)
        J_a = torch.zeros(n, 3, dtype=torch.float64, device=dev)
    else:
        R_a, J_a = (torch.as_tensor(a).to(device=dev, dtype=torch.float64) for a in anchor_world)
        if R_a.shape != (n, 3, 3) or J_a.shape != (n, 3):
            raise InputError(f"anchor_world must be (R [N, 3, 3], J [N, 3]) with N = {n}, got {list(R_a.shape)} and {list(J_a.shape)}")
    R_o = R_a @ rot6d_to_matrix(x[:, 1, ROT_SLICE])
    J_o = J_a + (R_a @ x[:, 1, TRANSL_SLICE, None])[..., 0]
    targets = {anchor: (R_a, J_a, x[:, 0]), other: (R_o, J_o, x[:, 1])}
    hands = {}
    for side in HAND_SIDES:
        R, J, vec = targets[side]
        coeffs = vec[:, POSE_SLICE].cpu().numpy()
        full = full_pose_from(coeffs, "pca", False, data[side])
        betas = vec[:, BETAS_SLICE]
        go = matrix_to_axis_angle(R)
        full_t = torch.as_tensor(full, dtype=torch.float64, device=dev)
        c0 = center_joint_world(data[side], betas, full_t, go, torch.zeros_like(J))
        hands[side] = HandParams(
            pose=pose_from_full(full, pose_space, flat_hand_mean, data[side]),
            betas=betas.cpu().numpy(),
            global_orient=go.cpu().numpy(),
            transl=(J - c0).cpu().numpy(),
        )
    return TwoHandSet(hands["left"], hands["right"], pose_space=pose_space, flat_hand_mean=flat_hand_mean,
                      hand_model=spec, **set_fields)


# ---------------------------------------------------------------------------------------------------------------------
# Mirroring
# ---------------------------------------------------------------------------------------------------------------------

def rest_root_joint(data, betas: np.ndarray) -> np.ndarray:
    """[N, 3] the shaped rest-pose root joint J0(betas) = J_regressor[0] (v_template + shapedirs betas), metres."""
    betas = np.asarray(betas, dtype=np.float64)
    reg = data.J_regressor[0]
    base = reg @ data.v_template  # [3]
    dirs = np.einsum("v,vks->ks", reg, data.shapedirs)  # [3, S]
    return base + betas @ dirs.T


def mirror(two_hands: TwoHandSet, models: Mapping[str, Any] | None = None) -> TwoHandSet:
    """The mirror image of every pair in the plane x = 0, with the sides swapped.

    The new left hand is the mirror of the old right hand and vice versa, so the new pair is a valid pair of
    the mirrored geometry: its vertices are the old pair's with x negated and sides swapped. Per hand
    (M = diag(-1, 1, 1)): betas unchanged; every joint rotation conjugated by M (axis-angle (x, y, z) ->
    (x, -y, -z)) in the full (mean-included) pose, then re-expressed in the target model's pose space;
    global_orient (x, -y, -z); and

        transl' = M (transl + J0_src(betas)) - J0_dst(betas)

    with J0 the shaped rest root joint of the source / target model (the global rotation turns about it).
    This is exact when the target model is the mirror image of the source model up to a translation (the
    open hand, whose left model is ``mirrored()`` right; for MANO, whose left and right files are separate
    fits, :func:`mirror_error` measures the residual). ``object_pose`` (if any) is mirrored the same way
    (rotation (x, -y, -z), translation (-x, y, z)): exact for an object template mirrored in x = 0.
    """
    data = _models_data(models, two_hands.hand_model)
    new = {}
    for src in HAND_SIDES:
        dst = _other(src)
        hand = two_hands.hand(src)
        full = full_pose_from(hand.pose, two_hands.pose_space, two_hands.flat_hand_mean, data[src])
        full_m = full * np.tile(_AA_MIRROR, 15)
        betas = np.asarray(hand.betas, dtype=np.float64)
        transl = (np.asarray(hand.transl, dtype=np.float64) + rest_root_joint(data[src], betas)) * _MIRROR
        transl -= rest_root_joint(data[dst], betas)
        new[dst] = HandParams(
            pose=pose_from_full(full_m, two_hands.pose_space, two_hands.flat_hand_mean, data[dst]),
            betas=betas,
            global_orient=np.asarray(hand.global_orient, dtype=np.float64) * _AA_MIRROR,
            transl=transl,
        )
    obj = two_hands.object_pose
    if obj is not None:
        obj = np.concatenate([obj[:, :1], obj[:, 1:4] * _AA_MIRROR, obj[:, 4:7] * _MIRROR], axis=1)
    meta = {**two_hands.metadata, "mirrored": not two_hands.metadata.get("mirrored", False)}
    return two_hands._replace(left=new["left"], right=new["right"], object_pose=obj, metadata=meta)


def mirror_error(two_hands: TwoHandSet, models: Mapping[str, Any] | None = None) -> float:
    """Largest vertex deviation (metres) of :func:`mirror` from the exact mirror image of the pairs.

    0 up to rounding for models that are mirror images of each other; for MANO it measures how far the
    left and right model files are from being mirror images.
    """
    models = models or two_hands.hand_models()
    before = two_hands.vertices(models, dtype=torch.float64)
    after = mirror(two_hands, models).vertices(models, dtype=torch.float64)
    m = torch.tensor(_MIRROR, dtype=torch.float64)
    err = 0.0
    for src in HAND_SIDES:
        if before[src].numel():
            err = max(err, float((after[_other(src)] - before[src].cpu() * m).abs().max()))
    return err


def mirror_canonical(x: torch.Tensor) -> torch.Tensor:
    """Mirror canonical pairs directly: x [N, 2, 64] -> [N, 2, 64] (anchor first, same anchor side).

    The new anchor is the mirror of the old other hand, the new other hand the mirror of the old anchor:
    pose and shape numbers are unchanged (the mirrored model's PCA basis is the mirrored basis), and

        R' = M R_rel^T M,    t' = -M R_rel^T t_rel.

    Equal to ``to_canonical(mirror(set))`` when the two hand models are exact mirror images (the open hand);
    differentiable and batched, for on-the-fly augmentation.
    """
    _check_x(x)
    M = torch.tensor(_MIRROR, dtype=x.dtype, device=x.device)
    R_rel = rot6d_to_matrix(x[:, 1, ROT_SLICE])
    t_rel = x[:, 1, TRANSL_SLICE]
    Rt = R_rel.transpose(1, 2)
    R_new = M[:, None] * Rt * M[None, :]
    t_new = -M * (Rt @ t_rel[..., None])[..., 0]
    anchor = x[:, 1].clone()
    anchor[:, ROT_SLICE] = torch.tensor(IDENTITY_ROT6D, dtype=x.dtype, device=x.device)
    anchor[:, TRANSL_SLICE] = 0.0
    other = torch.cat([x[:, 0, :ROT_SLICE.start], matrix_to_rot6d(R_new), t_new], dim=1)
    return torch.stack([anchor, other], dim=1)


# ---------------------------------------------------------------------------------------------------------------------
# Standardisation
# ---------------------------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Standardizer:
    """Per-dimension standardisation of canonical pairs: z = (x - mean) / std, mean and std [2, 64].

    Dimensions whose standard deviation over the training split is below ``min_std`` (exactly constant ones:
    the anchor's six rotation and three translation numbers, always identity / zero) get std 1 and are listed
    in ``constant``; they are only centred. ``min_std`` is part of the saved state.
    """

    mean: torch.Tensor
    std: torch.Tensor
    constant: torch.Tensor  # [2, 64] bool
    min_std: float = 1e-6

    def __post_init__(self) -> None:
        self.mean = torch.as_tensor(self.mean, dtype=torch.float64)
        self.std = torch.as_tensor(self.std, dtype=torch.float64)
        self.constant = torch.as_tensor(self.constant, dtype=torch.bool)
        for name in ("mean", "std", "constant"):
            t = getattr(self, name)
            if tuple(t.shape) != (2, HAND_DIM):
                raise InputError(f"Standardizer.{name} must have shape [2, {HAND_DIM}], got {list(t.shape)}")
        if not torch.isfinite(self.mean).all() or not torch.isfinite(self.std).all() or (self.std <= 0).any():
            raise InputError("Standardizer.mean must be finite and Standardizer.std finite and positive")

    @classmethod
    def fit(cls, x: torch.Tensor, min_std: float = 1e-6) -> "Standardizer":
        """Statistics of x [N, 2, 64] (N >= 2): mean and population std per dimension."""
        _check_x(x)
        if x.shape[0] < 2:
            raise InputError(f"Standardizer.fit needs at least 2 samples, got {x.shape[0]}")
        x = x.detach().to(torch.float64).cpu()
        mean = x.mean(0)
        std = x.std(0, unbiased=False)
        constant = std < min_std
        return cls(mean, torch.where(constant, torch.ones_like(std), std), constant, float(min_std))

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mean.to(like.device, like.dtype), self.std.to(like.device, like.dtype)

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats(x)
        return (x - mean) / std

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats(z)
        return z * std + mean

    def state_dict(self) -> dict[str, Any]:
        """Plain-Python state (lists), e.g. to store in a checkpoint or JSON."""
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "constant": self.constant.tolist(),
                "min_std": self.min_std, "layout": {name: [sl.start, sl.stop] for name, sl in (("pose", POSE_SLICE), ("betas", BETAS_SLICE),
                                                                    ("rot6d", ROT_SLICE), ("transl", TRANSL_SLICE))}}

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> "Standardizer":
        missing = [k for k in ("mean", "std", "constant") if k not in state]
        if missing:
            raise InputError(f"Standardizer state is missing {missing}")
        f64 = torch.float64
        return cls(torch.as_tensor(np.asarray(state["mean"], dtype=np.float64), dtype=f64),
                   torch.as_tensor(np.asarray(state["std"], dtype=np.float64), dtype=f64),
                   torch.as_tensor(np.asarray(state["constant"], dtype=bool)), float(state.get("min_std", 1e-6)))

    def save(self, path: str | os.PathLike) -> Path:
        """Write as .json or .npz (by suffix), atomically."""
        path = Path(path)
        if path.suffix == ".json":
            payload = json.dumps(self.state_dict(), indent=1).encode()
            atomic_write(path, lambda fh: fh.write(payload))
        elif path.suffix == ".npz":
            arrays = {"mean": self.mean.numpy(), "std": self.std.numpy(), "constant": self.constant.numpy(),
                      "min_std": np.array(self.min_std)}
            atomic_write(path, lambda fh: np.savez(fh, **arrays))
        else:
            raise InputError(f"Standardizer files end in .json or .npz, got {path}")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Standardizer":
        path = Path(path)
        if not path.is_file():
            raise MissingFileError(f"standardizer file not found: {path}")
        try:
            if path.suffix == ".json":
                return cls.from_state_dict(json.loads(path.read_text()))
            if path.suffix == ".npz":
                with np.load(path, allow_pickle=False) as z:
                    return cls.from_state_dict({k: z[k] for k in z.files} | {"min_std": float(z["min_std"]) if "min_std" in z.files else 1e-6})
        except (ValueError, KeyError, json.JSONDecodeError) as exc:
            raise InputError(f"{path}: {exc}") from None
        raise InputError(f"Standardizer files end in .json or .npz, got {path}")


# ---------------------------------------------------------------------------------------------------------------------
# Trainer input
# ---------------------------------------------------------------------------------------------------------------------

def load_training_arrays(
    npz_path: str | os.PathLike | TwoHandSet,
    split: str | None = "train",
    anchor: str = "left",
    mirror_augment: bool = False,
    models: Mapping[str, Any] | None = None,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Canonical float32 pairs [N, 2, 64] (anchor first) of one split of a TwoHandSet file, for the trainer.

    Args:
        npz_path: a TwoHandSet .npz (or a loaded set).
        split: a name from the file's ``split_names``; None takes every sample.
        mirror_augment: append the mirrored pairs (:func:`mirror`, sides swapped) after the originals, giving
            2N pairs: the deterministic counterpart of the reference code's random left/right flip.
    """
    two_hands = npz_path if isinstance(npz_path, TwoHandSet) else TwoHandSet.load(npz_path)
    if split is not None:
        if "split" not in two_hands.labels:
            src = npz_path if not isinstance(npz_path, TwoHandSet) else "the set"
            raise InputError(f"{src}: split {split!r} requested but the file has no 'split' field (use split=None for all samples)")
        two_hands = two_hands.select_split(split)
    if len(two_hands) == 0:
        raise InputError(f"split {split!r} is empty")
    models = models or two_hands.hand_models(device=device)
    x = to_canonical(two_hands, models, anchor=anchor, device=device).x
    if mirror_augment:
        x = torch.cat([x, to_canonical(mirror(two_hands, models), models, anchor=anchor, device=device).x])
    return x.to(torch.float32)
