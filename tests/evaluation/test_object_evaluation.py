"""The object-aware evaluator and the hand-object part of `interhandgen evaluate`.

Truths: rigid-motion invariance of the canonical object points, the exact closed-form placement p_c = R_a^T (R_o v
+ t_o - J_a) recomputed with scipy, a hands-only extractor that cannot see the object while the object-aware one
does, the open hand against a large box (separations and a 10 mm overlap with known depth) for the protocol rows.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from interhandgen.data.format import TwoHandSet
from interhandgen.data.object_library import ObjectLibrary
from interhandgen.evaluation.bundled import train_evaluator
from interhandgen.evaluation.features import FeatureExtractorConfig, TwoHandPointNet, extract_features
from interhandgen.evaluation.object_features import canonical_object_points, object_surface_points
from interhandgen.evaluation.object_protocol import ObjectSettings, object_markdown
from interhandgen.evaluation.protocol import EvaluationSettings, canonical_two_hand_vertices, evaluate
from interhandgen.exceptions import InputError
from interhandgen.objects.library import make_object

SMALL = dict(sa1_centroids=16, sa1_neighbours=(4, 8), sa1_mlps=((16, 16), (16, 32)), sa2_centroids=8,
             sa2_neighbours=(4,), sa2_mlps=((32, 32),), global_mlp=(64, 128), head_hidden=64, feature_dim=32)
SIZE = 0.4


def object_set(n=6, seed=0, library=True, split=None) -> TwoHandSet:
    rng = np.random.default_rng(seed)
    right = {"pose": rng.normal(0, 0.3, (n, 45)), "betas": np.zeros((n, 10)),
             "global_orient": rng.normal(0, 1, (n, 3)), "transl": rng.normal(0, 0.05, (n, 3))}
    left = dict(right, transl=right["transl"] + 0.15, global_orient=rng.normal(0, 1, (n, 3)))
    box = make_object("box", {"size_x": 0.1, "size_y": 0.08, "size_z": 0.06})
    pose = np.zeros((n, 7))
    pose[:, 1:4] = rng.normal(0, 1, (n, 3))
    pose[:, 4:] = right["transl"] + 0.07
    kw = {}
    if library:
        kw = dict(object_id=np.zeros(n, int), object_names=["box"], object_pose=pose,
                  object_library=ObjectLibrary.from_meshes(["box"], [box]))
    if split is not None:
        kw.update(split=np.asarray(split), split_names=["train", "validation", "test"])
    return TwoHandSet(left, right, pose_space="pca", flat_hand_mean=False, **kw)


def moved(s: TwoHandSet, R: np.ndarray, t: np.ndarray) -> TwoHandSet:
    """The same pairs after the rigid motion x -> R x + t of the world (hands and object)."""
    models = s.hand_models()
    from interhandgen.data.canonical import to_canonical, to_world

    can = to_canonical(s, models, anchor="left")
    Ra = torch.as_tensor(R)[None] @ can.anchor_rotation
    Ja = can.anchor_center @ torch.as_tensor(R).T + torch.as_tensor(t)
    w = to_world(can.x, models, anchor="left", anchor_world=(Ra, Ja), hand_model=s.hand_model)
    pose = s.object_pose.copy()
    pose[:, 1:4] = (Rotation.from_matrix(R) * Rotation.from_rotvec(pose[:, 1:4])).as_rotvec()
    pose[:, 4:] = pose[:, 4:] @ R.T + t
    return TwoHandSet(w.left, w.right, pose_space=w.pose_space, flat_hand_mean=w.flat_hand_mean,
                      object_id=s.object_id, object_names=s.object_names, object_pose=pose,
                      object_library=s.object_library)


def test_canonical_object_points_closed_form_and_rigid_invariance():
    s = object_set()
    models = s.hand_models()
    pts, targets = canonical_object_points(s, models, 64, with_targets=True)
    # closed form with scipy: J_a is the left centre joint, R_a the left root rotation
    from interhandgen.hand import CENTER_JOINT

    J = s.joints(models)["left"][:, CENTER_JOINT].double().numpy()
    local = object_surface_points(s.object_library.vertices[0], s.object_library.faces[0], 64)
    for i in range(len(s)):
        Ra = Rotation.from_rotvec(s.left.global_orient[i]).as_matrix()
        world = Rotation.from_rotvec(s.object_pose[i, 1:4]).apply(local) + s.object_pose[i, 4:]
        np.testing.assert_allclose(pts[i].numpy(), (world - J[i]) @ Ra, atol=2e-6)
    np.testing.assert_allclose(targets[:, 6:9].numpy(), pts.double().mean(1).numpy(), atol=1e-6)
    np.testing.assert_allclose(targets[0, 9:].numpy(), [0.1, 0.08, 0.06], atol=1e-9)
    # the points lie on the box's surface (one coordinate at +-half size in the object frame)
    half = np.array([0.05, 0.04, 0.03])
    assert np.all(np.isclose(np.abs(local), half, atol=1e-12).any(1)) and np.all(np.abs(local) <= half + 1e-12)
    R = Rotation.from_rotvec([0.3, -1.1, 0.7]).as_matrix()
    pts2, targets2 = canonical_object_points(moved(s, R, np.array([0.2, -0.4, 1.0])), models, 64, with_targets=True)
    np.testing.assert_allclose(pts2.numpy(), pts.numpy(), atol=1e-5)
    np.testing.assert_allclose(targets2.numpy(), targets.numpy(), atol=1e-5)
    with pytest.raises(InputError, match="no object library"):
        canonical_object_points(object_set(library=False), models, 64)


def test_object_aware_extractor_sees_the_object_and_hands_only_does_not():
    s = object_set()
    shifted_pose = s.object_pose.copy()
    shifted_pose[:, 4] += 0.03
    s2 = TwoHandSet(s.left, s.right, pose_space="pca", flat_hand_mean=False, object_id=s.object_id,
                    object_names=s.object_names, object_pose=shifted_pose, object_library=s.object_library)
    models = s.hand_models()
    verts = canonical_two_hand_vertices(s, models)
    idx = tuple(range(0, verts.shape[2], 60))[:40]
    torch.manual_seed(0)
    aware = TwoHandPointNet(FeatureExtractorConfig(num_vertices=verts.shape[2], vertex_indices=idx, object_points=32,
                                                   **SMALL)).eval()
    torch.manual_seed(0)
    hands = TwoHandPointNet(FeatureExtractorConfig(num_vertices=verts.shape[2], vertex_indices=idx, **SMALL)).eval()
    o1, o2 = (canonical_object_points(x, models, 32) for x in (s, s2))
    f1 = extract_features(aware, verts, object_points=o1, progress=False)
    f2 = extract_features(aware, verts, object_points=o2, progress=False)
    assert (f1 - f2).abs().max() > 1e-3
    # per-sample independence in eval mode: one sample alone gives its row of the batch
    np.testing.assert_allclose(extract_features(aware, verts[2:3], object_points=o1[2:3], progress=False).numpy(),
                               f1[2:3].numpy(), atol=1e-5)
    assert torch.equal(extract_features(hands, verts, progress=False), extract_features(hands, verts, progress=False))
    with pytest.raises(InputError, match="object-aware"):
        extract_features(aware, verts, progress=False)
    with pytest.raises(InputError, match="hands only"):
        extract_features(hands, verts, object_points=o1, progress=False)
    with pytest.raises(InputError, match="object_points"):
        extract_features(aware, verts, object_points=o1[:, :5], progress=False)


def test_train_evaluator_on_an_object_set_is_object_aware(tmp_path):
    s = object_set(12, seed=1)
    s.save(tmp_path / "o.npz")
    info = train_evaluator(tmp_path / "o.npz", tmp_path / "ev", epochs=2, seed=0, progress=False, batch_size=4,
                           config=None, points_per_hand=32)
    cfg = json.loads((tmp_path / "ev" / "config.json").read_text())["config"]
    assert cfg["object_points"] == 128 and cfg["num_outputs"] == 140 and info["num_train"] == 11
    train_evaluator(tmp_path / "o.npz", tmp_path / "ev2", epochs=1, progress=False, batch_size=4, objects=False,
                    points_per_hand=32)
    assert json.loads((tmp_path / "ev2" / "config.json").read_text())["config"]["object_points"] == 0
    object_set(4, library=False).save(tmp_path / "h.npz")
    with pytest.raises(InputError, match="no object library"):
        train_evaluator(tmp_path / "h.npz", tmp_path / "ev3", epochs=1, progress=False, objects=True)


def box_pairs(offsets, seed=0):
    """Open hands at rest; the right hand meets a large box whose -x face is at max_x(right hand) + offset."""
    n = len(offsets)
    rng = np.random.default_rng(seed)
    zeros = lambda w: np.zeros((n, w))  # noqa: E731
    right = {"pose": rng.normal(0, 0.01, (n, 45)), "betas": zeros(10), "global_orient": zeros(3),
             "transl": zeros(3)}
    left = dict(right, transl=np.tile([[-0.5, 0.0, 0.0]], (n, 1)))
    s = TwoHandSet(left, right, pose_space="pca", flat_hand_mean=False)
    rv = s.vertices()["right"].numpy()
    pose = np.zeros((n, 7))
    pose[:, 4] = rv[:, :, 0].max(1) + np.asarray(offsets) + SIZE / 2
    pose[:, 5:] = rv.mean(1)[:, 1:]
    box = make_object("box", {"size_x": SIZE, "size_y": SIZE, "size_z": SIZE})
    return TwoHandSet(left, right, pose_space="pca", flat_hand_mean=False, object_id=np.zeros(n, dtype=int),
                      object_names=["box"], object_pose=pose,
                      object_library=ObjectLibrary.from_meshes(["box"], [box]))


def test_protocol_rows_for_samples_and_floor():
    floor = box_pairs([0.001] * 6, seed=1)  # touching (1 mm): contact, no penetration
    reference = box_pairs([0.001] * 6, seed=2)
    samples = box_pairs([-0.01] * 6, seed=3)  # 10 mm into the box
    models = samples.hand_models()
    verts = canonical_two_hand_vertices(reference, models)
    torch.manual_seed(0)
    ex = TwoHandPointNet(FeatureExtractorConfig(num_vertices=verts.shape[2],
                                                vertex_indices=tuple(range(0, 2718, 70)), object_points=16,
                                                **SMALL)).eval()
    settings = EvaluationSettings(replications=2, subset_size=4, kid_subset_size=4, diversity_pairs=6, pr_k=2,
                                  density_coverage=False, c2st=False, categories=False)
    r = evaluate(samples, reference, ex, settings, progress=False, floor=floor,
                 objects=ObjectSettings(physics=False))
    o = r["objects"]
    assert o["samples"]["right"]["penetration_depth_mm"]["mean"] == pytest.approx(10.0, abs=1e-6)
    assert o["floor"]["right"]["penetration_depth_mm"]["mean"] == 0.0
    assert o["floor"]["right"]["contact_rate"] == 1.0 and o["floor"]["left"]["contact_rate"] == 0.0
    assert o["samples"]["right"]["penetration_volume_cm3"]["mean"] > 1.0
    assert o["samples"]["both_contact_rate"] == 0.0 and o["samples"]["physics"].startswith("not run")
    assert o["distribution_floor"]["fhid"]["mean"] >= 0 and "penetration_volume_cm3" in o["geometry_floor"]
    table = object_markdown(r)
    assert "| data floor | 0.000 | 1.000 | 0.000 |" in table and "| samples |" in table
    # the per-hand penetration mean with its bootstrap interval over pairs, which brackets it
    lo, hi = o["samples"]["penetration_volume_cm3_per_hand_ci95"]
    mean = o["samples"]["penetration_volume_cm3_per_hand_mean"]
    assert lo <= mean <= hi and f"{mean:.3f} ({lo:.3f}-{hi:.3f})" in table
    with pytest.raises(InputError, match="no object library"):
        evaluate(object_set(6, library=False), reference, ex, settings, progress=False,
                 objects=ObjectSettings(physics=False))


def test_evaluate_cli_object_protocol_with_physics(tmp_path):
    pytest.importorskip("mujoco")
    s = object_set(16, seed=4, split=[0] * 8 + [2] * 8)
    s.save(tmp_path / "ref.npz")
    s.select_split("test").save(tmp_path / "samples.npz")
    models = s.hand_models()
    verts = canonical_two_hand_vertices(s, models)
    torch.manual_seed(0)
    from interhandgen.evaluation.features import save_feature_extractor

    save_feature_extractor(TwoHandPointNet(FeatureExtractorConfig(
        num_vertices=verts.shape[2], vertex_indices=tuple(range(0, 2718, 70)), object_points=16, **SMALL)).eval(),
        tmp_path / "ev")
    cmd = [sys.executable, "-m", "interhandgen", "evaluate", "--samples", str(tmp_path / "samples.npz"),
           "--reference", str(tmp_path / "ref.npz"), "--evaluator", str(tmp_path / "ev"), "--replications", "2",
           "--subset-size", "6", "--no-c2st", "--no-density-coverage", "--no-categories", "--no-feature-cache",
           "--no-progress", "--physics-pairs", "2"]
    r = subprocess.run(cmd + ["--out", str(tmp_path / "rep")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    for row in ("samples", "floor"):
        phys = m["objects"][row]["physics"]
        assert phys["pairs"] == 2 and phys["mean_displacement_cm"] > 0 and 0 <= phys["held_fraction"] <= 1
    assert (tmp_path / "rep" / "objects.md").read_text().count("| data floor |") == 2
    object_set(4, library=False).save(tmp_path / "h.npz")
    r = subprocess.run(cmd[:4] + [str(tmp_path / "h.npz")] + cmd[5:] + ["--out", str(tmp_path / "rep2")],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "--physics-pairs" in r.stderr


def test_jitter_objects_moves_only_the_objects_rigidly():
    from interhandgen.evaluation.bundled import OBJECT_JITTER_M, jitter_objects
    from interhandgen.objects.metrics import object_world_vertices

    s = object_set(40, seed=5)
    j = jitter_objects(s, 2, seed=0)
    assert len(j) == 120 and np.array_equal(j.object_pose[:40], s.object_pose)
    for side in ("left", "right"):
        assert np.array_equal(j.hand(side).transl, np.tile(s.hand(side).transl, (3, 1)))
    v = s.object_library.vertices[0]
    a = object_world_vertices(v, np.tile(s.object_pose, (3, 1)))[40:]
    b = object_world_vertices(v, j.object_pose)[40:]
    # a rigid motion: pairwise distances kept; the origin moved by the translation jitter
    np.testing.assert_allclose(np.linalg.norm(b[:, 0] - b[:, 1], axis=1), np.linalg.norm(a[:, 0] - a[:, 1], axis=1),
                               atol=1e-12)
    dt = j.object_pose[40:, 4:] - np.tile(s.object_pose, (2, 1))[:, 4:]
    assert 0.5 * OBJECT_JITTER_M < dt.std() < 1.5 * OBJECT_JITTER_M and not np.allclose(a, b)
    assert len(jitter_objects(s, 0)) == 40
