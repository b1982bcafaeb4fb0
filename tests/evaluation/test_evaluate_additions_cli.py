"""`interhandgen evaluate` with the protocol additions: the joint features equal the hand layer's world joints
moved into the left hand's frame; metrics.json and report.md hold density/coverage, the two-sample test on three
feature sets and the category table, each beside the floor draw (the other split); the flags turn each off; a
reference without categories and an overlapping floor fail with a message naming the fix."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from interhandgen.cli import main
from interhandgen.data.canonical import to_canonical
from interhandgen.data.format import TwoHandSet
from interhandgen.evaluation.joint_features import JOINT_FEATURE_DIM, PLACEMENT
from interhandgen.evaluation.protocol import canonical_joint_features
from interhandgen.rotations import axis_angle_to_matrix, matrix_to_rot6d

from fixtures.evaluator import save_tiny_evaluator

CATEGORIES = ("near", "far")


def labelled_pairs(n: int, seed: int, labels: bool = True) -> TwoHandSet:
    """n pairs: category 0 has the right hand 5-8 cm from the left, category 1 30-40 cm; splits alternate."""
    rng = np.random.default_rng(seed)
    cat = np.arange(n) % 2
    transl = np.zeros((n, 3))
    transl[:, 0] = np.where(cat == 0, rng.uniform(0.05, 0.08, n), rng.uniform(0.3, 0.4, n))
    left = dict(pose=rng.normal(0, 0.3, (n, 45)), betas=rng.normal(0, 0.5, (n, 10)),
                global_orient=rng.normal(0, 0.3, (n, 3)), transl=rng.normal(0, 0.1, (n, 3)))
    right = dict(pose=rng.normal(0, 0.3, (n, 45)), betas=rng.normal(0, 0.5, (n, 10)),
                 global_orient=rng.normal(0, 0.3, (n, 3)), transl=transl)
    kw = dict(category=cat, category_names=CATEGORIES, split=(np.arange(n) // 2) % 2,
              split_names=("train", "test")) if labels else {}
    return TwoHandSet(left, right, pose_space="pca", flat_hand_mean=False, hand_model="open_hand", **kw)


def test_joint_features_are_world_joints_in_the_left_frame():
    pairs = labelled_pairs(6, 0)
    models = pairs.hand_models()
    feats = canonical_joint_features(pairs, models, batch_size=4).double()
    assert feats.shape == (6, JOINT_FEATURE_DIM)
    world = pairs.joints(models, dtype=torch.float64)
    R_a = axis_angle_to_matrix(torch.as_tensor(pairs.left.global_orient, dtype=torch.float64))
    centre = world["left"][:, 4:5]  # middle MCP of the left hand, the canonical origin
    for slot, side in enumerate(("left", "right")):
        expect = (world[side] - centre) @ R_a  # R_a^T (J - c) for row vectors
        got = feats[:, 63 * slot:63 * (slot + 1)].reshape(6, 21, 3)
        assert torch.allclose(got, expect, atol=2e-5), side  # float32 hand forward
    R_o = axis_angle_to_matrix(torch.as_tensor(pairs.right.global_orient, dtype=torch.float64))
    placement = feats[:, PLACEMENT]
    assert torch.allclose(placement[:, :6], matrix_to_rot6d(R_a.transpose(1, 2) @ R_o), atol=1e-6)
    assert torch.allclose(placement[:, 6:], feats[:, 63 + 12:63 + 15], atol=1e-6)  # right middle MCP = t_rel
    x = to_canonical(pairs, models).x
    assert torch.allclose(placement[:, 6:], x[:, 1, 61:64], atol=1e-6)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate_additions")
    reference = labelled_pairs(48, 1)
    reference.save(root / "reference.npz")
    labelled_pairs(48, 2, labels=False).save(root / "unlabelled.npz")
    samples = labelled_pairs(20, 3, labels=False)
    samples.save(root / "samples.npz")
    save_tiny_evaluator(samples, root / "evaluator")
    return root


def run(files, out, reference="reference.npz", *extra):
    return main(["evaluate", "--samples", str(files / "samples.npz"), "--reference", str(files / reference),
                 "--evaluator", str(files / "evaluator"), "--out", str(out), "--replications", "2",
                 "--subset-size", "12", "--no-progress", "--no-penetration", "--no-feature-cache", *extra])


def test_metrics_and_report_hold_the_additions_with_the_floor(files, tmp_path):
    out = tmp_path / "r"
    assert run(files, out) == 0
    m = json.loads((out / "metrics.json").read_text())
    add = m["additions"]
    assert m["num_reference"] == 24 and add["num_floor"] == 20  # test split; floor: 20 of the 24 train pairs
    for who in ("samples", "floor"):
        dc = add["density_coverage"][who]
        assert dc["density"]["num_replications"] == 2 and 0 <= dc["coverage"]["mean"] <= 1
        for view, dim in (("evaluator", 32), ("joints", JOINT_FEATURE_DIM), ("placement", 9)):
            c = add["c2st"][who][view]
            assert c["dim"] == dim and c["n_per_class"] == 20 and len(c["accuracy"]["values"]) == 5
            assert 0 <= c["accuracy"]["mean"] <= 1 and 0 <= c["auc"]["mean"] <= 1
    cat = add["categories"]
    assert cat["names"] == list(CATEGORIES) and cat["reference"] == [0.5, 0.5]
    assert sum(cat["samples"]) == pytest.approx(1) and sum(cat["floor"]) == pytest.approx(1)
    assert 0 <= cat["tv_samples"] <= 1 and 0 <= cat["tv_floor"] <= 1
    report = (out / "report.md").read_text()
    for text in ("Density and coverage", "Classifier two-sample test", "relative placement only",
                 "Category frequencies", "| near |", "data floor"):
        assert text in report


def test_c2st_flags_reach_the_classifier(files, tmp_path):
    assert run(files, tmp_path / "r", "reference.npz", "--no-density-coverage", "--no-categories", "--no-floor",
               "--c2st-folds", "4", "--c2st-hidden", "8", "--c2st-epochs", "2") == 0
    c = json.loads((tmp_path / "r" / "metrics.json").read_text())["additions"]["c2st"]
    assert (c["settings"]["folds"], c["settings"]["hidden"], c["settings"]["epochs"]) == (4, 8, 2)
    assert len(c["samples"]["evaluator"]["accuracy"]["values"]) == 4 and c["floor"] is None
    assert run(files, tmp_path / "s", "reference.npz", "--no-floor", "--c2st-epochs", "0") == 2


def test_flags_turn_each_addition_off(files, tmp_path):
    assert run(files, tmp_path / "r", "reference.npz", "--no-c2st", "--no-density-coverage", "--no-floor") == 0
    add = json.loads((tmp_path / "r" / "metrics.json").read_text())["additions"]
    assert set(add) == {"categories", "num_floor"} and add["num_floor"] is None and "floor" not in add["categories"]


def test_reference_without_categories_and_overlapping_floor_fail_clearly(files, tmp_path, capsys):
    assert run(files, tmp_path / "a", "unlabelled.npz", "--no-floor") == 2
    err = capsys.readouterr().err
    assert "no 'category' labels" in err and "--no-categories" in err
    assert not (tmp_path / "a" / "metrics.json").exists()
    assert run(files, tmp_path / "b", "unlabelled.npz", "--no-floor", "--no-categories", "--no-c2st") == 0
    assert run(files, tmp_path / "c", "reference.npz", "--floor-split", "test") == 2
    assert "overlaps the reference" in capsys.readouterr().err
    assert run(files, tmp_path / "d", "unlabelled.npz", "--no-categories") == 2
    assert "no 'split' field" in capsys.readouterr().err
