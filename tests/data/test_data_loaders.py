"""Tests of the real-data loaders on small files written here in each data set's own format.

Schemas reproduced: InterHand2.6M ``InterHand2.6M_{split}_MANO_NeuralAnnot.json``; IntagHand's
``{split}/anno/{idx}.pkl`` (dataset/interhand.py of Dw1010/IntagHand: mano_params with R [1,3,3], pose [1,45] PCA,
shape [1,10], trans [1,3], plus image/annotation/camera records); ARCTIC ``raw_seqs/<subject>/<seq>.mano.npy``
(pickled dict) and ``<seq>.object.npy``. Truths: the values written, smplx.MANO evaluated with each data set's own
layer settings (InterHand2.6M / ARCTIC: use_pca=False, flat_hand_mean=False), and cross-consistency of the json
and IntagHand encodings of the same hands.
"""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from interhandgen.data import HandModelSpec
from interhandgen.data._records import BadRecordError
from interhandgen.data.arctic import load_arctic_sequences
from interhandgen.data.convert import convert, load_real_data
from interhandgen.data.format import TwoHandSet
from interhandgen.data.interhand import load_intaghand_anno, load_interhand_mano_json
from interhandgen.hand import save_mano_pkl
from fixtures.data import hand_values, random_models, write_interhand_json

SIDES = ("left", "right")


@pytest.fixture
def mano_dir(tmp_path):
    """MANO-format files of a random model: right, and its mirror image as the (already fixed) left."""
    models = random_models()
    d = tmp_path / "mano"
    d.mkdir()
    save_mano_pkl(models["right"], d / "MANO_RIGHT.pkl")
    save_mano_pkl(models["left"], d / "MANO_LEFT.pkl", left_shapedirs_fixed=True)
    return d


def smplx_vertices(mano_path, side, pose48, betas, transl):
    """Reference: smplx.MANO with InterHand2.6M's / ARCTIC's settings (use_pca=False, flat_hand_mean=False)."""
    smplx = pytest.importorskip("smplx")
    pose48 = torch.as_tensor(np.asarray(pose48, dtype=np.float64))
    model = smplx.MANO(str(mano_path), is_rhand=side == "right", use_pca=False, flat_hand_mean=False,
                       batch_size=pose48.shape[0], dtype=torch.float64)
    t = lambda a: torch.as_tensor(np.array(a, dtype=np.float64))  # noqa: E731
    out = model(global_orient=pose48[:, :3], hand_pose=pose48[:, 3:], betas=t(betas), transl=t(transl))
    return out.vertices


# ---------------------------------------------------------------------------------------------------------------------
# InterHand2.6M NeuralAnnot json
# ---------------------------------------------------------------------------------------------------------------------

def test_interhand_json_exact_values_filters_and_ids(tmp_path):
    path, data = write_interhand_json(tmp_path)
    s, summary = load_interhand_mano_json(path, dtype=np.float64)
    assert list(s.record_id) == ["7/12", "9/100", "9/102"]
    assert (s.pose_space, s.flat_hand_mean) == ("axis_angle", False)
    assert s.hand_model.kind == "mano" and s.hand_model.fix_left_shapedirs
    assert s.split_names == ("validation",) and (s.split == 0).all()  # InterHand2.6M's "val"
    for i, rid in enumerate(s.record_id):
        cap, frame = rid.split("/")
        for side in SIDES:
            rec = data[cap][frame][side]
            h = s.hand(side)
            assert h.global_orient[i].tolist() == rec["pose"][:3]
            assert h.pose[i].tolist() == rec["pose"][3:]
            assert h.betas[i].tolist() == rec["shape"] and h.transl[i].tolist() == rec["trans"]
    assert (summary.records, summary.kept) == (6, 3)
    assert summary.filtered == {"left hand null": 1, "right hand null": 1, "both hands null": 1}
    assert s.metadata["load_summary"]["kept"] == 3 and s.metadata["mano_layer"]["use_pca"] is False
    s32, _ = load_interhand_mano_json(path)
    assert s32.right.pose.dtype == np.float32 and np.array_equal(s32.right.pose, s.right.pose.astype(np.float32))


def test_interhand_json_geometry_matches_smplx(tmp_path, mano_dir):
    path, data = write_interhand_json(tmp_path, seed=1)
    s, _ = load_interhand_mano_json(path, mano_dir=mano_dir, dtype=np.float64)
    assert s.hand_model.mano_right.endswith("MANO_RIGHT.pkl") and len(s.hand_model.mano_left_sha256) == 64
    verts = s.vertices(dtype=torch.float64)
    for side in SIDES:
        recs = [data[r.split("/")[0]][r.split("/")[1]][side] for r in s.record_id]
        ref = smplx_vertices(mano_dir / f"MANO_{side.upper()}.pkl", side, [r["pose"] for r in recs],
                             [r["shape"] for r in recs], [r["trans"] for r in recs])
        assert (verts[side] - ref).abs().max() < 1e-6


@pytest.mark.parametrize("corrupt, message", [
    (lambda d: d["9"]["100"]["right"].__setitem__("pose", [0.0] * 47), r"capture 9 frame 100: right hand: 'pose' shape \[47\]"),
    (lambda d: d["9"]["100"]["left"].pop("trans"), r"capture 9 frame 100: left hand: missing key 'trans'"),
    (lambda d: d["9"]["100"]["left"]["shape"].__setitem__(4, float("nan")), r"capture 9 frame 100: left hand: 'shape' contains NaN"),
    (lambda d: d["9"]["100"].pop("left"), r"capture 9 frame 100: expected keys 'left' and 'right'"),
    (lambda d: d["9"]["100"]["right"].__setitem__("trans", "abc"), r"capture 9 frame 100: right hand: 'trans' not numeric"),
])
def test_interhand_json_bad_records(tmp_path, corrupt, message):
    path, data = write_interhand_json(tmp_path)
    corrupt(data)
    path.write_text(json.dumps(data))  # json writes NaN as a bare NaN token, which json.load reads back
    with pytest.raises(BadRecordError, match=message) as err:
        load_interhand_mano_json(path)
    assert str(path) in str(err.value)
    s, summary = load_interhand_mano_json(path, skip_bad=True)
    assert summary.skipped_bad == 1 and summary.kept == 2 and list(s.record_id) == ["7/12", "9/102"]
    assert len(summary.bad_messages) == 1 and "capture 9 frame 100" in summary.bad_messages[0]
    assert summary.records == summary.kept + sum(summary.filtered.values()) + summary.skipped_bad


def test_interhand_json_not_an_annotation_file(tmp_path):
    (tmp_path / "a.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="a.json"):
        load_interhand_mano_json(tmp_path / "a.json")
    (tmp_path / "b.json").write_text("{bad")
    with pytest.raises(ValueError, match="b.json.*JSON"):
        load_interhand_mano_json(tmp_path / "b.json")
    with pytest.raises(FileNotFoundError):
        load_interhand_mano_json(tmp_path / "missing.json")


# ---------------------------------------------------------------------------------------------------------------------
# IntagHand anno/*.pkl
# ---------------------------------------------------------------------------------------------------------------------

def intaghand_record(models, recs: dict, capture, frame, camera, idx) -> dict:
    """What IntagHand's cut_inter_img pickles for one image (float32 arrays from torch tensors)."""
    mano = {}
    for side in SIDES:
        rec = recs[side]
        pose = torch.tensor(rec["pose"], dtype=torch.float32).view(-1, 3)
        hand_pose = pose[1:].reshape(1, -1)
        C = torch.tensor(models[side].hands_components, dtype=torch.float32)
        mean = torch.tensor(models[side].hands_mean, dtype=torch.float32)
        pca = ((hand_pose + mean) - mean) @ torch.inverse(C)  # axis2pca(hand_pose + hands_mean)
        R = torch.tensor(Rotation.from_rotvec(pose[0].double().numpy()).as_matrix(), dtype=torch.float32)[None]
        mano[side] = {"R": R.numpy(), "pose": pca.numpy(), "shape": torch.tensor(rec["shape"], dtype=torch.float32)[None].numpy(),
                      "trans": torch.tensor(rec["trans"], dtype=torch.float32)[None].numpy()}
    return {
        "inter_idx": idx,
        "image": {"id": 1000 + idx, "file_name": f"Capture{capture}/x/cam{camera}/image{frame}.jpg", "width": 334,
                  "height": 512, "capture": capture, "subject": 1, "seq_name": "0266_dh_pray", "camera": str(camera),
                  "frame_idx": frame},
        "annotation": {"id": 1000 + idx, "image_id": 1000 + idx, "bbox": [1.0, 2.0, 3.0, 4.0],
                       "joint_valid": [[1]] * 42, "hand_type": "interacting", "hand_type_valid": 1},
        "mano_params": mano,
        "camera": {"R": np.eye(3, dtype=np.float32), "t": np.zeros(3, dtype=np.float32), "camera": np.eye(3)},
    }


def write_intaghand(root, models, frames_by_split, seed=0):
    """frames_by_split: {split: [(capture, frame, camera)]}; returns {split: [hand records]}."""
    rng = np.random.default_rng(seed)
    written = {}
    for split, frames in frames_by_split.items():
        anno = root / split / "anno"
        anno.mkdir(parents=True)
        written[split] = []
        cache = {}
        for idx, (capture, frame, camera) in enumerate(frames):
            recs = cache.setdefault((capture, frame), {side: hand_values(rng) for side in SIDES})
            with open(anno / f"{idx}.pkl", "wb") as fh:
                pickle.dump(intaghand_record(models, recs, capture, frame, camera, idx), fh)
            written[split].append(recs)
    return written


def test_intaghand_values_splits_and_order(tmp_path):
    models = random_models()
    frames = {"train": [(13, 40 + i, 400030) for i in range(11)], "val": [(2, 7, 400002), (2, 8, 400002)]}
    written = write_intaghand(tmp_path / "ih", models, frames)
    s, summary = load_intaghand_anno(tmp_path / "ih")
    assert len(s) == 13 and summary.kept == 13 and summary.records == 13
    assert s.split_names == ("train", "validation") and s.split.tolist() == [0] * 11 + [1] * 2
    # Numeric file order (0, 1, ..., 10), not lexicographic (0, 1, 10, 2, ...).
    assert list(s.record_id[:3]) == ["train/0:13/40/400030", "train/1:13/41/400030", "train/2:13/42/400030"]
    assert s.record_id[10] == "train/10:13/50/400030"
    assert (s.pose_space, s.flat_hand_mean, s.hand_model.fix_left_shapedirs) == ("pca", False, True)
    for i, recs in enumerate(written["train"] + written["val"]):
        for side in SIDES:
            pkl = intaghand_record(models, recs, 0, 0, 0, 0)["mano_params"][side]
            h = s.hand(side)
            assert np.array_equal(h.pose[i], pkl["pose"][0]) and np.array_equal(h.betas[i], pkl["shape"][0])
            assert np.array_equal(h.transl[i], pkl["trans"][0])
            assert np.abs(h.global_orient[i] - np.asarray(recs[side]["pose"][:3])).max() < 2e-6
    # The split folder alone, and the anno folder alone, are read too (split from the folder name).
    s_val, _ = load_intaghand_anno(tmp_path / "ih" / "val")
    assert s_val.split_names == ("validation",) and len(s_val) == 2
    s_anno, _ = load_intaghand_anno(tmp_path / "ih" / "train" / "anno")
    assert s_anno.split_names == ("train",) and len(s_anno) == 11


def test_intaghand_and_interhand_json_give_the_same_hands(tmp_path, mano_dir):
    """IntagHand's PCA encoding (axis2pca of the NeuralAnnot pose with the mean added) and the NeuralAnnot json
    describe the same geometry under their documented layer settings."""
    models = random_models()
    written = write_intaghand(tmp_path / "ih", models, {"test": [(5, 1, 400001), (5, 2, 400001), (6, 3, 400004)]}, seed=3)
    s_pkl, _ = load_intaghand_anno(tmp_path / "ih", mano_dir=mano_dir)
    raw = {"5": {}, "6": {}}
    for (cap, frame, _), recs in zip([(5, 1, 0), (5, 2, 0), (6, 3, 0)], written["test"]):
        raw[str(cap)][str(frame)] = recs
    path = tmp_path / "InterHand2.6M_test_MANO_NeuralAnnot.json"
    path.write_text(json.dumps(raw))
    s_json, _ = load_interhand_mano_json(path, mano_dir=mano_dir, dtype=np.float64)
    v1, v2 = s_pkl.vertices(dtype=torch.float64), s_json.vertices(dtype=torch.float64)
    for side in SIDES:
        # float32 storage of R and of the PCA coefficients (through a float32 matrix inverse): ~1e-6 m.
        assert (v1[side] - v2[side]).abs().max() < 2e-5


def test_intaghand_filters_duplicates_and_null_hands(tmp_path):
    models = random_models()
    root = tmp_path / "ih"
    write_intaghand(root, models, {"train": [(1, 5, 400001), (1, 5, 400002), (1, 6, 400001)]})
    rec = pickle.loads((root / "train" / "anno" / "2.pkl").read_bytes())
    rec["mano_params"]["left"] = None
    (root / "train" / "anno" / "3.pkl").write_bytes(pickle.dumps(rec))
    s, summary = load_intaghand_anno(root)
    assert len(s) == 3 and summary.filtered == {"left hand null": 1}
    s, summary = load_intaghand_anno(root, unique_frames=True)
    assert list(s.record_id) == ["train/0:1/5/400001", "train/2:1/6/400001"]
    assert summary.filtered == {"left hand null": 1, "duplicate frame (other camera)": 1}
    assert summary.records == 4


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo should-not-run",))


@pytest.mark.parametrize("corrupt, message", [
    (lambda r: r["mano_params"]["right"].pop("trans"), r"mano_params\['right'\]: missing key 'trans'"),
    (lambda r: r["mano_params"]["left"].__setitem__("pose", np.zeros((1, 44), np.float32)), r"\['left'\]\['pose'\]: shape \[1, 44\]"),
    (lambda r: r["mano_params"]["left"].__setitem__("R", 2 * r["mano_params"]["left"]["R"]), r"\['left'\]\['R'\] is not a rotation"),
    (lambda r: r["mano_params"]["right"]["shape"].__setitem__((0, 1), np.nan), r"\['right'\]\['shape'\]: contains NaN"),
    (lambda r: r.__setitem__("mano_params", [1, 2]), r"'mano_params' dict"),
    (lambda r: r.__setitem__("evil", _RunsCode()), r"cannot unpickle.*refusing to load global"),
])
def test_intaghand_bad_records(tmp_path, corrupt, message):
    models = random_models()
    root = tmp_path / "ih"
    write_intaghand(root, models, {"val": [(1, i, 400001) for i in range(3)]})
    bad = root / "val" / "anno" / "1.pkl"
    rec = pickle.loads(bad.read_bytes())
    corrupt(rec)
    bad.write_bytes(pickle.dumps(rec))
    with pytest.raises(BadRecordError, match=message) as err:
        load_intaghand_anno(root)
    assert str(bad) in str(err.value)
    s, summary = load_intaghand_anno(root, skip_bad=True)
    assert summary.skipped_bad == 1 and len(s) == 2 and [r.split(":")[0] for r in s.record_id] == ["val/0", "val/2"]


def test_intaghand_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_intaghand_anno(tmp_path / "none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no IntagHand annotations"):
        load_intaghand_anno(tmp_path / "empty")


# ---------------------------------------------------------------------------------------------------------------------
# ARCTIC raw_seqs
# ---------------------------------------------------------------------------------------------------------------------

def arctic_sequence(rng, T, per_frame_shape=False) -> tuple[dict, np.ndarray]:
    mano = {}
    for side in ("right", "left"):
        f = lambda *shape, s=1.0: (rng.normal(0, s, shape)).astype(np.float32)  # noqa: E731
        mano[side] = {"rot": f(T, 3), "pose": f(T, 45, s=0.4), "trans": f(T, 3, s=0.3),
                      "shape": f(T, 10) if per_frame_shape else f(10), "fitting_err": np.abs(f(T)) * 0.01}
    obj = np.concatenate([rng.uniform(0, 1, (T, 1)), rng.normal(0, 1, (T, 3)), rng.normal(0, 300, (T, 3))], 1).astype(np.float32)
    return mano, obj


def write_arctic(root, seed=0):
    rng = np.random.default_rng(seed)
    seqs = {}
    for subject, seq, T, per_frame in (("s01", "box_grab_01", 5, False), ("s02", "mixer_use_02", 3, True),
                                       ("s02", "box_use_01", 2, False)):
        mano, obj = arctic_sequence(rng, T, per_frame)
        (root / subject).mkdir(parents=True, exist_ok=True)
        np.save(root / subject / f"{seq}.mano.npy", mano)  # a pickled dict, as ARCTIC ships it
        np.save(root / subject / f"{seq}.object.npy", obj)
        seqs[f"{subject}/{seq}"] = (mano, obj)
    return seqs


def test_arctic_exact_values_objects_and_ids(tmp_path):
    root = tmp_path / "raw_seqs"
    seqs = write_arctic(root)
    s, summary = load_arctic_sequences(root)
    order = ["s01/box_grab_01", "s02/box_use_01", "s02/mixer_use_02"]  # sorted paths
    assert len(s) == 10 and summary.kept == 10 and summary.records == 10
    assert list(s.record_id[:6]) == [f"s01/box_grab_01/{t}" for t in range(5)] + ["s02/box_use_01/0"]
    assert (s.pose_space, s.flat_hand_mean) == ("axis_angle", False)
    assert s.hand_model.kind == "mano" and s.hand_model.fix_left_shapedirs is False
    assert s.object_names == ("box", "mixer") and s.object_id.tolist() == [0] * 7 + [1] * 3
    start = 0
    for name in order:
        mano, obj = seqs[name]
        T = obj.shape[0]
        sl = slice(start, start + T)
        for side in SIDES:
            h = s.hand(side)
            assert np.array_equal(h.global_orient[sl], mano[side]["rot"]) and np.array_equal(h.pose[sl], mano[side]["pose"])
            assert np.array_equal(h.transl[sl], mano[side]["trans"])
            assert np.array_equal(h.betas[sl], np.broadcast_to(mano[side]["shape"], (T, 10)))
        assert np.array_equal(s.object_pose[sl, :4], obj[:, :4])
        assert np.allclose(s.object_pose[sl, 4:], obj[:, 4:].astype(np.float64) / 1000.0, rtol=1e-6, atol=0)  # mm -> m
        start += T
    one, _ = load_arctic_sequences(root / "s02" / "mixer_use_02.mano.npy", include_objects=False)
    assert len(one) == 3 and one.object_pose is None and "object_id" not in one.labels


def test_arctic_geometry_matches_smplx_without_the_left_fix(tmp_path):
    """ARCTIC's layer is smplx.MANO(use_pca=False, flat_hand_mean=False) with the ORIGINAL left shapedirs."""
    models = random_models()
    mano = tmp_path / "mano"
    mano.mkdir()
    save_mano_pkl(models["right"], mano / "MANO_RIGHT.pkl")
    # An official-style left model: shapedirs not fixed (the x-components carry the right hand's sign).
    left = models["left"]
    unfixed = type(left)(**{**{f: getattr(left, f) for f in left.ARRAY_FIELDS}, "side": "left", "name": left.name})
    unfixed.shapedirs[:, 0, :] *= -1
    save_mano_pkl(unfixed, mano / "MANO_LEFT.pkl", left_shapedirs_fixed=False)
    root = tmp_path / "raw_seqs"
    seqs = write_arctic(root, seed=2)
    s, _ = load_arctic_sequences(root / "s01", mano_dir=mano)
    mano_seq, _ = seqs["s01/box_grab_01"]
    verts = s.vertices(dtype=torch.float64)
    for side in SIDES:
        m = mano_seq[side]
        ref = smplx_vertices(mano / f"MANO_{side.upper()}.pkl", side, np.concatenate([m["rot"], m["pose"]], 1),
                             np.broadcast_to(m["shape"], (5, 10)), m["trans"])
        assert (verts[side] - ref).abs().max() < 1e-6
    # With the left fix (InterHand2.6M's setting) the left hands would come out differently.
    fixed = s.with_hand_model(HandModelSpec.mano(mano, fix_left_shapedirs=True)).vertices(dtype=torch.float64)
    assert (fixed["left"] - verts["left"]).abs().max() > 1e-4


def test_arctic_bad_frames_and_files(tmp_path):
    root = tmp_path / "raw_seqs"
    write_arctic(root)
    path = root / "s01" / "box_grab_01.mano.npy"
    mano = np.load(path, allow_pickle=True).item()
    mano["left"]["pose"][2, 7] = np.nan
    np.save(path, mano)
    with pytest.raises(BadRecordError, match=r"s01/box_grab_01 frame 2 contains NaN") as err:
        load_arctic_sequences(root)
    assert str(path) in str(err.value)
    s, summary = load_arctic_sequences(root, skip_bad=True)
    assert len(s) == 9 and summary.skipped_bad == 1 and "s01/box_grab_01/2" not in set(s.record_id)
    # Structural damage: the whole file is bad.
    mano["right"]["pose"] = mano["right"]["pose"][:, :44]
    np.save(path, mano)
    with pytest.raises(BadRecordError, match=r"box_grab_01.mano.npy: 'right'\['pose'\]: shape \[5, 44\]"):
        load_arctic_sequences(root)
    s, summary = load_arctic_sequences(root, skip_bad=True)
    assert len(s) == 5 and summary.skipped_files == 1 and summary.skipped_bad == 0
    # Missing object file.
    (root / "s02" / "box_use_01.object.npy").unlink()
    with pytest.raises(BadRecordError, match="box_use_01.object.npy not found"):
        load_arctic_sequences(root / "s02")
    assert len(load_arctic_sequences(root / "s02", include_objects=False)[0]) == 5
    # A mano file that is not a dict of both hands.
    np.save(root / "s02" / "bad_x_01.mano.npy", {"right": {}})
    with pytest.raises(BadRecordError, match="keys 'left' and 'right'"):
        load_arctic_sequences(root / "s02", include_objects=False)
    with pytest.raises(FileNotFoundError):
        load_arctic_sequences(tmp_path / "nothing")


def test_convert_writes_a_loadable_set(tmp_path):
    path, _ = write_interhand_json(tmp_path)
    s, summary = convert("interhand-json", path, tmp_path / "out.npz")
    back = TwoHandSet.load(tmp_path / "out.npz")
    assert len(back) == 3 and np.array_equal(back.left.pose, s.left.pose) and list(back.record_id) == list(s.record_id)
    with pytest.raises(ValueError, match="unknown data format"):
        load_real_data("h2o", path)
