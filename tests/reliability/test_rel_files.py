"""Broken input files: each one ends in a clean error naming the file (and the field), or is recomputed with a
warning where the file is a cache."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from interhandgen.data.format import TwoHandSet
from interhandgen.exceptions import InputError
from interhandgen.safe_files import NpzReader, loads_json, read_json

from _rel_util import assert_clean_error, run_cli, tiny_set


def test_npy_renamed_npz(tmp_path, capsys):
    path = tmp_path / "a.npz"
    with open(path, "wb") as fh:
        np.save(fh, np.zeros((3, 4)))
    with pytest.raises(InputError, match=r"a\.npz: is a single \.npy array"):
        TwoHandSet.load(path)
    rc, err = run_cli(["render", "--samples", path, "--out", tmp_path / "r.png"], capsys)
    assert_clean_error(rc, err, str(path), "single .npy array")


def test_pickled_object_in_a_required_field(tmp_path):
    arrays = tiny_set().to_arrays()
    arrays["left_betas"] = np.array([{"evil": 1}] * 3, dtype=object)
    path = tmp_path / "p.npz"
    np.savez(path, **arrays)
    with pytest.raises(InputError, match=r"field 'left_betas' holds pickled Python objects"):
        TwoHandSet.load(path)


def test_truncated_and_bitflipped_npz(tmp_path):
    good = tmp_path / "g.npz"
    tiny_set().save(good)
    payload = good.read_bytes()
    trunc = tmp_path / "t.npz"
    trunc.write_bytes(payload[: len(payload) // 2])
    with pytest.raises(InputError, match="t.npz"):
        TwoHandSet.load(trunc)


def test_wrong_format_version_type(tmp_path):
    arrays = tiny_set().to_arrays()
    arrays["format_version"] = np.array(["one"])
    path = tmp_path / "v.npz"
    np.savez(path, **arrays)
    with pytest.raises(InputError, match="field 'format_version' must be an integer scalar"):
        TwoHandSet.load(path)


def test_npz_reader_folder_and_missing(tmp_path):
    with pytest.raises(InputError, match="is a folder"):
        NpzReader(tmp_path)
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        NpzReader(tmp_path / "nope.npz")


# --- JSON ---------------------------------------------------------------------------------------------------------
def _hand(rng):
    return {"pose": rng.normal(0, 0.2, 48).tolist(), "shape": rng.normal(0, 0.5, 10).tolist(),
            "trans": [0.0, 0.0, 0.5]}


def _interhand_text(frames: list[tuple[str, dict]]) -> str:
    """One capture '0' whose frames are given as (key, record) pairs; keys may repeat (raw text is written)."""
    body = ", ".join(f'"{k}": {json.dumps(v)}' for k, v in frames)
    return '{"0": {' + body + "}}"


def test_interhand_duplicate_frame_keys(tmp_path, capsys):
    rng = np.random.default_rng(0)
    path = tmp_path / "InterHand2.6M_test_MANO_NeuralAnnot.json"
    path.write_text(_interhand_text([("7", {"left": _hand(rng), "right": _hand(rng)}),
                                     ("7", {"left": _hand(rng), "right": _hand(rng)})]))
    rc, err = run_cli(["data", "convert", "--format", "interhand-json", path, "--out", tmp_path / "o.npz",
                       "--no-progress"], capsys)
    assert_clean_error(rc, err, str(path), "duplicate key '7'")
    assert not (tmp_path / "o.npz").exists()


def test_interhand_boolean_pose_is_a_bad_record(tmp_path, capsys):
    from interhandgen.data.interhand import load_interhand_mano_json

    rng = np.random.default_rng(0)
    bad = _hand(rng)
    bad["pose"][0] = True
    path = tmp_path / "InterHand2.6M_test_MANO_NeuralAnnot.json"
    path.write_text(_interhand_text([("1", {"left": _hand(rng), "right": _hand(rng)}),
                                     ("2", {"left": bad, "right": _hand(rng)})]))
    with pytest.raises(ValueError, match="capture 0 frame 2: left hand: 'pose' contains true/false"):
        load_interhand_mano_json(path)
    two, summary = load_interhand_mano_json(path, skip_bad=True)
    assert len(two) == 1 and summary.to_dict()["kept"] == 1


@pytest.mark.parametrize("payload, fragment", [
    (b'{"0": {"1": \xff}}', "not UTF-8"),
    (b"[" * 200_000 + b"]" * 200_000, "nested too deeply"),
    (b'{"0": ', "not valid JSON"),
])
def test_broken_json_text(tmp_path, capsys, payload, fragment):
    path = tmp_path / "InterHand2.6M_test_MANO_NeuralAnnot.json"
    path.write_bytes(payload)
    with pytest.raises(InputError, match=fragment):
        read_json(path)
    rc, err = run_cli(["data", "convert", "--format", "interhand-json", path, "--out", tmp_path / "o.npz"], capsys)
    assert_clean_error(rc, err, str(path), fragment)


def test_json_nan_policy():
    assert np.isnan(loads_json("[NaN]", "x")[0])
    with pytest.raises(InputError, match="not valid JSON"):
        loads_json("[NaN]", "x", allow_nan=False)


# --- ARCTIC -------------------------------------------------------------------------------------------------------
def test_arctic_sequence_without_frames(tmp_path, capsys):
    folder = tmp_path / "raw_seqs" / "s01"
    folder.mkdir(parents=True)
    hand = {"rot": np.zeros((0, 3)), "pose": np.zeros((0, 45)), "trans": np.zeros((0, 3)), "shape": np.zeros(10),
            "fitting_err": np.zeros(0)}
    np.save(folder / "box_grab_01.mano.npy", np.array({"left": hand, "right": dict(hand)}, dtype=object),
            allow_pickle=True)
    rc, err = run_cli(["data", "convert", "--format", "arctic", tmp_path / "raw_seqs", "--out", tmp_path / "o.npz",
                       "--no-objects", "--no-progress"], capsys)
    assert_clean_error(rc, err, "box_grab_01.mano.npy", "no frames (T = 0)")


# --- models -------------------------------------------------------------------------------------------------------
def _bundled():
    from interhandgen.generation import bundled_model_path
    from interhandgen.models.artifact import read_model_file

    return read_model_file(bundled_model_path())


@pytest.mark.parametrize("fmt, field", [("interhandgen.model.v1", "model_config"), ("interhandgen.model.v2", "header")])
def test_model_metadata_not_json(tmp_path, capsys, fmt, field):
    from safetensors.torch import save

    from interhandgen.generation import load_model

    art = _bundled()
    tensors = {f"net.{k}": v.contiguous() for k, v in art.state_dict.items()}
    tensors.update({"stats.mean": art.stats_mean, "stats.std": art.stats_std})
    path = tmp_path / "m.safetensors"
    path.write_bytes(save(tensors, metadata={"format": fmt, field: "{not json", "provenance": "{}"}))
    with pytest.raises(InputError, match=rf"m\.safetensors: metadata field '{field}': not valid JSON"):
        load_model(path)
    rc, err = run_cli(["sample", "--num", "2", "--checkpoint", path, "--out", tmp_path / "s.npz"], capsys)
    assert_clean_error(rc, err, str(path), field)


def test_evaluator_given_as_its_safetensors_file():
    from interhandgen.evaluation.bundled import bundled_evaluator_path, load_evaluator

    folder = bundled_evaluator_path()
    a = load_evaluator(folder / "model.safetensors")
    b = load_evaluator(folder)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_evaluator_safetensors_not_named_by_its_config(tmp_path):
    import shutil

    from interhandgen.evaluation.bundled import bundled_evaluator_path, load_evaluator

    shutil.copytree(bundled_evaluator_path(), tmp_path / "ev")
    (tmp_path / "ev" / "model.safetensors").rename(tmp_path / "ev" / "other.safetensors")
    with pytest.raises(InputError, match="names the weights file model.safetensors"):
        load_evaluator(tmp_path / "ev" / "other.safetensors")


# --- caches -------------------------------------------------------------------------------------------------------
class _Extractor(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.arange(6.0).reshape(2, 3))


def test_zeroed_feature_cache_is_recomputed(tmp_path):
    from interhandgen.evaluation.cache import cached_reference_features

    ref = tiny_set(n=4)
    calls = []

    def compute():
        calls.append(1)
        return torch.arange(8.0).reshape(4, 2) + 1.0

    feats, hit, path = cached_reference_features(_Extractor(), ref, compute, 2, "cpu", tmp_path)
    assert not hit and len(calls) == 1
    again, hit, _ = cached_reference_features(_Extractor(), ref, compute, 2, "cpu", tmp_path)
    assert hit and len(calls) == 1 and torch.equal(again, feats)
    # Zero the stored features (a valid .npy of the right shape: only the checksum can tell).
    buf = path.read_bytes()
    header = len(buf) - feats.numel() * 4
    path.write_bytes(buf[:header] + bytes(feats.numel() * 4))
    assert np.load(path).shape == (4, 2)
    with pytest.warns(UserWarning, match="checksum"):
        fresh, hit, _ = cached_reference_features(_Extractor(), ref, compute, 2, "cpu", tmp_path)
    assert not hit and len(calls) == 2 and torch.equal(fresh, feats)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, hit, _ = cached_reference_features(_Extractor(), ref, compute, 2, "cpu", tmp_path)
    assert hit


def test_synth_damaged_chunk_is_recomputed(tmp_path):
    from interhandgen.data.synth.generator import GroupResult, HandBatch, _ChunkStore

    def hb(n):
        return HandBatch(*(np.zeros((n, w), np.float32) for w in (45, 45, 10, 3, 3)))

    store = _ChunkStore(tmp_path / "o.npz.parts", "k", owns_root=True)
    res = [("right", GroupResult(hb(2), hb(2), np.zeros(2), np.zeros(2), np.zeros(2, bool)))]
    store.save("cat", 0, 2, res)
    assert store.usable("cat", 0, 2)
    path = store.path("cat", 0, 2)
    path.write_bytes(path.read_bytes()[:100])  # a truncated chunk (BadZipFile before)
    with pytest.warns(UserWarning, match=r"stored chunk .*cat\.000000\.2\.npz is unreadable"):
        assert not store.usable("cat", 0, 2)
    assert not path.exists()


@pytest.mark.slow
def test_synth_no_resume_removes_stale_parts(tmp_path):
    from interhandgen.data.synth import generate_synthetic_set
    from interhandgen.data.synth.categories import CATEGORY_NAMES

    out = tmp_path / "s.npz"
    stale = tmp_path / "s.npz.parts" / "seed0-old"
    stale.mkdir(parents=True)
    (stale / "x.000000.4.npz").write_bytes(b"junk")
    with pytest.warns(UserWarning, match="removing the chunks of an earlier run"):
        generate_synthetic_set(4, 0, str(out), batch_size=4, categories=[CATEGORY_NAMES[0]], workers=1,
                               progress=False, resume=False)
    assert out.is_file() and not (tmp_path / "s.npz.parts").exists()
