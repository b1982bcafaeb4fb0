"""Tests of the named and random hand poses (interhandgen.hand.poses) on the open hand."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from interhandgen.hand.layer import HandModel
from interhandgen.hand.open_hand import open_hand_data
from interhandgen.hand.poses import (
    NAMED_POSES,
    PINCH_GAP_M,
    hand_frame,
    joint_axes,
    named_pose,
    random_pose,
)


def _pose_out(data, pose):
    layer = HandModel(data, use_pca=False, flat_hand_mean=True)
    with torch.no_grad():
        return layer(hand_pose=torch.as_tensor(np.asarray(pose)[None], dtype=torch.float64))


@pytest.fixture(scope="module")
def right():
    return open_hand_data("right")


@pytest.fixture(scope="module")
def poses(right):
    return {name: named_pose(right, name) for name in NAMED_POSES}


def test_joint_axes_are_orthonormal_and_flexion_turns_fingers_to_the_palm(right):
    axes = joint_axes(right)
    assert axes.shape == (15, 3, 3)
    gram = np.einsum("jkc,jlc->jkl", axes, axes)
    np.testing.assert_allclose(gram, np.broadcast_to(np.eye(3), (15, 3, 3)), atol=1e-12)
    frame = hand_frame(right)
    # Open hand conventions (docs/hand.md): fingers along -x, back of the hand +y (palm -y), thumb on +z.
    np.testing.assert_allclose(frame["forward"], [-1, 0, 0], atol=0.05)
    np.testing.assert_allclose(frame["palmar"], [0, -1, 0], atol=0.1)
    assert frame["radial"][2] > 0.9


def test_rest_is_zero_and_poses_are_finite(poses):
    np.testing.assert_array_equal(poses["rest"], np.zeros(45))
    for name, pose in poses.items():
        assert pose.shape == (45,) and np.isfinite(pose).all(), name


def test_fist_curls_fingers_into_the_palm_and_puts_the_thumb_across_them(right, poses):
    rest = _pose_out(right, poses["rest"]).joints[0].numpy()
    fist = _pose_out(right, poses["fist"]).joints[0].numpy()
    frame = hand_frame(right)
    palm = rest[[0, 1, 4, 7, 10]].mean(0)
    for tip in (17, 18, 19, 20):  # index, middle, ring, pinky tips
        assert np.linalg.norm(fist[tip] - palm) < 0.6 * np.linalg.norm(rest[tip] - palm)
        assert (fist[tip] - palm) @ frame["palmar"] > 0.005  # on the palm side of the palm
        assert (fist[tip] - rest[tip]) @ frame["forward"] < -0.05  # curled back towards the wrist
    middle_phalanx = 0.5 * (fist[5] + fist[6])
    assert np.linalg.norm(fist[16] - middle_phalanx) < 0.035  # thumb tip over the middle finger


@pytest.mark.parametrize("side", ["right", "left"])
def test_pinch_brings_thumb_tip_to_index_tip(side):
    data = open_hand_data(side)
    joints = _pose_out(data, named_pose(data, "pinch")).joints[0].numpy()
    assert np.linalg.norm(joints[16] - joints[17]) == pytest.approx(PINCH_GAP_M, abs=3e-4)
    rest = _pose_out(data, np.zeros(45)).joints[0].numpy()
    assert np.linalg.norm(rest[16] - rest[17]) > 0.05


def test_spread_abducts_the_fingers(right, poses):
    rest = _pose_out(right, poses["rest"]).joints[0].numpy()
    spread = _pose_out(right, poses["spread"]).joints[0].numpy()

    def angle(j, a, b):  # angle between the index (a) and pinky (b) directions from their MCPs
        u, v = j[a[1]] - j[a[0]], j[b[1]] - j[b[0]]
        return np.degrees(np.arccos(u @ v / np.linalg.norm(u) / np.linalg.norm(v)))

    index, pinky = (1, 17), (7, 20)
    assert angle(spread, index, pinky) > angle(rest, index, pinky) + 25
    assert np.linalg.norm(spread[16] - spread[1]) > np.linalg.norm(rest[16] - rest[1]) + 0.01  # thumb away


@pytest.mark.parametrize("name", NAMED_POSES)
def test_left_pose_is_the_mirror_image_of_the_right(right, poses, name):
    left = open_hand_data("left")
    pose_left = named_pose(left, name)
    np.testing.assert_allclose(pose_left, poses[name] * np.tile([1.0, -1.0, -1.0], 15), atol=1e-6)
    v_right = _pose_out(right, poses[name]).vertices[0].numpy()
    v_left = _pose_out(left, pose_left).vertices[0].numpy()
    np.testing.assert_allclose(v_left, v_right * [-1.0, 1.0, 1.0], atol=1e-6)


def _rotated(data, rot: np.ndarray):
    """The model turned by ``rot`` (no pose correctives, which are tied to the template frame)."""
    turn_aa = lambda aa: (aa.reshape(-1, 15, 3) @ rot.T).reshape(aa.shape)  # noqa: E731
    return dataclasses.replace(
        data,
        v_template=data.v_template @ rot.T,
        shapedirs=np.einsum("ij,vjs->vis", rot, data.shapedirs),
        posedirs=np.zeros_like(data.posedirs),
        hands_mean=turn_aa(data.hands_mean),
        hands_components=turn_aa(data.hands_components),
    )


@pytest.mark.parametrize("name", ["fist", "pinch", "spread"])
def test_poses_follow_the_model_geometry_not_fixed_axes(right, name):
    """Turning the model turns its named poses: axes come from the skeleton, the fits are frame-independent."""
    base = dataclasses.replace(right, posedirs=np.zeros_like(right.posedirs))
    rot = Rotation.from_rotvec([0.4, -1.1, 0.7]).as_matrix()
    turned = _rotated(base, rot)
    pose = named_pose(base, name)
    pose_turned = named_pose(turned, name)
    np.testing.assert_allclose(pose_turned.reshape(15, 3), pose.reshape(15, 3) @ rot.T, atol=1e-4)
    v = _pose_out(base, pose).vertices[0].numpy()
    v_turned = _pose_out(turned, pose_turned).vertices[0].numpy()
    np.testing.assert_allclose(v_turned, v @ rot.T, atol=1e-5)


def test_random_pose_is_seeded_pca(right):
    a = random_pose(right, np.random.default_rng(5))
    b = random_pose(right, np.random.default_rng(5))
    c = random_pose(right, np.random.default_rng(6))
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 0.01
    coeffs = np.random.default_rng(5).normal(0.0, 1.0, size=6)
    np.testing.assert_allclose(a, coeffs @ right.hands_components[:6] + right.hands_mean, atol=1e-12)
    np.testing.assert_allclose(random_pose(right, np.random.default_rng(5), scale=0.0), right.hands_mean)


def test_pose_errors(right):
    with pytest.raises(ValueError, match="unknown pose name 'wave'"):
        named_pose(right, "wave")
    with pytest.raises(TypeError, match="model"):
        named_pose("open", "fist")
    with pytest.raises(TypeError, match="rng"):
        random_pose(right, 3)
    with pytest.raises(ValueError, match="num_comps"):
        random_pose(right, np.random.default_rng(0), num_comps=46)
    with pytest.raises(ValueError, match="scale"):
        random_pose(right, np.random.default_rng(0), scale=float("nan"))
