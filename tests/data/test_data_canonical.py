"""Tests of the canonical representation, mirroring, standardisation and the trainer input.

Truths: scipy's Rotation for the world rotations, the hand layer evaluated directly for joints/vertices,
rigid-motion invariance (canonical-frame vertices are a rigid transform of the world vertices), and the exact
mirror symmetry of mirrored hand models (vertices with x negated).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from interhandgen.data import (
    Standardizer,
    TwoHandSet,
    load_training_arrays,
    mirror,
    mirror_canonical,
    mirror_error,
    to_canonical,
    to_world,
)
from interhandgen.data.canonical import IDENTITY_ROT6D, center_joint_world
from interhandgen.hand import CENTER_JOINT, MANO_PARENTS, HandModel, HandModelData
from fixtures.data import random_models, random_set
from fixtures.hands import random_hand_data

M = torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
# HandModel keeps its constants (hands_components, J_regressor, ...) in float32 even for float64 inputs, while
# pose conversions and rest root joints here use the float64 model data: paths that mix the two agree to ~1e-8 m.
MIXED_TOL = 1e-7


def world_set(n=8, seed=0, pose_space="pca", flat=False, **kw) -> TwoHandSet:
    """Random pairs with uniformly random world rotations and translations up to a metre."""
    s = random_set(n, seed, pose_space=pose_space, flat=flat, **kw)
    rng = np.random.default_rng(seed + 50)
    rots = {side: Rotation.random(n, random_state=seed + i).as_rotvec() for i, side in enumerate(("left", "right"))}
    return s._replace(
        left=dataclasses.replace(s.left, global_orient=rots["left"], transl=rng.uniform(-1, 1, (n, 3))),
        right=dataclasses.replace(s.right, global_orient=rots["right"], transl=rng.uniform(-1, 1, (n, 3))),
    )


def direct_layer_outputs(s: TwoHandSet, models) -> dict:
    out = {}
    for side in ("left", "right"):
        layer = HandModel(models[side], use_pca=s.pose_space == "pca", flat_hand_mean=s.flat_hand_mean)
        h = s.hand(side)
        t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float64))  # noqa: E731
        out[side] = layer(betas=t(h.betas), global_orient=t(h.global_orient), hand_pose=t(h.pose), transl=t(h.transl))
    return out


@pytest.mark.parametrize("anchor", ["left", "right"])
def test_canonical_vector_matches_independent_computation(anchor):
    models = random_models()
    s = world_set(seed=1)
    x, R_a, J_a = to_canonical(s, models, anchor=anchor)
    other = "right" if anchor == "left" else "left"
    ref = direct_layer_outputs(s, models)
    Rw = {side: torch.as_tensor(Rotation.from_rotvec(s.hand(side).global_orient).as_matrix()) for side in ("left", "right")}
    Jw = {side: ref[side].joints[:, CENTER_JOINT] for side in ("left", "right")}
    assert torch.allclose(R_a, Rw[anchor], atol=1e-12) and torch.allclose(J_a, Jw[anchor], rtol=0, atol=MIXED_TOL)
    R_rel = Rw[anchor].transpose(1, 2) @ Rw[other]
    t_rel = (Rw[anchor].transpose(1, 2) @ (Jw[other] - Jw[anchor])[..., None])[..., 0]
    assert x.shape == (8, 2, 64) and x.dtype == torch.float64
    # Pose: the set already holds non-flat PCA coefficients, which is the canonical convention.
    assert torch.allclose(x[:, 0, :45], torch.as_tensor(s.hand(anchor).pose), atol=1e-9)
    assert torch.allclose(x[:, 1, :45], torch.as_tensor(s.hand(other).pose), atol=1e-9)
    assert torch.equal(x[:, 0, 45:55], torch.as_tensor(s.hand(anchor).betas))
    assert torch.equal(x[:, 0, 55:61], torch.tensor(IDENTITY_ROT6D, dtype=torch.float64).expand(8, 6))
    assert (x[:, 0, 61:] == 0).all()
    # 6D = first two COLUMNS of R_rel.
    assert torch.allclose(x[:, 1, 55:58], R_rel[:, :, 0], atol=1e-12)
    assert torch.allclose(x[:, 1, 58:61], R_rel[:, :, 1], atol=1e-12)
    assert torch.allclose(x[:, 1, 61:], t_rel, rtol=0, atol=MIXED_TOL)


@pytest.mark.parametrize("deep_tree", [False, True])
def test_center_joint_closed_form_matches_the_layer(deep_tree):
    """center_joint_world (the kinematic chain of one joint) equals the layer's joint; also for a tree in which
    the centre joint hangs below three finger joints, so that finger rotations enter."""
    data = random_models()["right"]
    if deep_tree:
        parents = np.array(MANO_PARENTS)
        parents[CENTER_JOINT] = 3
        data = dataclasses.replace(data, parents=parents)
    rng = np.random.default_rng(14)
    t = lambda *shape, s=1.0: torch.as_tensor(rng.normal(0, s, shape))  # noqa: E731
    betas, full, go, transl = t(9, 10), t(9, 45, s=0.7), t(9, 3, s=1.5), t(9, 3, s=0.3)
    ref = HandModel(data, use_pca=False, flat_hand_mean=True)(betas=betas, global_orient=go, hand_pose=full, transl=transl)
    got = center_joint_world(data, betas, full, go, transl)
    assert (got - ref.joints[:, CENTER_JOINT]).abs().max() < MIXED_TOL
    if deep_tree:  # finger rotations matter here: changing them moves the joint
        full2 = full.clone()
        full2[:, 3:9] += 0.5
        assert (center_joint_world(data, betas, full2, go, transl) - got).abs().max() > 1e-3


@pytest.mark.parametrize("pose_space, flat", [("pca", False), ("axis_angle", True), ("axis_angle", False)])
@pytest.mark.parametrize("anchor", ["left", "right"])
def test_round_trip_float64_random_rotations(pose_space, flat, anchor):
    models = random_models()
    s = world_set(n=10, seed=2, pose_space=pose_space, flat=flat)
    x, R_a, J_a = to_canonical(s, models, anchor=anchor)
    back = to_world(x, models, anchor=anchor, anchor_world=(R_a, J_a), pose_space=pose_space, flat_hand_mean=flat)
    v0, v1 = s.vertices(models, dtype=torch.float64), back.vertices(models, dtype=torch.float64)
    for side in ("left", "right"):
        assert (v0[side] - v1[side]).abs().max() < 1e-10  # requirement 1e-5 m
        assert np.abs(back.hand(side).betas - s.hand(side).betas).max() == 0


def test_canonical_frame_is_a_rigid_transform_of_the_world():
    """Without the anchor's world pose, to_world puts the anchor at the origin with identity rotation: every
    vertex of both hands is R_a^T (v - J_a)."""
    models = random_models()
    s = world_set(n=6, seed=3)
    x, R_a, J_a = to_canonical(s, models)
    canon = to_world(x, models)
    out = direct_layer_outputs(canon, models)
    assert out["left"].joints[:, CENTER_JOINT].abs().max() < MIXED_TOL
    assert np.abs(canon.left.global_orient).max() < 1e-12
    v_world = s.vertices(models, dtype=torch.float64)
    v_canon = canon.vertices(models, dtype=torch.float64)
    for side in ("left", "right"):
        expect = (v_world[side] - J_a[:, None]) @ R_a
        assert (v_canon[side] - expect).abs().max() < MIXED_TOL


def test_canonical_is_invariant_to_a_global_rigid_motion():
    models = random_models()
    s = world_set(n=5, seed=4)
    G = Rotation.random(random_state=9)
    g = np.array([0.3, -0.7, 1.1])
    moved = {}
    for side in ("left", "right"):
        # Move the whole pair by x -> G x + g: rotate each root and solve the new transl through the root joint.
        h = s.hand(side)
        J0 = direct_layer_outputs(s, models)[side].joints[:, 0].numpy()  # world root joint = R(J0r - J0r) + J0r + t
        rot = (G * Rotation.from_rotvec(h.global_orient)).as_rotvec()
        root_rest = J0 - h.transl
        transl = G.apply(J0) + g - root_rest
        moved[side] = dataclasses.replace(h, global_orient=rot, transl=transl)
    s2 = s._replace(left=moved["left"], right=moved["right"])
    v, v2 = s.vertices(models, dtype=torch.float64), s2.vertices(models, dtype=torch.float64)
    assert torch.allclose(v2["left"], torch.as_tensor(G.apply(v["left"].reshape(-1, 3).numpy()) + g).reshape(v["left"].shape), atol=1e-10)
    x1, x2 = to_canonical(s, models).x, to_canonical(s2, models).x
    assert (x1 - x2).abs().max() < MIXED_TOL  # s2 was placed with the layer's float32-constant root joint


def test_float32_round_trip():
    models = random_models()
    s = world_set(n=6, seed=5)
    c = to_canonical(s, models, dtype=torch.float32)
    assert c.x.dtype == torch.float32
    back = to_world(c.x, models, anchor_world=(c.anchor_rotation, c.anchor_center))
    v0, v1 = s.vertices(models, dtype=torch.float64), back.vertices(models, dtype=torch.float64)
    err = max(float((v0[k] - v1[k]).abs().max()) for k in v0)
    assert err < 1e-5


def test_to_world_ignores_the_anchor_rotation_slots_and_rejects_bad_x():
    models = random_models()
    x = to_canonical(world_set(n=4, seed=6), models).x
    garbage = x.clone()
    garbage[:, 0, 55:] = torch.randn(4, 9, dtype=torch.float64)
    a, b = to_world(x, models), to_world(garbage, models)
    assert np.array_equal(a.left.transl, b.left.transl) and np.array_equal(a.right.global_orient, b.right.global_orient)
    with pytest.raises(ValueError, match=r"\[N, 2, 64\]"):
        to_world(x[:, :, :60], models)
    bad = x.clone()
    bad[1, 1, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        to_world(bad, models)
    with pytest.raises(ValueError, match="anchor"):
        to_canonical(world_set(n=2), models, anchor="both")


@pytest.mark.parametrize("pose_space, flat", [("pca", False), ("axis_angle", True)])
def test_mirror_negates_x_and_swaps_sides_on_vertices(pose_space, flat):
    models = random_models()
    s = world_set(n=7, seed=7, pose_space=pose_space, flat=flat)
    m = mirror(s, models)
    v, vm = s.vertices(models, dtype=torch.float64), m.vertices(models, dtype=torch.float64)
    assert (vm["left"] - v["right"] * M).abs().max() < MIXED_TOL
    assert (vm["right"] - v["left"] * M).abs().max() < MIXED_TOL
    assert mirror_error(s, models) < MIXED_TOL
    mm = mirror(m, models)
    for side in ("left", "right"):
        for name in ("pose", "betas", "global_orient", "transl"):
            assert np.abs(getattr(mm.hand(side), name) - getattr(s.hand(side), name)).max() < 1e-9
    assert m.metadata["mirrored"] is True and "mirrored" in mm.metadata and mm.metadata["mirrored"] is False


def _shifted(data: HandModelData, d) -> HandModelData:
    return dataclasses.replace(data, v_template=data.v_template + np.asarray(d))


def test_mirror_uses_the_root_joint_offset():
    """A left model that is the mirror image shifted by d (rest root joint moved): transl mirroring is exact only
    with the root-joint terms M (t + J0_src) - J0_dst; the naive (-x, y, z) is off by d."""
    right = random_hand_data(seed=21)
    d = np.array([0.02, -0.01, 0.03])
    models = {"right": right, "left": _shifted(right.mirrored(), d)}
    s = world_set(n=5, seed=8)
    m = mirror(s, models)
    v, vm = s.vertices(models, dtype=torch.float64), m.vertices(models, dtype=torch.float64)
    assert (vm["left"] - v["right"] * M).abs().max() < MIXED_TOL
    assert (vm["right"] - v["left"] * M).abs().max() < MIXED_TOL
    naive = s.right.transl * np.array([-1.0, 1.0, 1.0])
    assert np.allclose(m.left.transl - naive, -d, atol=1e-9)


def test_mirror_error_reports_asymmetric_models():
    models = {"right": random_hand_data(seed=3), "left": random_hand_data(seed=4).mirrored()}
    assert mirror_error(world_set(n=3, seed=9), models) > 1e-3


@pytest.mark.parametrize("anchor", ["left", "right"])
def test_mirror_canonical_equals_canonical_of_mirror(anchor):
    models = random_models()
    s = world_set(n=9, seed=10)
    x = to_canonical(s, models, anchor=anchor).x
    xm = to_canonical(mirror(s, models), models, anchor=anchor).x
    assert (mirror_canonical(x) - xm).abs().max() < 1e-9
    assert (mirror_canonical(mirror_canonical(x)) - x).abs().max() < 1e-12


def test_standardizer(tmp_path):
    models = random_models()
    x = to_canonical(world_set(n=40, seed=11), models).x
    st = Standardizer.fit(x)
    # Exactly the anchor's 9 rotation/translation numbers are constant.
    expect = torch.zeros(2, 64, dtype=torch.bool)
    expect[0, 55:] = True
    assert torch.equal(st.constant, expect)
    assert torch.equal(st.std[st.constant], torch.ones(9, dtype=torch.float64))
    assert torch.equal(st.mean[0, 55:61], torch.tensor(IDENTITY_ROT6D, dtype=torch.float64))
    z = st.transform(x)
    assert z[:, ~st.constant].mean(0).abs().max() < 1e-12
    assert (z[:, ~st.constant].std(0, unbiased=False) - 1).abs().max() < 1e-12
    assert z[:, st.constant].abs().max() == 0
    assert (st.inverse(z) - x).abs().max() < 1e-12
    zf = st.transform(x.float())
    assert zf.dtype == torch.float32
    for name in ("st.json", "st.npz"):
        back = Standardizer.load(st.save(tmp_path / name))
        assert torch.equal(back.mean, st.mean) and torch.equal(back.std, st.std) and torch.equal(back.constant, st.constant)
    back = Standardizer.from_state_dict(st.state_dict())
    assert torch.equal(back.std, st.std)
    with pytest.raises(ValueError, match="at least 2"):
        Standardizer.fit(x[:1])
    with pytest.raises(ValueError, match="positive"):
        Standardizer(st.mean, torch.zeros(2, 64), st.constant)
    with pytest.raises(ValueError, match=r"\.json or \.npz"):
        st.save(tmp_path / "st.txt")


def test_load_training_arrays(tmp_path):
    models = random_models()
    n = 12
    split = np.array([0, 1] * 6)
    s = world_set(n=n, seed=12, split=split, split_names=["train", "val"])
    path = s.save(tmp_path / "pairs.npz")
    x = load_training_arrays(path, split="train", models=models)
    assert x.dtype == torch.float32 and x.shape == (6, 2, 64)
    ref = to_canonical(s[split == 0], models).x.float()
    assert torch.equal(x, ref)
    xa = load_training_arrays(path, split="val", models=models, mirror_augment=True, anchor="right")
    assert xa.shape == (12, 2, 64)
    sv = s.select_split("val")
    assert torch.equal(xa[:6], to_canonical(sv, models, anchor="right").x.float())
    assert torch.equal(xa[6:], to_canonical(mirror(sv, models), models, anchor="right").x.float())
    assert load_training_arrays(path, split=None, models=models).shape == (12, 2, 64)
    no_split = world_set(n=3, seed=13).save(tmp_path / "nosplit.npz")
    with pytest.raises(ValueError, match="nosplit.npz.*split"):
        load_training_arrays(no_split, models=models)
    with pytest.raises(ValueError, match="test"):
        load_training_arrays(path, split="test", models=models)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    models = random_models()
    s = world_set(n=16, seed=15)
    cpu = to_canonical(s, models)
    gpu = to_canonical(s, models, device="cuda")
    assert gpu.x.is_cuda and (gpu.x.cpu() - cpu.x).abs().max() < 1e-12
    back = to_world(gpu.x, models, anchor_world=(gpu.anchor_rotation, gpu.anchor_center))
    v0 = s.vertices(models, dtype=torch.float64)
    v1 = back.vertices(models, device="cuda", dtype=torch.float64)
    assert max(float((v0[k] - v1[k].cpu()).abs().max()) for k in v0) < 1e-10
