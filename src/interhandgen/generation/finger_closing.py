"""Finger closing: each finger of a sampled hand flexes until it nearly touches the hand's object.

The network's hands reach their objects, but their fingers rarely wrap them, and MuJoCo's test (hands fixed, the
object free under gravity) holds an object only on surfaces of the hands that are under or around it. This stage
flexes each finger that is open towards the object about its anatomical flexion axes (the pose synergy of the
finger: MCP and PIP by 1, DIP by 0.67; the thumb's MCP and IP by 1; :func:`interhandgen.data.synth.poses.synergy_basis`)
in steps of ``step_deg`` -- longer where the finger is far, by a bound on how fast its points move
(:func:`finger_speeds`) -- up to ``max_deg`` or the finger's joint limit. Once a subset of the finger's vertices
(:func:`finger_points`) comes within ``touch_mm`` of the object the finger keeps that closing if every judged point
is at least ``clear_mm`` outside, else the closing before it. A finger already within ``touch_mm``, or moving away
from the object, keeps its pose. Where the pair's hands are near each other the other hand stops a finger too (left
hands first, then right hands against the closed left hands), and a last pass judges each hand's closings together
and puts back a finger that its neighbours brought nearer than ``clear_mm`` (blend skinning moves a knuckle with
its neighbour). Distances are those of the sampler's checks: the planes of the object's surface samples
(:func:`interhandgen.generation.object_sampling.object_penetration`), and of the other hand's points and vertex
normals. Only finger flexion changes: the other pose numbers, shape, rotation and translation of every hand are
bit for bit those given, and so is every hand with no finger closed.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np
import torch

from interhandgen.data.format import HAND_SIDES, TwoHandSet, _model_data
from interhandgen.data.synth.anatomy import hand_anatomy
from interhandgen.data.synth.kinematics import farthest_point_order
from interhandgen.data.synth.poses import synergy_basis
from interhandgen.exceptions import InputError
from interhandgen.generation.object_sampling import _within, object_penetration
from interhandgen.generation.subset import SubsetHand
from interhandgen.geometry.mesh import seal_torch, vertex_normals_at
from interhandgen.hand.joints import FINGER_JOINTS
from interhandgen.hand.layer import HandModel
from interhandgen.hand.lbs import blend_skinning, rigid_transforms
from interhandgen.rotations import axis_angle_to_matrix

__all__ = ["FINGERS", "finger_vertices", "finger_points", "flexion_basis", "close_fingers"]

#: Pairs whose hands come closer than this (metres; a finger's closing moves its points a few centimetres) also judge
#: the closing fingers against the other hand, by the planes of its :data:`HAND_POINTS` points and vertex normals.
GUARD_RADIUS = 0.06
HAND_POINTS = 256
#: The fingers in the order of :func:`flexion_basis` (that of the pose synergies).
FINGERS = ("thumb", "index", "middle", "ring", "pinky")


def flexion_basis() -> np.ndarray:
    """[5, 15, 3] anatomical components (joints 1..15; flexion, abduction, twist) of one radian of each finger's
    closing, in the order of :data:`FINGERS`."""
    return synergy_basis(dtype=torch.float64)[:5].numpy()


def finger_vertices(weights: np.ndarray) -> np.ndarray:
    """[V] index into :data:`FINGERS` of the finger whose joints carry most of each vertex's skinning weight
    (``weights`` [V, 16]); -1 for the palm and wrist."""
    dominant = np.asarray(weights).argmax(axis=1)
    owner = np.full(dominant.shape, -1, dtype=np.int64)
    for k, name in enumerate(FINGERS):
        owner[np.isin(dominant, FINGER_JOINTS[name])] = k
    return owner


def finger_points(data, per_finger: int) -> list[np.ndarray]:
    """Per finger (:data:`FINGERS`), ``per_finger`` of its vertices spread over it (farthest-point order on the rest
    mesh; all of them if it has fewer)."""
    owner = finger_vertices(data.weights)
    out = []
    for k in range(len(FINGERS)):
        ids = np.flatnonzero(owner == k)
        out.append(ids[farthest_point_order(np.asarray(data.v_template)[ids], min(per_finger, ids.size))])
    return out


def finger_speeds(data, points: list, margin: float = 1.25) -> np.ndarray:
    """[5] metres per radian: a bound on how fast the points ``points`` (per finger, vertex ids) move under the
    finger's closing (:func:`flexion_basis`): the sum over the finger's flexed joints of the joint's weight times the
    points' largest distance from it on the rest mesh, times ``margin`` (shape and blend skinning)."""
    basis = flexion_basis()
    rest = np.asarray(data.v_template, dtype=np.float64)
    joints = np.asarray(data.J_regressor, dtype=np.float64) @ rest
    out = np.zeros(len(FINGERS))
    for f in range(len(FINGERS)):
        for j in np.flatnonzero(basis[f, :, 0] > 0):
            out[f] += basis[f, j, 0] * np.linalg.norm(rest[np.asarray(points[f])] - joints[j + 1], axis=1).max()
    return out * margin


def close_fingers(two_hands: TwoHandSet, surface: torch.Tensor, max_deg: float = 60.0, step_deg: float = 3.0,
                  touch_mm: float = 4.0, clear_mm: float = 2.0, reach_mm: float = 4.0, points_per_finger: int = 48,
                  hand_points: int = HAND_POINTS, sides: Sequence[str] = HAND_SIDES, models: dict | None = None
                  ) -> tuple[TwoHandSet, dict]:
    """The set with its hands' open fingers closed onto their objects (module docstring), and a record.

    Args:
        two_hands: N pairs in the world frame.
        surface: [N, K, 6] each pair's object surface samples and outward unit normals, world frame (metres).
        max_deg: the largest closing tried (degrees of the finger's flexion synergy).
        step_deg: the closing step (degrees).
        touch_mm: a finger within this of the object touches it.
        clear_mm: at the touch the finger keeps the closing tried if its points are at least this far outside the
            object, else the closing before it (the points are a subset, and the planes an approximation).
        reach_mm: the planes' reach (:func:`~interhandgen.generation.object_sampling.object_penetration`).
        points_per_finger: the finger vertices judged (:func:`finger_points`).
        hand_points: the other hand's points whose planes judge the fingers where the hands are near each other.
        sides: the sides whose fingers may close (completion keeps the given hand).
        models: hand layers for the set's conventions (default: its own).
    Returns:
        (the set, a dict per side: fingers closed (count per finger), the pairs changed, the mean closing of the
        closed fingers in degrees).
    """
    n = len(two_hands)
    surface = torch.as_tensor(surface)
    if surface.dim() != 3 or surface.shape[0] != n or surface.shape[2] != 6:
        raise InputError(f"argument 'surface' must be [{n}, K, 6] (points, normals), got {list(surface.shape)}")
    if not (max_deg > 0 and step_deg > 0 and touch_mm >= 0 and reach_mm >= 0 and points_per_finger >= 1):
        raise InputError("max_deg and step_deg must be > 0, touch_mm and reach_mm >= 0, points_per_finger >= 1, "
                         f"got {max_deg}, {step_deg}, {touch_mm}, {reach_mm}, {points_per_finger}")
    for side in sides:
        if side not in HAND_SIDES:
            raise InputError(f"argument 'sides' must name 'left' and/or 'right', got {side!r}")
    models = models if models is not None else two_hands.hand_models()
    flat = two_hands.converted("axis_angle", flat_hand_mean=True, models=models)
    basis = flexion_basis()
    steps = int(np.floor(max_deg / step_deg + 1e-9))
    record: dict = {"rule": f"each finger open towards the object flexed in steps of at least {step_deg} degrees up "
                            f"to {max_deg} degrees or its joint limit until {points_per_finger} of its points come "
                            f"within {touch_mm} mm of the object, kept at the last closing with them {clear_mm} mm "
                            "outside it (the planes of the object's surface samples; near the other hand, of its "
                            "points too)",
                    "max_deg": float(max_deg), "step_deg": float(step_deg), "touch_mm": float(touch_mm),
                    "clear_mm": float(clear_mm)}
    changed_sides = {}
    within = _within(reach_mm, touch_mm)
    for side in sides:
        data = _model_data(models[side], side)
        anatomy = hand_anatomy(data)
        hand = flat.hand(side)
        comps0 = anatomy.axis_angle_to_components(hand.pose)  # [N, 15, 3]
        cap = _closing_caps(comps0, basis, anatomy.limits[..., 1])  # [N, 5] radians
        points = finger_points(data, points_per_finger)
        skin = _SubsetSkin(data, np.concatenate(points), hand.betas)
        parts = np.cumsum([0] + [len(p) for p in points])
        fixed = {k: torch.as_tensor(getattr(hand, k), dtype=torch.float32) for k in ("global_orient", "transl")}
        other = "right" if side == "left" else "left"
        guard_points, guard_normals = _hand_samples(flat, other, models, hand_points)
        with torch.no_grad():  # the other hand guards only the pairs whose hands are near each other
            reach = skin(torch.arange(n), torch.cat([fixed["global_orient"], torch.as_tensor(
                hand.pose, dtype=torch.float32)], 1)) + fixed["transl"][:, None]
            near = torch.cdist(reach, guard_points).amin(dim=(1, 2))
        guarded = (near < GUARD_RADIUS).numpy()
        # points and normals of the guarding hands; NaN in the rows never judged against the other hand
        guard = torch.full((n, hand_points, 6), math.nan)
        on_guard = torch.as_tensor(np.flatnonzero(guarded))
        if on_guard.numel():
            guard[on_guard] = torch.cat([guard_points[on_guard], guard_normals(on_guard)], dim=-1)

        def gaps(rows: np.ndarray, theta: np.ndarray, judged: np.ndarray) -> np.ndarray:
            """[len(rows), 5] the smallest signed distance (mm) of each ``judged`` [len(rows), 5] finger's points to
            the object at closings ``theta`` [len(rows), 5] (inf where not judged)."""
            comps = comps0[rows] + np.einsum("nf,fjc->njc", theta, basis)
            pose = torch.as_tensor(anatomy.components_to_axis_angle(comps), dtype=torch.float32)
            r = torch.as_tensor(rows)
            out = np.full((len(rows), 5), np.inf)
            with torch.no_grad():
                verts = skin(r, torch.cat([fixed["global_orient"][r], pose], 1)) + fixed["transl"][r, None]
                for f in range(5):
                    on = np.flatnonzero(judged[:, f])
                    if on.size:
                        pts = verts[torch.as_tensor(on), parts[f]:parts[f + 1]]
                        signed = object_penetration(pts, surface[r[on]], 1.0, reach_mm, within)[1]
                        out[on, f] = signed.amin(dim=1).double().numpy() * 1000.0
                        g = np.flatnonzero(guarded[rows[on]])
                        if g.size:  # and to the other hand: the nearer of the two stops the finger
                            hand_gap = object_penetration(pts[torch.as_tensor(g)], guard[r[on[g]]], 1.0, 0.0)[1]
                            out[on[g], f] = np.minimum(out[on[g], f], hand_gap.amin(dim=1).double().numpy() * 1000.0)
            return out

        every = np.ones((n, 5), dtype=bool)
        last = gaps(np.arange(n), np.zeros((n, 5)), every)  # [N, 5] mm, at the closing ``theta``
        open_ = last > touch_mm  # [N, 5] fingers not touching yet
        theta, closing = np.zeros((n, 5)), np.zeros((n, 5))
        speed = finger_speeds(data, points)  # [5] m per radian
        limit = np.minimum(cap, np.deg2rad(max_deg))
        for _ in range(steps):
            rows = np.flatnonzero(open_.any(axis=1))
            if not rows.size:
                break
            # a finger's points move at most ``speed`` per radian of closing: a far finger takes longer steps
            advance = np.maximum(np.deg2rad(step_deg), (last[rows] - touch_mm) / 1000.0 / speed)
            trial = np.minimum(theta[rows] + advance, limit[rows])
            # the other fingers at their closings so far: blend skinning lets a neighbour move a finger's knuckle
            d = gaps(rows, np.where(open_[rows], trial, closing[rows]), open_[rows])
            touched = open_[rows] & (d <= touch_mm)
            # at the touch keep the last closing at which the finger was still outside
            closing[rows] = np.where(touched, np.where(d >= clear_mm, trial, theta[rows]), closing[rows])
            # a finger at its joint limit or ``max_deg``, or moving away from the object, without touching it keeps
            # its pose
            given_up = open_[rows] & ~touched & ((trial >= limit[rows]) | (d > last[rows]))
            open_[rows] &= ~(touched | given_up)
            theta[rows], last[rows] = np.where(open_[rows], trial, theta[rows]), np.where(open_[rows], d, last[rows])
        # the closings together: a finger that a neighbour's closing brought nearer than clear_mm keeps its pose
        rows = np.flatnonzero((closing > 0).any(axis=1))
        if rows.size:
            d = gaps(rows, closing[rows], closing[rows] > 0)
            closing[rows] = np.where(d < clear_mm, 0.0, closing[rows])
        moved = np.flatnonzero((closing > 0).any(axis=1))
        if moved.size:
            comps = comps0[moved] + np.einsum("nf,fjc->njc", closing[moved], basis)
            pose = hand.pose.copy()
            pose[moved] = anatomy.components_to_axis_angle(comps)
            changed_sides[side] = (moved, pose)
            flat = flat._replace(**{side: _with_pose(hand, pose)})
        closed = closing > 0
        record[side] = {"fingers_closed": {name: int(closed[:, f].sum()) for f, name in enumerate(FINGERS)},
                        "changed": moved.tolist(), "guarded_by_the_other_hand": int(guarded.sum()),
                        "mean_closing_deg": float(np.rad2deg(closing[closed]).mean()) if closed.any() else 0.0}
    if not changed_sides:
        return two_hands, record
    # back to the set's conventions; the hands not changed keep their stored numbers bit for bit
    back = flat.converted(two_hands.pose_space, flat_hand_mean=two_hands.flat_hand_mean, models=models)
    out = {}
    for side, (moved, _) in changed_sides.items():
        pose = two_hands.hand(side).pose.copy()
        pose[moved] = back.hand(side).pose[moved].astype(pose.dtype)
        out[side] = _with_pose(two_hands.hand(side), pose)
    return two_hands._replace(**out), record


class _SubsetSkin:
    """Blend skinning of a few vertices ``ids`` of a hand model for N hands of shapes ``betas`` [N, S], on the subset
    buffers of :class:`interhandgen.generation.subset.SubsetHand` (its joints linear in the shape): only the chosen
    vertices are shaped and posed (float32). ``skin(rows, full_pose [b, 48]) -> [b, len(ids), 3]`` before
    translation, the hand layer's vertices ``ids`` up to float rounding."""

    def __init__(self, data, ids: np.ndarray, betas: np.ndarray) -> None:
        sub = SubsetHand(HandModel(data), indices=torch.as_tensor(ids, dtype=torch.long))
        b = torch.as_tensor(np.asarray(betas), dtype=torch.float32)
        self.joints = sub.joint_template + torch.einsum("jks,ns->njk", sub.joint_shapedirs, b)
        shapedirs = sub.shapedirs.view(sub.num_points, 3, -1)
        self.shaped = sub.v_template + torch.einsum("pks,ns->npk", shapedirs, b)  # [N, P, 3]
        self.posedirs, self.weights = sub.posedirs, sub.lbs_weights  # [135, P * 3], [P, 16]
        self.parents, self.levels = sub.parents, sub.levels

    def __call__(self, rows: torch.Tensor, full_pose: torch.Tensor) -> torch.Tensor:
        b, J = full_pose.shape[0], self.joints.shape[1]
        rot = axis_angle_to_matrix(full_pose.view(b, J, 3))
        _, transforms = rigid_transforms(rot, self.joints[rows], self.parents, self.levels)
        return blend_skinning(self.shaped[rows], rot, transforms, self.posedirs, self.weights)[0]


def _hand_samples(flat: TwoHandSet, side: str, models: dict, num: int):
    """Points [N, num, 3] of the ``side`` hands of a flat axis-angle set (farthest-point subset of the rest mesh),
    world frame, float32, and a function of rows [R] (long) giving their outward unit vertex normals [R, num, 3]
    (of the sealed mesh, :func:`~interhandgen.geometry.mesh.vertex_normals_at`): the other hand as an obstacle
    for the planes, whose normals only the rows near it need."""
    data = _model_data(models[side], side)
    ids = torch.as_tensor(farthest_point_order(np.asarray(data.v_template), num))
    hand = flat.hand(side)
    layer = HandModel(data, use_pca=False, flat_hand_mean=True)
    t = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    with torch.no_grad():
        verts = layer(betas=t(hand.betas), global_orient=t(hand.global_orient), hand_pose=t(hand.pose),
                      transl=t(hand.transl)).vertices

    def normals(rows: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            sealed, faces = seal_torch(verts[rows], data.faces)
            return vertex_normals_at(sealed, faces, ids)

    return verts[:, ids], normals


def _with_pose(hand, pose: np.ndarray):
    return dataclasses.replace(hand, pose=pose)


def _closing_caps(comps0: np.ndarray, basis: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """[N, 5] the largest closing (radians) of each finger that keeps its flexed components within their upper
    limits ``upper`` [15, 3]; 0 where a component is at or beyond its limit already."""
    out = np.full((comps0.shape[0], basis.shape[0]), np.inf)
    for f in range(basis.shape[0]):
        j, c = np.nonzero(basis[f] > 0)
        room = (upper[j, c][None] - comps0[:, j, c]) / basis[f, j, c][None]
        out[:, f] = np.clip(room.min(axis=1), 0.0, None)
    return out
