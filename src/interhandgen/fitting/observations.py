"""What a fit is given: 2D keypoints with confidences and a pinhole camera, noisy 3D joints, masks, an initial
two-hand estimate; and the ``obs.json`` file format of ``interhandgen fit`` (docs/fitting.md).

Inside the library every observation is batched over frames, both hands, in our 21-joint order (MANO21,
:mod:`interhandgen.hand.joints`), left hand at index 0 and right hand at index 1. A confidence of 0 means "not
observed": a masked joint, a hand not seen, a frame without that kind of observation. Confidences weight the data
terms linearly, so a 0 removes a joint from the fit exactly.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from interhandgen._atomic import atomic_write
from interhandgen.data.format import HAND_SIDES, TwoHandSet
from interhandgen.exceptions import InputError, MissingFileError
from interhandgen.hand.joints import INTERHAND_FROM_MANO21, OPENPOSE_FROM_MANO21

NUM_JOINTS = 21
# Index into MANO21 giving each supported order (order[i] = MANO21[FROM_MANO21[order][i]]).
FROM_MANO21 = {
    "mano": list(range(NUM_JOINTS)),
    "interhand": list(INTERHAND_FROM_MANO21),
    "openpose": list(OPENPOSE_FROM_MANO21),
}
JOINT_ORDERS = tuple(FROM_MANO21)
CAMERA_FIELDS = ("fx", "fy", "cx", "cy", "width", "height")


def to_mano21(joints: torch.Tensor | np.ndarray, order: str):
    """Reorder joints [..., 21, C] from ``order`` to MANO21 (exact permutation)."""
    if order not in FROM_MANO21:
        raise InputError(f"joint_order must be one of {JOINT_ORDERS}, got {order!r}")
    inverse = np.argsort(FROM_MANO21[order])
    return joints[..., inverse, :]


def from_mano21(joints: torch.Tensor | np.ndarray, order: str):
    """Reorder joints [..., 21, C] from MANO21 to ``order``."""
    if order not in FROM_MANO21:
        raise InputError(f"joint_order must be one of {JOINT_ORDERS}, got {order!r}")
    return joints[..., FROM_MANO21[order], :]


@dataclasses.dataclass
class Observations:
    """Batched observations of B frames (MANO21 order, hands [left, right]); any field may be None.

    keypoints_2d: [B, 2, 21, 2] pixels; confidence_2d: [B, 2, 21] >= 0 (0: not observed).
    keypoints_3d: [B, 2, 21, 3] metres, camera frame; confidence_3d: [B, 2, 21] >= 0.
    intrinsics: [B, 4] (fx, fy, cx, cy) of the OpenCV pinhole camera (needed with 2D keypoints).
    image_size: (width, height) in pixels, for rendering.
    initial: a TwoHandSet of B pairs in the camera frame to start from and refine.
    """

    keypoints_2d: torch.Tensor | None = None
    confidence_2d: torch.Tensor | None = None
    keypoints_3d: torch.Tensor | None = None
    confidence_3d: torch.Tensor | None = None
    intrinsics: torch.Tensor | None = None
    image_size: tuple[int, int] | None = None
    initial: TwoHandSet | None = None

    def __post_init__(self) -> None:
        sizes = set()
        for name, dims in (("keypoints_2d", (2, NUM_JOINTS, 2)), ("confidence_2d", (2, NUM_JOINTS)),
                           ("keypoints_3d", (2, NUM_JOINTS, 3)), ("confidence_3d", (2, NUM_JOINTS)),
                           ("intrinsics", (4,))):
            t = getattr(self, name)
            if t is None:
                continue
            t = torch.as_tensor(t, dtype=torch.float32) if not isinstance(t, torch.Tensor) else t
            if t.dim() != len(dims) + 1 or tuple(t.shape[1:]) != dims:
                raise InputError(f"Observations.{name} must have shape [B, {', '.join(map(str, dims))}], "
                                 f"got {list(t.shape)}")
            if not torch.isfinite(t).all():
                raise InputError(f"Observations.{name} contains NaN or inf")
            setattr(self, name, t)
            sizes.add(t.shape[0])
        if self.initial is not None:
            sizes.add(len(self.initial))
        if len(sizes) != 1:
            raise InputError(f"Observations need at least one field and one batch size for all, got sizes {sorted(sizes)}")
        for kp, conf in (("keypoints_2d", "confidence_2d"), ("keypoints_3d", "confidence_3d")):
            if (getattr(self, kp) is None) != (getattr(self, conf) is None):
                raise InputError(f"Observations.{kp} and Observations.{conf} must be given together")
            c = getattr(self, conf)
            if c is not None and (c < 0).any():
                raise InputError(f"Observations.{conf} must be >= 0")
        if self.keypoints_2d is not None and self.intrinsics is None:
            raise InputError("Observations.keypoints_2d need Observations.intrinsics (fx, fy, cx, cy)")
        if self.intrinsics is not None and not (self.intrinsics[:, :2] > 0).all():
            raise InputError("Observations.intrinsics: fx and fy must be > 0")

    def __len__(self) -> int:
        for t in (self.keypoints_2d, self.keypoints_3d, self.intrinsics):
            if t is not None:
                return t.shape[0]
        return len(self.initial)

    def to(self, device: str | torch.device) -> "Observations":
        moved = {f.name: (v.to(device) if isinstance(v, torch.Tensor) else v)
                 for f in dataclasses.fields(self) for v in [getattr(self, f.name)]}
        return Observations(**moved)

    def observed_hands(self) -> torch.Tensor:
        """[B, 2] bool: does any observation (2D, 3D or the initial estimate) constrain the hand?"""
        seen = torch.zeros(len(self), 2, dtype=torch.bool)
        for c in (self.confidence_2d, self.confidence_3d):
            if c is not None:
                seen |= (c > 0).any(-1).cpu()
        if self.initial is not None:
            seen[:] = True
        return seen


# ---------------------------------------------------------------------------------------------------------------------
# obs.json
# ---------------------------------------------------------------------------------------------------------------------

def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{where}: expected a finite number, got {value!r}")
    return float(value)


def _points(value: Any, width: int, where: str) -> np.ndarray:
    names = "[u, v, conf]" if width == 3 else "[x, y, z, conf]"
    if not isinstance(value, list) or len(value) != NUM_JOINTS:
        got = f"a list of {len(value)}" if isinstance(value, list) else type(value).__name__
        raise InputError(f"{where}: expected a list of {NUM_JOINTS} entries {names}, got {got}")
    out = np.zeros((NUM_JOINTS, width))
    for j, row in enumerate(value):
        if not isinstance(row, list) or len(row) != width:
            raise InputError(f"{where}[{j}]: expected {names} ({width} numbers), got {row!r}")
        out[j] = [_number(v, f"{where}[{j}]") for v in row]
    bad = (out[:, -1] < 0) | (out[:, -1] > 1)
    if bad.any():
        j = int(np.nonzero(bad)[0][0])
        raise InputError(f"{where}[{j}]: confidence must be in [0, 1] (0: not observed), got {out[j, -1]}")
    if width == 4:  # camera frame, z forward: an observed joint lies in front of the camera
        behind = (out[:, 2] <= 0) & (out[:, 3] > 0)
        if behind.any():
            j = int(np.nonzero(behind)[0][0])
            raise InputError(f"{where}[{j}]: z must be > 0 (metres in front of the camera, OpenCV axes: z forward), "
                             f"got {out[j, 2]}")
    return out


def parse_observations(doc: Any, source: str = "obs.json") -> tuple[Observations, str]:
    """Observations from the parsed ``obs.json`` document (format in docs/fitting.md); returns (observations,
    joint_order). Errors name the frame and field."""
    if not isinstance(doc, dict):
        raise InputError(f"{source}: the top level must be an object with 'camera', 'joint_order' and 'frames'")
    order = doc.get("joint_order", "openpose")
    if order not in FROM_MANO21:
        raise InputError(f"{source}: joint_order must be one of {JOINT_ORDERS}, got {order!r}")
    frames = doc.get("frames")
    if not isinstance(frames, list) or not frames:
        raise InputError(f"{source}: 'frames' must be a non-empty list of frames")
    n = len(frames)
    kp2 = np.zeros((n, 2, NUM_JOINTS, 3))
    kp3 = np.zeros((n, 2, NUM_JOINTS, 4))
    has2 = has3 = False
    for i, frame in enumerate(frames):
        where = f"{source}: frames[{i}]"
        if not isinstance(frame, dict):
            raise InputError(f"{where}: expected an object with 'left' and/or 'right', got {type(frame).__name__}")
        unknown = set(frame) - set(HAND_SIDES)
        if unknown:
            raise InputError(f"{where}: unknown field(s) {sorted(unknown)}; a frame has 'left' and 'right'")
        for s, side in enumerate(HAND_SIDES):
            if side not in frame:  # a forgotten hand is an error, not a hand "not seen"
                raise InputError(f"{where}: missing '{side}' (give null for a hand that is not seen)")
            hand = frame[side]
            if hand is None:
                continue
            if not isinstance(hand, dict):
                raise InputError(f"{where}.{side}: expected an object or null, got {type(hand).__name__}")
            unknown = set(hand) - {"keypoints_2d", "keypoints_3d"}
            if unknown:
                raise InputError(f"{where}.{side}: unknown field(s) {sorted(unknown)}; expected keypoints_2d "
                                 "and/or keypoints_3d")
            given = [k for k in ("keypoints_2d", "keypoints_3d") if hand.get(k) is not None]
            if not given:
                raise InputError(f"{where}.{side}: holds neither keypoints_2d nor keypoints_3d (give null for a "
                                 "hand that is not seen)")
            if "keypoints_2d" in given:
                kp2[i, s] = to_mano21(_points(hand["keypoints_2d"], 3, f"{where}.{side}.keypoints_2d"), order)
                has2 = True
            if "keypoints_3d" in given:
                kp3[i, s] = to_mano21(_points(hand["keypoints_3d"], 4, f"{where}.{side}.keypoints_3d"), order)
                has3 = True
    if not (has2 or has3):
        raise InputError(f"{source}: no frame holds keypoints_2d or keypoints_3d")
    intrinsics = size = None
    camera = doc.get("camera")
    if has2 or camera is not None:
        if not isinstance(camera, dict):
            raise InputError(f"{source}: 'camera' must be an object with {list(CAMERA_FIELDS)} (needed for keypoints_2d)")
        missing = [k for k in CAMERA_FIELDS if k not in camera]
        if missing:
            raise InputError(f"{source}: camera is missing {missing}")
        vals = {k: _number(camera[k], f"{source}: camera.{k}") for k in CAMERA_FIELDS}
        for k in ("fx", "fy", "width", "height"):
            if vals[k] <= 0:
                raise InputError(f"{source}: camera.{k} must be > 0, got {vals[k]}")
        for k in ("width", "height"):
            if vals[k] != int(vals[k]):
                raise InputError(f"{source}: camera.{k} must be a whole number of pixels, got {vals[k]}")
        intrinsics = torch.tensor([[vals["fx"], vals["fy"], vals["cx"], vals["cy"]]], dtype=torch.float32).expand(n, 4)
        size = (int(vals["width"]), int(vals["height"]))
    f32 = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    obs = Observations(
        keypoints_2d=f32(kp2[..., :2]) if has2 else None, confidence_2d=f32(kp2[..., 2]) if has2 else None,
        keypoints_3d=f32(kp3[..., :3]) if has3 else None, confidence_3d=f32(kp3[..., 3]) if has3 else None,
        intrinsics=intrinsics.contiguous() if intrinsics is not None else None, image_size=size)
    return obs, order


def load_observations(path: str | os.PathLike) -> tuple[Observations, str]:
    """Read and validate an ``obs.json`` file: (observations, joint_order)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"observations file not found: {path}")
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON: {exc}") from None
    return parse_observations(doc, str(path))


def observations_document(obs: Observations, joint_order: str = "openpose") -> dict:
    """The ``obs.json`` document of observations with one shared camera (inverse of :func:`parse_observations`).

    A hand with no observed joint in a frame is written as null.
    """
    if obs.intrinsics is not None and not torch.equal(obs.intrinsics, obs.intrinsics[:1].expand_as(obs.intrinsics)):
        raise InputError("obs.json holds one camera; these observations have a different camera per frame")
    doc: dict[str, Any] = {"joint_order": joint_order}
    if obs.intrinsics is not None:
        if obs.image_size is None:
            raise InputError("observations with a camera need image_size (width, height) to be written to obs.json")
        fx, fy, cx, cy = (float(v) for v in obs.intrinsics[0])
        doc["camera"] = {"fx": fx, "fy": fy, "cx": cx, "cy": cy, "width": obs.image_size[0], "height": obs.image_size[1]}
    frames = []
    for i in range(len(obs)):
        frame: dict[str, Any] = {}
        for s, side in enumerate(HAND_SIDES):
            hand = {}
            for kp, conf, key in ((obs.keypoints_2d, obs.confidence_2d, "keypoints_2d"),
                                  (obs.keypoints_3d, obs.confidence_3d, "keypoints_3d")):
                if kp is not None and bool((conf[i, s] > 0).any()):
                    rows = torch.cat([kp[i, s], conf[i, s, :, None]], dim=1)
                    hand[key] = from_mano21(rows.cpu().double().numpy(), joint_order).tolist()
            frame[side] = hand or None
        frames.append(frame)
    doc["frames"] = frames
    return doc


def save_observations(obs: Observations, path: str | os.PathLike, joint_order: str = "openpose") -> Path:
    """Write ``obs.json`` atomically."""
    payload = json.dumps(observations_document(obs, joint_order)).encode()
    atomic_write(Path(path), lambda fh: fh.write(payload))
    return Path(path)
