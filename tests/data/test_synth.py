"""Tests of the synthetic two-hand interaction generator (interhandgen.data.synth).

Independent truths: the hand layer (full LBS) for the fast subset skinning, exact geometry metrics
(winding-number inside test, exact point-to-triangle distances, manifold3d boolean volumes) for the
interaction targets, the anatomical joint limits for the poses, and plain array equality for determinism.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from interhandgen import geometry
from interhandgen.data import TwoHandSet
from interhandgen.data.format import full_pose_from
from interhandgen.data.synth import (
    CATEGORIES,
    CATEGORY_NAMES,
    CONTACT_DISTANCE,
    JOINT_LIMITS,
    MAX_PENETRATION_DEPTH,
    NO_CONTACT_RANGE,
    HandKinematics,
    assign_splits,
    generate_synthetic_set,
    hand_anatomy,
)
from interhandgen.geometry.points import squared_distances
from interhandgen.data.synth.poses import POSE_FAMILIES, components_to_logits, logits_to_components, sample_pose_logits
from interhandgen.geometry.proxy import build_sphere_proxy
from interhandgen.hand import HandModel
from interhandgen.hand.open_hand import open_hand_data

PER_CATEGORY = 12


@pytest.fixture(scope="module")
def models():
    return {"right": open_hand_data("right"), "left": open_hand_data("left")}


@pytest.fixture(scope="module")
def synth_set(models):
    num = PER_CATEGORY * len(CATEGORY_NAMES)
    return generate_synthetic_set(num, seed=11, batch_size=PER_CATEGORY, progress=False, hand_models=models, workers=1)


def _world_vertices(s: TwoHandSet, models) -> dict:
    layers = {side: HandModel(models[side], use_pca=True) for side in ("left", "right")}
    return s.vertices(layers)


# ------------------------------------------------------------------------------------------ determinism
def test_same_seed_gives_identical_arrays_and_other_seed_differs(models, tmp_path):
    kw = dict(batch_size=6, progress=False, hand_models=models, workers=1, categories=["heart_gesture", "wrist_grip"])
    a = generate_synthetic_set(12, seed=3, out=tmp_path / "a.npz", **kw)
    b = generate_synthetic_set(12, seed=3, out=tmp_path / "b.npz", **kw)
    # The files are byte-identical too (no wall time inside), so a SHA-256 identifies the set.
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    c = generate_synthetic_set(12, seed=4, **kw)
    for side in ("left", "right"):
        for field in ("pose", "betas", "global_orient", "transl"):
            np.testing.assert_array_equal(getattr(a.hand(side), field), getattr(b.hand(side), field))
            assert not np.array_equal(getattr(a.hand(side), field), getattr(c.hand(side), field))
    np.testing.assert_array_equal(a.category, b.category)
    np.testing.assert_array_equal(a.split, b.split)
    np.testing.assert_array_equal(a.record_id, b.record_id)


def test_result_does_not_depend_on_torch_thread_setting(models):
    kw = dict(batch_size=4, progress=False, hand_models=models, workers=1, categories=["index_touch_palm"])
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        a = generate_synthetic_set(4, seed=9, **kw)
        torch.set_num_threads(1)
        b = generate_synthetic_set(4, seed=9, **kw)
    finally:
        torch.set_num_threads(previous)
    assert torch.get_num_threads() == previous
    np.testing.assert_array_equal(a.right.pose, b.right.pose)
    np.testing.assert_array_equal(a.left.transl, b.left.transl)


# ------------------------------------------------------------------------------------------ labels
def test_every_category_appears_with_its_balanced_count_and_label(synth_set):
    assert len(CATEGORY_NAMES) >= 12
    assert synth_set.category_names == CATEGORY_NAMES
    counts = np.bincount(synth_set.category, minlength=len(CATEGORY_NAMES))
    np.testing.assert_array_equal(counts, np.full(len(CATEGORY_NAMES), PER_CATEGORY))
    # record_id "<category>/<active side>/<index>" agrees with the label
    names = np.array([r.split("/")[0] for r in synth_set.record_id])
    np.testing.assert_array_equal(names, np.array(CATEGORY_NAMES)[synth_set.category])
    active = np.array([r.split("/")[1] for r in synth_set.record_id])
    assert set(active) == {"left", "right"}
    assert synth_set.pose_space == "pca" and synth_set.flat_hand_mean is False
    meta = synth_set.metadata["synth"]
    assert set(meta["per_category"]) == set(CATEGORY_NAMES)
    for stats in meta["per_category"].values():
        assert stats["generated"] >= stats["requested"]
        assert stats["generated"] - stats["requested"] >= 0
        assert all(v >= 0 for v in stats["rejected"].values())


def test_categories_filter_generates_only_those(models):
    s = generate_synthetic_set(6, seed=0, batch_size=6, progress=False, hand_models=models, workers=1,
                               categories=["cupped_hands", "near_no_contact"])
    assert s.category_names == ("cupped_hands", "near_no_contact")
    np.testing.assert_array_equal(np.bincount(s.category), [3, 3])


def test_shapes_and_pair_orientation_vary(synth_set):
    betas = np.concatenate([synth_set.left.betas, synth_set.right.betas])
    assert abs(betas.mean()) < 0.15 and 0.8 < betas.std() < 1.2  # N(0, 1) on the model's shape components
    # The pair's orientation is uniform on SO(3): the mean rotation matrix of the active-independent left
    # hand is near zero (it would be near the identity without the random pair rotation).
    R = torch.stack([torch.as_tensor(g) for g in synth_set.left.global_orient]).double()
    from interhandgen.rotations import axis_angle_to_matrix

    mean = axis_angle_to_matrix(R).mean(0)
    assert mean.abs().max() < 0.3


# ------------------------------------------------------------------------------------------ targets
def test_contact_and_penetration_targets_with_exact_metrics(synth_set, models):
    # The exact metrics cost about a second per pair on this machine: check 3 samples per category here;
    # test_targets_per_category_on_64_samples_each (slow) checks 64 per category.
    keep = np.concatenate([np.flatnonzero(synth_set.category == c)[:3] for c in range(len(CATEGORY_NAMES))])
    synth_set = synth_set[keep]
    verts = _world_vertices(synth_set, models)
    vl, vr = verts["left"].double(), verts["right"].double()
    fl, fr = models["left"].faces, models["right"].faces
    dist = geometry.min_distance(vl, vr, fl, fr).numpy()
    depth = geometry.penetration_depth(vl, fl, vr, fr, method="exact").numpy()
    volume = geometry.penetration_volume(vl, fl, vr, fr, num_workers=1)
    no_contact = np.array([not CATEGORIES[n].in_contact for n in synth_set.category_names])[synth_set.category]
    contact_rate = float(np.mean(dist[~no_contact] < CONTACT_DISTANCE))
    assert contact_rate >= 0.9, contact_rate
    assert volume.mean() < 0.3, volume.mean()
    assert depth.max() <= MAX_PENETRATION_DEPTH + 1e-6, depth.max()
    lo, hi = NO_CONTACT_RANGE
    assert np.all((dist[no_contact] >= lo) & (dist[no_contact] <= hi)), dist[no_contact]
    assert np.all(volume[no_contact] == 0.0)


@pytest.mark.slow
def test_targets_per_category_on_64_samples_each(models):
    s = generate_synthetic_set(64 * len(CATEGORY_NAMES), seed=21, batch_size=64, progress=False,
                               hand_models=models, workers=1)
    verts = _world_vertices(s, models)
    vl, vr = verts["left"].double(), verts["right"].double()
    fl, fr = models["left"].faces, models["right"].faces
    dist = geometry.min_distance(vl, vr, fl, fr).numpy()
    depth = geometry.penetration_depth(vl, fl, vr, fr, method="exact").numpy()
    volume = geometry.penetration_volume(vl, fl, vr, fr)
    assert depth.max() <= MAX_PENETRATION_DEPTH + 1e-6
    assert volume.mean() < 0.3
    for c, name in enumerate(s.category_names):
        sel = s.category == c
        if CATEGORIES[name].in_contact:
            assert np.mean(dist[sel] < CONTACT_DISTANCE) >= 0.9, name
        else:
            assert np.all((dist[sel] >= NO_CONTACT_RANGE[0]) & (dist[sel] <= NO_CONTACT_RANGE[1]))


# ------------------------------------------------------------------------------------------ poses
def test_joint_limits_are_respected(synth_set, models):
    for side in ("left", "right"):
        data = models[side]
        anatomy = hand_anatomy(data)
        full = full_pose_from(synth_set.hand(side).pose, "pca", False, data)  # [N, 45] flat-relative
        comps = anatomy.axis_angle_to_components(full)
        lo, hi = JOINT_LIMITS[..., 0], JOINT_LIMITS[..., 1]
        tol = 1e-4  # float32 storage of the PCA coefficients
        assert np.all(comps >= lo - tol) and np.all(comps <= hi + tol)


def test_pose_logits_stay_inside_limits_and_round_trip():
    gen = torch.Generator().manual_seed(0)
    for family in POSE_FAMILIES.values():
        z = sample_pose_logits(family, 200, gen, torch.float64)
        c = logits_to_components(z)
        lo, hi = torch.as_tensor(JOINT_LIMITS[..., 0]), torch.as_tensor(JOINT_LIMITS[..., 1])
        assert bool(((c > lo) & (c < hi)).all()), family.name
        torch.testing.assert_close(components_to_logits(c), z, atol=1e-7, rtol=1e-7)
    with pytest.raises(ValueError, match="joint limits"):
        components_to_logits(torch.as_tensor(JOINT_LIMITS[..., 1])[None])


def test_anatomical_axes_flex_fingers_towards_the_palm(models):
    data = models["right"]
    a = hand_anatomy(data)
    assert np.allclose(np.einsum("jab,jcb->jac", a.joint_axes, a.joint_axes), np.eye(3), atol=1e-12)
    layer = HandModel(data, use_pca=False, flat_hand_mean=True)
    rest = layer(hand_pose=torch.zeros(1, 45, dtype=torch.float64)).joints[0].numpy()
    comps = np.zeros((15, 3))
    for j in (1, 4, 7, 10):  # the four MCP joints flexed by 0.5 rad
        comps[j - 1, 0] = 0.5
    pose = torch.as_tensor(a.components_to_axis_angle(comps))[None]
    flexed = layer(hand_pose=pose).joints[0].numpy()
    tips = [17, 18, 19, 20]  # index, middle, ring, pinky fingertips in MANO21 order
    moved = (flexed[tips] - rest[tips]) @ a.palmar
    assert np.all(moved > 0.02)  # every fingertip moved > 2 cm towards the palm side
    np.testing.assert_allclose(a.axis_angle_to_components(a.components_to_axis_angle(comps)), comps, atol=1e-12)


def test_anatomy_of_the_mirrored_model_is_the_mirror_image(models):
    right, left = hand_anatomy(models["right"]), hand_anatomy(models["left"])
    M = np.diag([-1.0, 1.0, 1.0])
    np.testing.assert_allclose(left.forward, M @ right.forward, atol=1e-12)
    np.testing.assert_allclose(left.palmar, M @ right.palmar, atol=1e-12)
    for name, ids in right.regions.items():
        np.testing.assert_array_equal(left.regions[name], ids)


# ------------------------------------------------------------------------------------------ kinematics
def test_subset_skinning_matches_the_hand_layer(models):
    data = models["left"]
    kin = HandKinematics(data, subset_size=256, dtype=torch.float64)
    gen = torch.Generator().manual_seed(1)
    betas = torch.randn(3, 10, generator=gen, dtype=torch.float64)
    logits = sample_pose_logits(POSE_FAMILIES["grip"], 3, gen, torch.float64)
    full_pose = kin.logits_to_full_pose(logits)
    layer = HandModel(data, use_pca=False, flat_hand_mean=True)
    ref = layer(betas=betas, hand_pose=full_pose[:, 3:]).vertices
    _, rest = kin.shaped_joints(betas)
    sub, _ = kin.pose_subset(betas, rest, full_pose)
    torch.testing.assert_close(sub, ref[:, kin.subset], atol=1e-7, rtol=0)  # the layer's buffers are float32
    index = torch.stack([torch.randperm(256, generator=gen)[:40] for _ in range(3)])
    pts, _, _ = kin.pose_points(kin.prepare_points(betas, full_pose, index), rest, full_pose)
    torch.testing.assert_close(pts, torch.gather(ref[:, kin.subset], 1, index[..., None].expand(-1, -1, 3)),
                               atol=1e-7, rtol=0)
    full = kin.pose_full(betas, full_pose)
    torch.testing.assert_close(full.vertices, ref, atol=1e-7, rtol=0)
    # PCA coefficients written by the generator decode to the same pose through the layer's PCA path
    coeffs = kin.pose_to_pca(full_pose[:, 3:])
    pca_layer = HandModel(data, use_pca=True, flat_hand_mean=False)
    torch.testing.assert_close(pca_layer(betas=betas, hand_pose=coeffs).vertices, ref, atol=1e-7, rtol=0)


def test_squared_distances_match_brute_force():
    gen = torch.Generator().manual_seed(2)
    a = torch.randn(2, 30, 3, generator=gen, dtype=torch.float64) + 5.0
    b = torch.randn(2, 20, 3, generator=gen, dtype=torch.float64) + 5.0
    brute = ((a[:, :, None] - b[:, None]) ** 2).sum(-1)
    torch.testing.assert_close(squared_distances(a, b), brute, atol=1e-9, rtol=0)


def test_blocked_nearest_neighbours_match_brute_force(monkeypatch):
    import interhandgen.geometry.points as opt

    monkeypatch.setattr(opt, "BLOCK_ELEMS", 700)  # several blocks of samples
    gen = torch.Generator().manual_seed(3)
    a = torch.randn(7, 30, 3, generator=gen, dtype=torch.float64)
    b = torch.randn(7, 20, 3, generator=gen, dtype=torch.float64)
    assert len(opt.sample_blocks(7, 30, 20)) > 1
    brute = ((a[:, :, None] - b[:, None]) ** 2).sum(-1)
    d_ab, i_ab, d_ba, i_ba = opt.nearest_both_ways(a, b)
    assert torch.equal(i_ab, brute.argmin(2)) and torch.equal(i_ba, brute.argmin(1))
    torch.testing.assert_close(d_ab, brute.amin(2), atol=1e-9, rtol=0)
    torch.testing.assert_close(d_ba, brute.amin(1), atol=1e-9, rtol=0)
    torch.testing.assert_close(opt.min_squared_distance(a, b), brute.amin(dim=(1, 2)), atol=1e-9, rtol=0)


def test_hand_written_adam_matches_torch_adam_with_cosine_decay():
    from interhandgen.geometry.optim import BatchedAdam as _Adam

    gen = torch.Generator().manual_seed(4)
    target = torch.randn(5, 3, generator=gen, dtype=torch.float64)
    x_ref = torch.zeros(5, 3, dtype=torch.float64, requires_grad=True)
    ref = torch.optim.Adam([x_ref], lr=0.1)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(ref, T_max=12, eta_min=0.0)
    ours = _Adam([torch.zeros(5, 3, dtype=torch.float64)], [0.1], steps=12)
    for _ in range(12):
        loss = ((x_ref - target) ** 4).sum()
        ref.zero_grad()
        loss.backward()
        ref.step()
        sched.step()
        ours.step([4 * (ours.params[0] - target) ** 3])
    torch.testing.assert_close(ours.params[0], x_ref.detach(), atol=1e-12, rtol=0)
    # Dropping rows keeps the remaining rows' parameters and moments.
    m_before = ours.m[0][[0, 3]].clone()
    ours.keep(torch.tensor([0, 3]))
    assert ours.params[0].shape == (2, 3) and torch.equal(ours.m[0], m_before)


def test_interrupted_run_resumes_to_identical_arrays(tmp_path, models, monkeypatch):
    import interhandgen.data.synth.generator as gmod

    kw = dict(batch_size=3, progress=False, hand_models=models, workers=1, categories=["heart_gesture", "wrist_grip"])
    reference = generate_synthetic_set(12, seed=5, resume=False, **kw)
    real = gmod._generate_chunk
    calls = []

    def interrupted(*args):
        if len(calls) == 3:
            raise KeyboardInterrupt  # as if Ctrl-C arrived during the fourth chunk
        calls.append(args)
        return real(*args)

    out = tmp_path / "set.npz"
    monkeypatch.setattr(gmod, "_generate_chunk", interrupted)
    with pytest.raises(KeyboardInterrupt):
        generate_synthetic_set(12, seed=5, out=str(out), **kw)
    parts = tmp_path / "set.npz.parts"
    stored = sorted(parts.glob("seed5-*/*.npz"))
    assert len(stored) == 3 and not out.exists()

    calls.clear()
    monkeypatch.setattr(gmod, "_generate_chunk", lambda *args: calls.append(args) or real(*args))
    resumed = generate_synthetic_set(12, seed=5, out=str(out), **kw)
    assert len(calls) >= 1
    assert not {(c[3], c[4]) for c in calls} & {(p.name.split(".")[0], int(p.name.split(".")[1])) for p in stored}
    assert not parts.exists() and out.exists()
    loaded = TwoHandSet.load(out)
    for s in (resumed, loaded):
        for side in ("left", "right"):
            for key in ("pose", "betas", "global_orient", "transl"):
                np.testing.assert_array_equal(getattr(s.hand(side), key), getattr(reference.hand(side), key))
        np.testing.assert_array_equal(s.category, reference.category)
        np.testing.assert_array_equal(s.split, reference.split)
        np.testing.assert_array_equal(s.record_id, reference.record_id)
    assert resumed.metadata["synth"]["per_category"] == reference.metadata["synth"]["per_category"]


def test_sphere_proxy_lies_inside_the_mesh(models):
    data = models["right"]
    proxy = build_sphere_proxy(data, dtype=torch.float64)
    V = torch.as_tensor(data.v_template)[None]
    rest_joints = torch.as_tensor(data.J_regressor @ data.v_template)[None]
    centres = torch.einsum("sj,bjc->bsc", proxy.coeff, rest_joints)
    assert bool(geometry.points_inside(centres, V, data.faces).all())
    surface = geometry.point_to_surface_distance(centres, V, data.faces)[0]
    assert bool((proxy.radius < surface).all())  # every sphere strictly inside the surface


# ------------------------------------------------------------------------------------------ splits
def test_splits_are_disjoint_reproducible_and_sized(synth_set):
    n = len(synth_set)
    ids = synth_set.split
    assert synth_set.split_names == ("train", "validation", "test")
    np.testing.assert_array_equal(np.bincount(ids, minlength=3), [round(0.8 * n), round(0.1 * n), n - round(0.8 * n) - round(0.1 * n)])
    np.testing.assert_array_equal(assign_splits(n, (0.8, 0.1, 0.1), 11), ids)
    assert not np.array_equal(assign_splits(n, (0.8, 0.1, 0.1), 12), ids)
    parts = [set(np.flatnonzero(ids == k)) for k in range(3)]
    assert parts[0].isdisjoint(parts[1]) and parts[0].isdisjoint(parts[2]) and parts[1].isdisjoint(parts[2])
    assert len(synth_set.select_split("validation")) == round(0.1 * n)


# ------------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num=0), "num must be a positive integer"),
        (dict(seed=-1), "seed must be a non-negative integer"),
        (dict(splits=(0.5, 0.5, 0.5)), "splits must be three"),
        (dict(categories=["no_such_category"]), "categories must be distinct names"),
        (dict(batch_size=0), "batch_size must be a positive integer"),
        (dict(workers=0), "workers must be a positive integer"),
    ],
)
def test_bad_arguments_raise_clear_errors(models, kwargs, match):
    args = dict(num=4, seed=0, progress=False, hand_models=models)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        generate_synthetic_set(**args)


def test_hand_models_must_name_both_sides(models):
    with pytest.raises(ValueError, match="hand_models"):
        generate_synthetic_set(4, 0, progress=False, hand_models={"right": models["right"]})
    with pytest.raises(ValueError, match="hand_models\\['left'\\]"):
        generate_synthetic_set(4, 0, progress=False, hand_models={"right": models["right"], "left": models["right"]})


def test_writes_a_loadable_file(tmp_path, models):
    out = tmp_path / "synth.npz"
    s = generate_synthetic_set(2, seed=1, out=str(out), batch_size=2, progress=False, hand_models=models,
                               workers=1, categories=["fist_in_palm"])
    loaded = TwoHandSet.load(out)
    np.testing.assert_array_equal(loaded.right.pose, s.right.pose)
    assert loaded.metadata["synth"]["seed"] == 1


def test_cli_forwards_workers_and_no_resume(tmp_path, monkeypatch):
    import argparse

    import interhandgen.data.synth as synth
    from interhandgen.cli import data_cmd

    calls = []
    monkeypatch.setattr(synth, "generate_synthetic_set", lambda num, seed, out, **kw: calls.append(kw) or [0] * num)
    parser = argparse.ArgumentParser()
    data_cmd.register(parser.add_subparsers(dest="command"))
    out = str(tmp_path / "s.npz")
    for extra, expected in (([], {}), (["--workers", "2", "--no-resume"], {"workers": 2, "resume": False})):
        args = parser.parse_args(["data", "synth", "--num", "3", "--out", out, "--no-progress", *extra])
        assert args.func(args) == 0
        assert {k: calls[-1][k] for k in ("workers", "resume") if k in calls[-1]} == expected
    with pytest.raises(SystemExit) as exc:  # the parser checks counts (positive_int)
        parser.parse_args(["data", "synth", "--num", "3", "--out", out, "--workers", "0"])
    assert exc.value.code == 2
