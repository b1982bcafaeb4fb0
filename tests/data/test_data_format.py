"""Tests of the TwoHandSet sample format: file round trip, validation, indexing, concatenation, pose spaces.

Truths: the stored arrays themselves (bit-exact round trips), the hand layer evaluated directly (vertices
must not change under exact pose-space conversions), numpy's linear algebra for the PCA inverse.
"""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch

from interhandgen.data import HandModelSpec, TwoHandSet, axis_angle_to_pca, concatenate, pca_to_axis_angle
from interhandgen.hand import HandModel, save_mano_pkl
from fixtures.data import random_models, random_set
from fixtures.hands import random_hand_data


def labelled_set(n: int = 6, seed: int = 0) -> TwoHandSet:
    rng = np.random.default_rng(seed + 100)
    return random_set(
        n, seed, category=rng.integers(0, 3, n), category_names=["clasp", "touch", "apart"],
        split=rng.integers(0, 2, n), split_names=["train", "val"], object_id=rng.integers(0, 2, n),
        object_names=["box", "mixer"], object_pose=rng.normal(0, 1, (n, 7)), record_id=[f"r{i}" for i in range(n)],
        metadata={"source": "test", "nested": {"a": [1, 2]}},
    )


def assert_sets_equal(a: TwoHandSet, b: TwoHandSet) -> None:
    assert len(a) == len(b)
    for side in ("left", "right"):
        for name in ("pose", "betas", "global_orient", "transl"):
            x, y = getattr(a.hand(side), name), getattr(b.hand(side), name)
            assert x.dtype == y.dtype and np.array_equal(x, y), (side, name)
    assert (a.pose_space, a.flat_hand_mean, a.hand_model, a.metadata) == (b.pose_space, b.flat_hand_mean, b.hand_model, b.metadata)
    assert a.labels.keys() == b.labels.keys()
    for k in a.labels:
        assert np.array_equal(a.labels[k][0], b.labels[k][0]) and a.labels[k][1] == b.labels[k][1]
    for name in ("object_pose", "record_id"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None) and (x is None or np.array_equal(x, y))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_save_load_round_trip_is_bit_exact(tmp_path, dtype):
    s = labelled_set()
    s = s._replace(left=s.left.astype(dtype), right=s.right.astype(dtype))
    path = s.save(tmp_path / "set.npz")
    t = TwoHandSet.load(path)
    assert_sets_equal(s, t)
    with np.load(path, allow_pickle=False) as z:  # every documented key, nothing pickled
        assert set(z.files) == {
            "format_version", "pose_space", "flat_hand_mean", "hand_model", "mano_right", "mano_left",
            "mano_right_sha256", "mano_left_sha256", "mano_fix_left_shapedirs", "metadata",
            *[f"{s}_{n}" for s in ("left", "right") for n in ("pose", "betas", "global_orient", "transl")],
            "category", "category_names", "split", "split_names", "object_id", "object_names", "object_pose", "record_id",
        }
        assert json.loads(str(z["metadata"]))["nested"] == {"a": [1, 2]}
    assert not list(tmp_path.glob(".*tmp"))  # the temp file of the atomic write is gone


def _rewrite(src, dst, change):
    with np.load(src, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    change(arrays)
    np.savez(dst, **arrays)


@pytest.mark.parametrize("change, field", [
    (lambda a: a.pop("right_betas"), "right_betas"),
    (lambda a: a.__setitem__("left_pose", a["left_pose"][:, :40]), "left_pose"),
    (lambda a: a.__setitem__("left_transl", a["left_transl"][:-1]), "left_transl"),
    (lambda a: a["right_global_orient"].__setitem__((2, 1), np.nan), "right_global_orient"),
    (lambda a: a["object_pose"].__setitem__((1, 0), np.inf), "object_pose"),
    (lambda a: a.__setitem__("category", a["category"] + 5), "category"),
    (lambda a: a.pop("split_names"), "split"),
    (lambda a: a.__setitem__("pose_space", np.array("quaternion")), "pose_space"),
    (lambda a: a.__setitem__("metadata", np.array("{not json")), "metadata"),
    (lambda a: a.__setitem__("format_version", np.array(7)), "format_version"),
    (lambda a: a.__setitem__("hand_model", np.array("smpl")), "hand_model"),
])
def test_load_errors_name_file_and_field(tmp_path, change, field):
    src = labelled_set().save(tmp_path / "good.npz")
    bad = tmp_path / "bad.npz"
    _rewrite(src, bad, change)
    with pytest.raises(ValueError) as err:
        TwoHandSet.load(bad)
    assert str(bad) in str(err.value) and field in str(err.value)


def test_nan_error_names_the_sample(tmp_path):
    src = labelled_set().save(tmp_path / "good.npz")
    _rewrite(src, tmp_path / "bad.npz", lambda a: a["left_betas"].__setitem__((4, 3), np.nan))
    with pytest.raises(ValueError, match=r"left_betas.*sample 4"):
        TwoHandSet.load(tmp_path / "bad.npz")


def test_load_missing_and_corrupt_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        TwoHandSet.load(tmp_path / "nope.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="junk.npz"):
        TwoHandSet.load(tmp_path / "junk.npz")
    with pytest.raises(ValueError, match=r"\.npz"):
        labelled_set().save(tmp_path / "x.json")


def test_constructor_rejects_bad_input():
    s = random_set()
    with pytest.raises(ValueError, match="pose_space"):
        random_set(pose_space="rotmat")
    with pytest.raises(ValueError, match="right_pose"):
        TwoHandSet(s.left, dict(pose=s.right.pose[:3], betas=s.right.betas, global_orient=s.right.global_orient,
                                transl=s.right.transl), pose_space="pca", flat_hand_mean=False)
    with pytest.raises(ValueError, match="together"):
        random_set(category=[0] * 6)
    with pytest.raises(TypeError, match="flat_hand_mean"):
        TwoHandSet(s.left, s.right, pose_space="pca", flat_hand_mean=1)
    with pytest.raises(TypeError, match="JSON"):
        random_set(metadata={"bad": object()})


def test_indexing_slicing_and_masks():
    s = labelled_set(n=8)
    for index, expect in [(3, [3]), (-1, [7]), (slice(2, 6, 2), [2, 4]), ([5, 0, 5], [5, 0, 5]),
                          (np.arange(8) % 3 == 0, [0, 3, 6])]:
        sub = s[index]
        assert len(sub) == len(expect)
        assert np.array_equal(sub.right.pose, s.right.pose[expect])
        assert np.array_equal(sub.category, s.category[expect]) and sub.category_names == s.category_names
        assert np.array_equal(sub.object_pose, s.object_pose[expect])
        assert list(sub.record_id) == [f"r{i}" for i in expect]
    with pytest.raises(IndexError):
        s[8]
    with pytest.raises(IndexError):
        s[np.ones(3, dtype=bool)]
    with pytest.raises(TypeError):
        s["a"]
    val = s.select_split("val")
    assert len(val) == int((s.split == 1).sum()) and (val.split == 1).all()
    with pytest.raises(ValueError, match="test"):
        s.select_split("test")


def test_concatenate_merges_labels_by_name():
    a = labelled_set(n=4, seed=1)
    b = labelled_set(n=3, seed=2)
    # b names its categories in another order and adds one: ids must be re-mapped by name.
    names_b = ["apart", "touch", "clasp", "new"]
    b = b._replace(category=np.array([0, 3, 2]), category_names=names_b)
    c = concatenate([a, b])
    assert len(c) == 7
    assert c.category_names == ("clasp", "touch", "apart", "new")
    got = [c.category_names[i] for i in c.category]
    want = [a.category_names[i] for i in a.category] + [names_b[i] for i in (0, 3, 2)]
    assert got == want
    assert np.array_equal(c.left.transl, np.concatenate([a.left.transl, b.left.transl]))
    assert c.metadata == a.metadata  # equal metadata kept
    with pytest.raises(ValueError, match="object_pose"):
        concatenate([a, b._replace(object_pose=None)])
    with pytest.raises(ValueError, match="pose_space"):
        concatenate([a, a._replace(pose_space="axis_angle")])
    with pytest.raises(ValueError):
        concatenate([])


def test_pca_axis_angle_exact_inverse_and_projection():
    rng = np.random.default_rng(5)
    C = rng.normal(size=(45, 45))  # not orthonormal: needs a real inverse, not a transpose
    coeffs = rng.normal(size=(9, 45))
    aa = pca_to_axis_angle(coeffs, C)
    assert np.allclose(aa, coeffs @ C, atol=0)
    back = axis_angle_to_pca(aa, C)
    assert np.abs(back - coeffs).max() < 1e-9
    with pytest.raises(ValueError, match="project=True"):
        axis_angle_to_pca(aa, C, num_comps=20)
    proj = axis_angle_to_pca(aa, C, num_comps=20, project=True)
    # Least squares: the residual is orthogonal to the span of the first 20 components.
    resid = aa - proj @ C[:20]
    assert np.abs(resid @ C[:20].T).max() < 1e-8
    # A pose inside the span is recovered exactly by the projection.
    inside = rng.normal(size=(3, 20))
    assert np.abs(axis_angle_to_pca(inside @ C[:20], C, 20, project=True) - inside).max() < 1e-9


@pytest.mark.parametrize("target_space, target_flat", [("axis_angle", False), ("axis_angle", True), ("pca", True)])
def test_pose_space_conversion_keeps_the_geometry(target_space, target_flat):
    models = random_models()
    s = random_set(n=5, seed=7)
    t = s.converted(target_space, target_flat, models)
    assert (t.pose_space, t.flat_hand_mean) == (target_space, target_flat)
    v0, v1 = s.vertices(models, dtype=torch.float64), t.vertices(models, dtype=torch.float64)
    for side in ("left", "right"):
        # The hand layer holds its constants in float32; float64 conversion differs from it by ~1e-9 m.
        assert (v0[side] - v1[side]).abs().max() < 1e-7
    back = t.converted(s.pose_space, s.flat_hand_mean, models)
    assert np.abs(back.right.pose - s.right.pose).max() < 1e-9


def test_conversion_to_fewer_components_needs_projection():
    models = random_models()
    s = random_set(n=4, seed=8, pose_space="axis_angle")
    with pytest.raises(ValueError, match="project"):
        s.converted("pca", models=models, num_comps=10)
    t = s.converted("pca", models=models, num_comps=10, project=True)
    assert (t.left.pose[:, 10:] == 0).all() and np.abs(t.left.pose[:, :10]).max() > 0


def test_vertices_and_joints_match_the_layer_and_are_batched():
    models = random_models()
    s = random_set(n=7, seed=9, pose_space="axis_angle", flat=True)
    out = s.forward(models, dtype=torch.float64, batch_size=3)
    for side in ("left", "right"):
        layer = HandModel(models[side], use_pca=False, flat_hand_mean=True)
        h = s.hand(side)
        t = lambda a: torch.as_tensor(a)  # noqa: E731
        ref = layer(betas=t(h.betas), global_orient=t(h.global_orient), hand_pose=t(h.pose), transl=t(h.transl))
        # Batches of 3 vs 7 may round differently in the matrix products: equal to 1e-12 m.
        assert torch.allclose(out[side][0], ref.vertices, rtol=0, atol=1e-12)
        assert torch.allclose(out[side][1], ref.joints, rtol=0, atol=1e-12)
    # A HandModel configured differently from the set is not used as is (it would decode the pose wrongly).
    wrong = {side: HandModel(models[side], use_pca=True) for side in ("left", "right")}
    assert torch.allclose(s.vertices(wrong, dtype=torch.float64)["left"], out["left"][0], rtol=0, atol=1e-12)


def test_mano_spec_records_identity_and_loads(tmp_path):
    right = random_hand_data(seed=11)
    save_mano_pkl(right, tmp_path / "MANO_RIGHT.pkl")
    save_mano_pkl(right.mirrored(), tmp_path / "MANO_LEFT.pkl")
    spec = HandModelSpec.mano(tmp_path)
    assert spec.kind == "mano" and len(spec.mano_right_sha256) == 64 and spec.fix_left_shapedirs
    s = random_set(n=3, seed=12, hand_model=spec)
    models = s.hand_models()
    assert models["left"].side == "left" and models["right"].use_pca
    assert np.allclose(models["right"].data.v_template, right.v_template)
    # The recorded spec survives a file round trip.
    t = TwoHandSet.load(s.save(tmp_path / "s.npz"))
    assert t.hand_model == spec
    # A different file at the recorded path is detected.
    save_mano_pkl(random_hand_data(seed=13), tmp_path / "MANO_RIGHT.pkl")
    with pytest.raises(ValueError, match="differs"):
        t.hand_models()
    assert t.hand_models(verify=False)["right"].data.v_template.shape == (778, 3)
    with pytest.raises(FileNotFoundError, match="records no"):
        random_set(hand_model=HandModelSpec("mano")).hand_models()
    with pytest.raises(FileNotFoundError):
        HandModelSpec.mano(tmp_path / "missing")
