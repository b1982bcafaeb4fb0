"""Hand-object metrics against independent closed forms (a large box against the open hand)."""

import numpy as np
import pytest
import torch
import trimesh

from interhandgen.data.format import TwoHandSet
from interhandgen.data.object_library import ObjectLibrary
from interhandgen.exceptions import InputError
from interhandgen.objects.library import make_object
from interhandgen.objects.metrics import hand_object_metrics, object_world_vertices

SIZE = 0.4  # a box much larger than the hand


def _pairs(offsets):
    """Pairs whose right hand meets a large box; the box's -x face is at max_x(right hand) + offset. The left hand
    is 1 m away."""
    n = len(offsets)
    zeros = lambda w: np.zeros((n, w))  # noqa: E731
    right = {"pose": zeros(45), "betas": zeros(10), "global_orient": zeros(3), "transl": zeros(3)}
    left = dict(right, transl=np.tile([[-1.0, 0.0, 0.0]], (n, 1)))
    s = TwoHandSet(left, right, pose_space="pca", flat_hand_mean=False)
    rv = s.vertices()["right"][0].numpy()
    centre = rv.mean(0)
    pose = np.zeros((n, 7))
    pose[:, 4] = rv[:, 0].max() + np.asarray(offsets) + SIZE / 2
    pose[:, 5:] = centre[1:]
    box = make_object("box", {"size_x": SIZE, "size_y": SIZE, "size_z": SIZE})
    lib = ObjectLibrary.from_meshes(["box"], [box])
    return TwoHandSet(left, right, pose_space="pca", flat_hand_mean=False, object_id=np.zeros(n, dtype=int),
                      object_names=["box"], object_pose=pose, object_library=lib), rv


def test_separated_touching_and_penetrating():
    pairs, rv = _pairs([0.05, 0.001, -0.01])
    m = hand_object_metrics(pairs)
    # separated by 5 cm: the hand's extreme vertex faces the box's plane
    assert m["right_min_distance_mm"][0] == pytest.approx(50.0, abs=1e-6)
    assert m["right_penetration_volume_cm3"][0] == 0 and m["right_penetration_depth_mm"][0] == 0
    assert not m["right_contact"][0] and not m["left_contact"].any() and not m["both_contact"].any()
    # 1 mm away: in contact
    assert m["right_min_distance_mm"][1] == pytest.approx(1.0, abs=1e-6) and m["right_contact"][1]
    # 10 mm into the box: depth 10 mm, volume = the hand's part beyond the plane (manifold3d's plane trim, not the
    # mesh boolean the metric uses)
    assert m["right_penetration_depth_mm"][2] == pytest.approx(10.0, abs=1e-6)
    import manifold3d as m3

    from interhandgen.hand import open_hand

    faces = getattr(open_hand("right"), "data", open_hand("right")).faces
    hand = m3.Manifold(m3.Mesh64(vert_properties=np.ascontiguousarray(rv, dtype=np.float64),
                                 tri_verts=np.ascontiguousarray(faces, dtype=np.int64)))
    part = hand.trim_by_plane((1.0, 0.0, 0.0), float(rv[:, 0].max() - 0.01))
    assert m["right_penetration_volume_cm3"][2] == pytest.approx(part.volume() * 1e6, rel=1e-6)
    assert trimesh.Trimesh(rv, faces, process=False).is_watertight  # the open hand is closed: no seal needed
    assert m["left_penetration_volume_cm3"].max() == 0


def test_object_world_vertices_applies_rotation_then_translation():
    box = make_object("box", {"size_x": 0.1, "size_y": 0.2, "size_z": 0.3})
    pose = np.array([[0.0, 0.0, 0.0, np.pi / 2, 1.0, 2.0, 3.0]])
    w = object_world_vertices(box.vertices, pose)[0]
    expect = box.vertices @ np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1.0]]).T + [1, 2, 3]
    np.testing.assert_allclose(w, expect, atol=1e-12)


def test_sets_without_objects_raise():
    pairs, _ = _pairs([0.01])
    plain = TwoHandSet(pairs.left, pairs.right, pose_space="pca", flat_hand_mean=False)
    with pytest.raises(InputError, match="no object library"):
        hand_object_metrics(plain)


def test_both_hands_contact_by_exact_distance():
    import dataclasses

    from interhandgen.objects.metrics import hand_object_contact

    pairs, _ = _pairs([0.05, 0.001, 0.0019, 0.0021, -0.01])
    # the left hand 1 m away: no pair has both hands in contact
    assert not hand_object_contact(pairs).any()
    assert hand_object_metrics(pairs, volume=False)["right_contact"].tolist() == [False, True, True, False, True]
    # the left hand moved so that its extreme vertex in x meets the box's face where the right hand's does (same
    # offsets): against the metrics' both_contact, computed through hand_object_metrics' own route
    lv, rv = (pairs.vertices()[s][0].numpy() for s in ("left", "right"))
    shift = np.r_[rv[:, 0].max() - lv[:, 0].max(), rv.mean(0)[1:] - lv.mean(0)[1:]]
    both = pairs._replace(left=dataclasses.replace(pairs.left, transl=pairs.left.transl + shift))
    m = hand_object_metrics(both, volume=False)
    assert m["both_contact"].tolist() == [False, True, True, False, True]
    np.testing.assert_array_equal(hand_object_contact(both), m["both_contact"])


def test_wilson_interval_matches_its_closed_form_and_stays_in_the_unit_interval():
    from interhandgen.objects.metrics import wilson_interval

    # 0 of 10: the closed form's upper end z^2 / (n + z^2), the lower end 0 (a normal interval would be empty)
    z2 = 1.959964 ** 2
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(z2 / (10 + z2), rel=1e-12)
    lo, hi = wilson_interval(10, 10)
    assert hi == 1.0 and lo == pytest.approx(10 / (10 + z2), rel=1e-12)
    # symmetric about 1/2 for k and n - k, and contains the rate
    a, b = wilson_interval(17, 100), wilson_interval(83, 100)
    assert a[0] == pytest.approx(1 - b[1], abs=1e-12) and a[0] < 0.17 < a[1]
    for bad in ((3, 2), (-1, 5), (0, 0)):
        with pytest.raises(InputError, match="wilson_interval"):
            wilson_interval(*bad)


def test_bootstrap_interval_of_the_mean_is_deterministic_and_brackets_it(monkeypatch):
    from interhandgen.objects.metrics import bootstrap_mean_interval

    rng = np.random.default_rng(3)
    heavy = rng.pareto(1.5, 400) * 0.01  # heavy-tailed like penetration volumes
    lo, hi = bootstrap_mean_interval(heavy)
    assert (lo, hi) == bootstrap_mean_interval(heavy)  # fixed seed
    assert 0 <= lo < heavy.mean() < hi
    # against the normal theory on a light-tailed sample: the half-width is about 1.96 s / sqrt(n)
    light = rng.normal(5.0, 2.0, 2000)
    lo, hi = bootstrap_mean_interval(light)
    assert (hi - lo) / 2 == pytest.approx(1.959964 * light.std(ddof=1) / np.sqrt(light.size), rel=0.1)
    assert bootstrap_mean_interval(np.full(7, 0.25)) == (0.25, 0.25)
    # drawn in chunks (a small chunk forced here): the same interval as the resamples drawn at once
    from interhandgen.objects import metrics as metrics_module

    idx = np.random.default_rng(0).integers(0, heavy.size, size=(300, heavy.size))
    means = heavy[idx].mean(axis=1)
    at_once = (float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5)))
    monkeypatch.setattr(metrics_module, "_BOOTSTRAP_CHUNK", 7 * heavy.size)  # 7 resamples per chunk, 43 chunks
    assert bootstrap_mean_interval(heavy, resamples=300) == at_once
    with pytest.raises(InputError, match="bootstrap_mean_interval"):
        bootstrap_mean_interval(np.array([1.0, np.nan]))


def test_summary_reports_intervals_and_the_volume_tail():
    from interhandgen.objects.metrics import bootstrap_mean_interval, summarise_hand_object, wilson_interval

    n = 200
    left, right = np.zeros(n), np.zeros(n)
    left[:3] = [5.0, 0.5, 0.2]  # three hands carry all of it, one of them most
    right[10] = 2.0
    metrics = {"both_contact": np.arange(n) % 10 != 0, "left_penetration_volume_cm3": left,
               "right_penetration_volume_cm3": right}
    for side in ("left", "right"):
        metrics[f"{side}_contact"] = np.ones(n, dtype=bool)
        metrics[f"{side}_penetration_depth_mm"] = np.zeros(n)
        metrics[f"{side}_min_distance_mm"] = np.ones(n)
    out = summarise_hand_object(metrics)
    assert out["penetration_volume_cm3_per_hand_mean"] == pytest.approx(7.7 / 400)
    # resampled by pairs: the interval is that of the pairs' mean volumes
    assert out["penetration_volume_cm3_per_hand_ci95"] == list(bootstrap_mean_interval((left + right) / 2))
    assert out["both_contact_rate_ci95"] == list(wilson_interval(180, 200))
    tail = out["penetration_volume_tail"]
    assert tail["hands_above_0.1_cm3"] == pytest.approx(4 / 400) and tail["hands_above_1_cm3"] == pytest.approx(2 / 400)
    # the largest 1 % of 400 hands: the 4 largest, all of the volume
    assert tail["share_in_largest_1pct_hands"] == pytest.approx(1.0)
    left[:3], right[10] = 0.0, 0.0
    assert summarise_hand_object(metrics)["penetration_volume_tail"]["share_in_largest_1pct_hands"] is None
