"""Bimanual grasp generation: categories, exact contact/penetration of the result, the set, the CLI."""

import numpy as np
import pytest

from interhandgen.data.format import TwoHandSet
from interhandgen.data.object_library import ObjectLibrary
from interhandgen.objects.grasps import CATEGORIES, CATEGORY_NAMES, generate_object_grasps, zone_mask, surface_samples
from interhandgen.objects.library import sample_object
from interhandgen.objects.metrics import hand_object_metrics


def test_at_least_eight_categories_with_valid_families_and_zones():
    from interhandgen.data.synth.poses import POSE_FAMILIES
    from interhandgen.objects.library import FAMILIES

    assert len(CATEGORY_NAMES) >= 8
    rng = np.random.default_rng(0)
    for cat in CATEGORIES.values():
        assert set(cat.object_families) <= set(FAMILIES)
        for role in (cat.a, cat.b):
            assert set(role.families) <= set(POSE_FAMILIES)
            for family in cat.object_families:
                pts, nrm = surface_samples(sample_object(family, rng), 500, rng)
                assert zone_mask(role.zone, pts, nrm).any()


def _as_set(res, side_a, obj):
    n = len(res.min_sdf)
    hands = {side_a: res.hand_a, ("left" if side_a == "right" else "right"): res.hand_b}
    fields = lambda h: {"pose": h.pose_pca, "betas": h.betas, "global_orient": h.global_orient,  # noqa: E731
                        "transl": h.transl}
    return TwoHandSet(fields(hands["left"]), fields(hands["right"]), pose_space="pca", flat_hand_mean=False,
                      object_id=np.zeros(n, dtype=int), object_names=["o"], object_pose=res.object_pose,
                      object_library=ObjectLibrary.from_meshes(["o"], [obj]))


def test_grasps_touch_the_object_and_report_exact_distances():
    from interhandgen.data.synth.kinematics import HandKinematics
    from interhandgen.hand import open_hand

    kin = {s: HandKinematics(getattr(open_hand(s), "data", open_hand(s))) for s in ("left", "right")}
    obj = sample_object("box", np.random.default_rng(2))
    res = generate_object_grasps(CATEGORIES["pinch_support"], obj, kin["left"], kin["right"], 3, seed=11, steps=16)
    m = hand_object_metrics(_as_set(res, "left", obj))
    for j, side in enumerate(("left", "right")):
        # the generator's min signed distance over the hand's vertices bounds the exact mesh distance from above
        # (up to 1 micrometre: the generator poses in float32, the stored parameters are float32)
        assert (m[f"{side}_min_distance_mm"] <= np.maximum(res.min_sdf[:, j], 0) * 1000 + 1e-3).all()
        # a hand vertex more than 10 micrometres inside the object means a positive exact depth
        assert ((res.min_sdf[:, j] < -1e-5) <= (m[f"{side}_penetration_depth_mm"] > 0)).all()
    assert m["both_contact"].mean() >= 2 / 3
    # the world frame: rotation part of the object pose is a proper rotation, gravity is world -z
    assert np.isfinite(res.object_pose).all() and (res.object_pose[:, 0] == 0).all()


@pytest.mark.slow
def test_object_set_targets_determinism_and_cli(tmp_path):
    pytest.importorskip("mujoco")
    from interhandgen.cli import main
    from interhandgen.objects.dataset import generate_object_set
    from interhandgen.objects.metrics import object_stability

    cats = ["two_hand_hold", "hold_from_below"]
    a = generate_object_set(8, seed=4, categories=cats, grasps_per_object=4, progress=False)
    b = generate_object_set(8, seed=4, categories=cats, grasps_per_object=4, progress=False)
    for side in ("left", "right"):
        np.testing.assert_array_equal(a.hand(side).pose, b.hand(side).pose)
    np.testing.assert_array_equal(a.object_pose, b.object_pose)
    m = hand_object_metrics(a)
    assert m["both_contact"].all()
    assert (m["left_penetration_depth_mm"] <= 5.0 + 1e-9).all() and (m["right_penetration_depth_mm"] <= 5.0 + 1e-9).all()
    assert object_stability(a)["held"].all()  # the generator's physics filter, re-measured
    out = tmp_path / "o.npz"
    assert main(["data", "synth", "--objects", "--num", "4", "--seed", "1", "--categories", "hold_from_below",
                 "--out", str(out), "--no-progress"]) == 0
    s = TwoHandSet.load(out)
    assert len(s) == 4 and s.object_library is not None and not (tmp_path / "o.npz.parts").exists()
    assert main(["data", "stats", str(out), "--out", str(tmp_path / "st"), "--no-progress", "--max-samples", "4",
                 "--volume-samples", "4", "--object-samples", "4"]) == 0
    import json

    stats = json.loads((tmp_path / "st" / "stats.json").read_text())
    assert stats["objects"]["physics"]["held_fraction"] == 1.0 and (tmp_path / "st" / "samples.png").is_file()


def test_object_synth_and_stats_commands(tmp_path):
    """`data synth --objects` and `data stats` on its output (the commands the CI runs; the slow test above checks
    the targets on more pairs): a closed set with its library, every pair touching and held, figures and a PNG."""
    pytest.importorskip("mujoco")
    import json

    from interhandgen.cli import main

    out = tmp_path / "o.npz"
    assert main(["data", "synth", "--objects", "--num", "2", "--seed", "1", "--categories", "hold_from_below",
                 "--out", str(out), "--no-progress"]) == 0
    s = TwoHandSet.load(out)
    assert len(s) == 2 and s.object_library is not None and s.object_pose.shape == (2, 7)
    assert hand_object_metrics(s)["both_contact"].all()
    assert main(["data", "stats", str(out), "--out", str(tmp_path / "st"), "--no-progress", "--max-samples", "2",
                 "--volume-samples", "2", "--object-samples", "2"]) == 0
    stats = json.loads((tmp_path / "st" / "stats.json").read_text())
    assert stats["objects"]["physics"]["held_fraction"] == 1.0 and (tmp_path / "st" / "samples.png").is_file()


def test_cli_rejects_options_that_do_not_apply(tmp_path, capsys):
    from interhandgen.cli import main

    assert main(["data", "synth", "--objects", "--num", "2", "--out", str(tmp_path / "o.npz"), "--workers", "2"]) == 2
    assert "--workers" in capsys.readouterr().err and not (tmp_path / "o.npz").exists()
