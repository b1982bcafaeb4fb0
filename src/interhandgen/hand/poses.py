"""Named hand poses (rest, fist, pinch, spread) and random PCA poses for any MANO-compatible hand model.

Every pose is returned as ``[45]`` axis-angle local joint rotations (radians, 15 joints x 3, MANO joint order)
that are FULL rotations: use them with ``HandModel(data, use_pca=False, flat_hand_mean=True)`` (or subtract
``hands_mean`` for a layer that adds it). ``rest`` is the flat template hand (all zeros).

Joint axes come from the model's own rest skeleton (``J_regressor @ v_template``) and its side, so the same
table works for MANO and the open hand. In the template frame:

- ``forward`` f: wrist -> middle-finger MCP; ``radial`` r: little-finger MCP -> index MCP, made orthogonal
  to f; ``palmar`` n: out of the palm, ``r x f`` for a right hand and ``f x r`` for a left hand.
- For a joint whose bone (towards its child joint, or the fingertip) has rest direction d:
  flexion axis ``unit(d x n)`` (a positive angle turns d towards the palm),
  abduction axis ``unit(d x r)`` made orthogonal to the flexion axis (positive: towards the thumb side),
  twist axis d.
- Thumb CMC (joint 13): "flexion" = palmar abduction (lifts the thumb out of the palm plane, axis
  ``d x n``), "abduction" = radial abduction (positive: away from the index finger, axis ``d x r``).
  Thumb MCP and IP flex about the direction of the model's mean pose ``hands_mean`` at that joint (both MANO
  and the open hand rest with a flexed thumb) when it is at least 0.1 rad, otherwise about ``d x m`` with
  ``m = (n - r) / sqrt(2)`` (half-way between the palm normal and the little-finger side).

Because MANO composes local joint rotations expressed in the rest template frame, axes computed from the rest
geometry are exactly the axes of the local rotations.

The table ``POSE_TABLE`` (degrees, (flexion, abduction) per joint, proximal to distal):

========  =============================  ==========================================================
name      fingers                         thumb
========  =============================  ==========================================================
rest      all 0                           all 0
fist      MCP 85, PIP 100, DIP 65         start CMC (25, -10), MCP 35, IP 30; then fitted so that the
                                          thumb tip rests on the middle phalanx of the middle finger
pinch     index MCP 40, PIP 45, DIP 20;   start CMC (35, -5), MCP 20, IP 15; then the thumb and the
          middle 20/25/10, ring 25/30/15,  index MCP/PIP flexion are fitted so that the thumb tip meets
          pinky 30/35/15                  the index fingertip (tip vertices ``PINCH_GAP_M`` = 4 mm apart)
spread    abduction index +15, middle 0,  CMC radial abduction +35
          ring -12, pinky -22
========  =============================  ==========================================================

The fits are bounded least-squares problems (scipy) over the thumb's CMC palmar/radial abduction and twist and
its MCP/IP flexion (``_THUMB_PARAMS``, plus ``_INDEX_PARAMS`` for the pinch), pulled weakly towards the table's
start values; deterministic. The spread's abductions are not fitted.

``random_pose`` draws the first ``num_comps`` pose-PCA coefficients from N(0, scale^2) (default 6 components,
scale 1.0; the components are unit vectors in axis-angle space, so a coefficient of 1 moves the 45 numbers by
1 rad in total), adds ``hands_mean``, and returns the full local rotations like the named poses.
"""

from __future__ import annotations

import numpy as np
import torch

from interhandgen.hand.joints import FINGER_JOINTS
from interhandgen.hand.layer import HandModel
from interhandgen.hand.model_data import HandModelData
from interhandgen.exceptions import InputError
from interhandgen.hand.lbs import kinematic_levels, lbs

NAMED_POSES = ("rest", "fist", "pinch", "spread")
_TIP = {"thumb": 0, "index": 1, "middle": 2, "ring": 3, "pinky": 4}  # index into fingertip_ids

# Degrees: per finger, (flexion, abduction) of its three joints, proximal to distal. Missing fingers: 0.
POSE_TABLE: dict[str, dict[str, tuple[tuple[float, float], ...]]] = {
    "rest": {},
    "fist": {
        **{f: ((85.0, 0.0), (100.0, 0.0), (65.0, 0.0)) for f in ("index", "middle", "ring", "pinky")},
        "thumb": ((25.0, -10.0), (35.0, 0.0), (30.0, 0.0)),
    },
    "pinch": {
        "index": ((40.0, 0.0), (45.0, 0.0), (20.0, 0.0)),
        "middle": ((20.0, 0.0), (25.0, 0.0), (10.0, 0.0)),
        "ring": ((25.0, 0.0), (30.0, 0.0), (15.0, 0.0)),
        "pinky": ((30.0, 0.0), (35.0, 0.0), (15.0, 0.0)),
        "thumb": ((35.0, -5.0), (20.0, 0.0), (15.0, 0.0)),
    },
    "spread": {
        "index": ((0.0, 15.0), (0.0, 0.0), (0.0, 0.0)),
        "ring": ((0.0, -12.0), (0.0, 0.0), (0.0, 0.0)),
        "pinky": ((0.0, -22.0), (0.0, 0.0), (0.0, 0.0)),
        "thumb": ((0.0, 35.0), (0.0, 0.0), (0.0, 0.0)),
    },
}
PINCH_GAP_M = 0.004
_PRIOR_WEIGHT = 0.05  # of the fits, per radian, against the thumb tip's miss in centimetres
DEFAULT_RANDOM_COMPS = 6
DEFAULT_RANDOM_SCALE = 1.0


def _unit(v: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(v)
    if norm < 1e-12:
        raise InputError("degenerate hand skeleton: a joint axis has zero length")
    return v / norm


def _model_data(model: HandModel | HandModelData) -> HandModelData:
    if isinstance(model, HandModel):
        return model.data
    if isinstance(model, HandModelData):
        return model
    raise TypeError(f"model must be a HandModel or HandModelData, got {type(model).__name__}")


def hand_frame(model: HandModel | HandModelData) -> dict[str, np.ndarray]:
    """Rest skeleton and hand axes: {"joints" [16, 3], "tips" [5, 3], "forward", "radial", "palmar" [3]}."""
    data = _model_data(model)
    joints = data.J_regressor @ data.v_template
    tips = data.v_template[data.fingertip_ids]
    forward = _unit(joints[4] - joints[0])
    across = joints[1] - joints[7]
    radial = _unit(across - (across @ forward) * forward)
    palmar = np.cross(radial, forward) if data.side == "right" else np.cross(forward, radial)
    return {"joints": joints, "tips": tips, "forward": forward, "radial": radial, "palmar": _unit(palmar)}


def joint_axes(model: HandModel | HandModelData) -> np.ndarray:
    """[15, 3, 3] unit axes of joints 1..15: ``[j - 1, k]`` is the flexion (k=0), abduction (1), twist (2) axis."""
    data = _model_data(model)
    frame = hand_frame(data)
    J, tips, n, r = frame["joints"], frame["tips"], frame["palmar"], frame["radial"]
    axes = np.zeros((15, 3, 3))
    for name, chain in FINGER_JOINTS.items():
        ends = [J[chain[1]], J[chain[2]], tips[_TIP[name]]]
        for pos, (j, end) in enumerate(zip(chain, ends)):
            d = _unit(end - J[j])
            flex = _unit(np.cross(d, n))
            if name == "thumb" and pos > 0:
                mean_axis = data.hands_mean[3 * (j - 1): 3 * j]
                mean_axis = mean_axis - (mean_axis @ d) * d
                if np.linalg.norm(mean_axis) >= 0.1:
                    flex = _unit(mean_axis)
                else:
                    flex = _unit(np.cross(d, (n - r) / np.sqrt(2)))
            abd = np.cross(d, r)
            abd = abd - (abd @ flex) * flex - (abd @ d) * d
            axes[j - 1] = np.stack([flex, _unit(abd), d])
    return axes


def _table_components(name: str) -> np.ndarray:
    """[15, 3] anatomical angles (radians) of the table row ``name``."""
    comps = np.zeros((15, 3))
    for finger, angles in POSE_TABLE[name].items():
        for j, (flex, abd) in zip(FINGER_JOINTS[finger], angles):
            comps[j - 1, :2] = np.deg2rad([flex, abd])
    return comps


def components_to_axis_angle(components: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """[..., 15, 3] (flexion, abduction, twist) radians -> [..., 45] axis-angle, with axes from :func:`joint_axes`."""
    return np.einsum("...jk,jkc->...jc", components, axes).reshape(*components.shape[:-2], 45)


class _TipKinematics:
    """Posed joints [B, 21, 3] (16 joints then the 5 fingertip vertices) of full local poses [B, 45] at mean shape.

    Exactly the hand layer's joints, but skinning only the five fingertip vertices: the rest joints are appended
    to the template as extra points that the joint regressor picks out one-to-one.
    """

    def __init__(self, data: HandModelData) -> None:

        joints = data.J_regressor @ data.v_template
        tips = data.fingertip_ids
        self.v_template = torch.as_tensor(np.concatenate([data.v_template[tips], joints]), dtype=torch.float64)
        n_pts = self.v_template.shape[0]
        self.shapedirs = torch.zeros(n_pts * 3, 1, dtype=torch.float64)
        posedirs = np.zeros((n_pts, 3, data.posedirs.shape[2]))
        posedirs[:5] = data.posedirs[tips]
        self.posedirs = torch.as_tensor(posedirs.reshape(n_pts * 3, -1).T.copy())
        regressor = np.zeros((16, n_pts))
        regressor[np.arange(16), 5 + np.arange(16)] = 1.0
        self.regressor = torch.as_tensor(regressor)
        weights = np.zeros((n_pts, 16))
        weights[:5] = data.weights[tips]
        weights[5:, 0] = 1.0  # unused: the appended joint points are never read back as vertices
        self.weights = torch.as_tensor(weights)
        self.parents = [int(p) for p in data.parents]
        self.levels = kinematic_levels(self.parents)

    def __call__(self, pose: np.ndarray) -> np.ndarray:

        pose = torch.as_tensor(np.atleast_2d(pose), dtype=torch.float64)
        B = pose.shape[0]
        full = torch.cat([torch.zeros(B, 3, dtype=torch.float64), pose], dim=1)
        verts, joints = lbs(torch.zeros(B, 1, dtype=torch.float64), full, self.v_template, self.shapedirs,
                            self.posedirs, self.regressor, self.parents, self.weights, self.levels)
        return torch.cat([joints, verts[:, :5]], dim=1).numpy()


def _bone_radius(data: HandModelData, joint: int, end: np.ndarray, joints: np.ndarray) -> float:
    """Median distance (metres) of the vertices skinned mostly to ``joint`` from its bone line."""
    ids = np.flatnonzero(data.weights.argmax(1) == joint)
    if len(ids) < 3:
        raise InputError(f"no vertices are skinned mainly to joint {joint}; cannot size the finger")
    d = _unit(end - joints[joint])
    rel = data.v_template[ids] - joints[joint]
    return float(np.median(np.linalg.norm(rel - np.outer(rel @ d, d), axis=1)))


# Free parameters of the thumb fits: (joint, component) and bounds in degrees.
_THUMB_PARAMS = (((13, 0), (-20.0, 70.0)), ((13, 1), (-40.0, 50.0)), ((13, 2), (-30.0, 60.0)),
                 ((14, 0), (-10.0, 70.0)), ((15, 0), (-15.0, 85.0)))
_INDEX_PARAMS = (((1, 0), (0.0, 90.0)), ((2, 0), (0.0, 100.0)))


def _fit_pose(data: HandModelData, axes: np.ndarray, comps: np.ndarray, params, target_fn) -> np.ndarray:
    """Fit the anatomical components ``params`` (((joint, component), (low_deg, high_deg)), ...) of ``comps``
    [15, 3] so that the thumb tip meets ``target_fn(joints [21, 3]) -> (point [3], gap metres)``, pulled weakly
    towards the start values; returns the updated [15, 3] components."""
    from scipy.optimize import least_squares

    kinematics = _TipKinematics(data)
    slots = [(j - 1, k) for (j, k), _ in params]
    bounds = np.deg2rad(np.array([b for _, b in params], dtype=np.float64))
    x0 = np.clip(np.array([comps[j, k] for j, k in slots]), bounds[:, 0], bounds[:, 1])
    rows, cols = np.array([j for j, _ in slots]), np.array([k for _, k in slots])

    def with_params(xs: np.ndarray) -> np.ndarray:
        """[B, P] parameters -> [B, 15, 3] components."""
        c = np.repeat(comps[None], len(xs), axis=0)
        c[:, rows, cols] = xs
        return c

    def residuals(xs: np.ndarray) -> np.ndarray:
        """[B, P] -> [B, 3 + P]: the thumb tip's miss (cm) and the pull towards the start."""
        joints = kinematics(components_to_axis_angle(with_params(xs), axes))
        out = []
        for x, jnt in zip(xs, joints):
            point, gap = target_fn(jnt)
            offset = jnt[16] - point
            miss = offset * (1.0 - gap / max(np.linalg.norm(offset), 1e-9))  # the part beyond the wanted gap
            out.append(np.concatenate([miss / 0.01, _PRIOR_WEIGHT * (x - x0)]))
        return np.stack(out)

    step = 1e-6

    def jacobian(x: np.ndarray) -> np.ndarray:
        # Forward differences, all perturbations in one batched forward pass.
        xs = np.concatenate([x[None], x[None] + step * np.eye(len(x))])
        res = residuals(xs)
        return ((res[1:] - res[0]) / step).T

    # The forward passes are tiny (21 points): thread start-up would cost 30x the work on a busy machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = least_squares(lambda x: residuals(x[None])[0], x0, jac=jacobian,
                               bounds=(bounds[:, 0], bounds[:, 1]), xtol=1e-12, ftol=1e-12, gtol=1e-12, max_nfev=200)
    finally:
        torch.set_num_threads(threads)
    return with_params(result.x[None])[0]


def named_pose(model: HandModel | HandModelData, name: str) -> np.ndarray:
    """[45] axis-angle local joint rotations (radians) of the named pose for this model (see the module docstring).

    Full rotations: use with ``use_pca=False, flat_hand_mean=True``.
    """
    if name not in NAMED_POSES:
        raise InputError(f"unknown pose name {name!r}; choose from {NAMED_POSES} (or 'random' via random_pose)")
    data = _model_data(model)
    if name == "rest":
        return np.zeros(45)
    axes = joint_axes(data)
    comps = _table_components(name)
    frame = hand_frame(data)
    if name == "pinch":
        comps = _fit_pose(data, axes, comps, _THUMB_PARAMS + _INDEX_PARAMS, lambda joints: (joints[17], PINCH_GAP_M))
    elif name == "fist":
        J = frame["joints"]
        finger_r = _bone_radius(data, 5, J[6], J)  # middle finger, middle phalanx
        thumb_r = _bone_radius(data, 15, frame["tips"][0], J)

        def on_middle_phalanx(joints: np.ndarray):
            # The fingers' posed middle phalanges face the palm with their backs; the thumb lies across them.
            mid = 0.5 * (joints[5] + joints[6])
            return mid + frame["palmar"] * (finger_r + thumb_r), 0.0

        comps = _fit_pose(data, axes, comps, _THUMB_PARAMS, on_middle_phalanx)
    return components_to_axis_angle(comps, axes)


def random_pose(model: HandModel | HandModelData, rng: np.random.Generator, num_comps: int = DEFAULT_RANDOM_COMPS,
                scale: float = DEFAULT_RANDOM_SCALE) -> np.ndarray:
    """[45] full local axis-angle of a random pose: the first ``num_comps`` PCA coefficients ~ N(0, scale^2),
    decoded with ``hands_components`` and ``hands_mean`` added (see the module docstring)."""
    data = _model_data(model)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    if not 1 <= int(num_comps) <= 45:
        raise InputError(f"num_comps must be in [1, 45], got {num_comps}")
    if not scale >= 0 or not np.isfinite(scale):
        raise InputError(f"scale must be a finite number >= 0, got {scale}")
    coeffs = rng.normal(0.0, scale, size=int(num_comps))
    return coeffs @ data.hands_components[: int(num_comps)] + data.hands_mean
