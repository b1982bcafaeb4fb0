"""Fuzz: randomly damaged files (truncated, bit-flipped, zeroed, junk appended, fields of the wrong type or shape)
fed to every file loader. Each must either load (the damage hit bytes that do not matter) or fail with the
project's user-facing error naming the file; the CLI then exits with status 2 and no traceback.

Seeded and bounded (``CASES`` per file kind); the whole module runs in well under a minute on one core.
"""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch

from interhandgen.cli import main
from interhandgen.exceptions import InterHandGenError

from _rel_util import tiny_set

CASES = 12

# User errors are the project's own types (InputError, MissingFileError, ...); anything else escaping a loader,
# a plain ValueError included, is a bug.
USER_ERRORS = (InterHandGenError,)


def _damage(payload: bytes, rng: np.random.Generator) -> bytes:
    kind = rng.integers(5)
    n = len(payload)
    if kind == 0:  # truncated
        return payload[: int(rng.integers(0, n))]
    if kind == 1:  # bit flips
        b = bytearray(payload)
        for i in rng.integers(0, n, size=int(rng.integers(1, 9))):
            b[i] ^= 1 << int(rng.integers(8))
        return bytes(b)
    if kind == 2:  # a zeroed block
        start = int(rng.integers(0, n))
        length = int(rng.integers(1, max(2, n // 4)))
        return payload[:start] + bytes(min(length, n - start)) + payload[start + length:]
    if kind == 3:  # junk appended
        return payload + rng.bytes(int(rng.integers(1, 64)))
    return b""  # empty


def _check(loader, path, argv, capsys):
    """``loader(path)`` either succeeds or raises a user error naming ``path``; in the latter case the CLI run of
    ``argv`` exits 2 without a traceback and names the file too."""
    try:
        loader(path)
    except USER_ERRORS as exc:
        assert str(path) in str(exc) or path.name in str(exc), f"message does not name the file: {exc}"
        rc = main([str(a) for a in argv])
        err = capsys.readouterr().err
        assert rc == 2 and "Traceback" not in err, err
        assert path.name in err, err
        return False
    return True


def _fuzz_bytes(base: bytes, path, loader, argv, capsys, seed: int) -> int:
    rng = np.random.default_rng(seed)
    failed = 0
    for _ in range(CASES):
        path.write_bytes(_damage(base, rng))
        failed += not _check(loader, path, argv, capsys)
    return failed


# --- TwoHandSet .npz ----------------------------------------------------------------------------------------------
def _wrong_fields(arrays: dict, rng: np.random.Generator) -> dict:
    out = dict(arrays)
    key = sorted(out)[int(rng.integers(len(out)))]
    n = len(arrays["left_pose"])
    choices = [np.array("text"), np.zeros((n, 2, 2)), np.ones(n, dtype=bool), np.arange(3), np.array(1.5),
               np.zeros((0,)), np.array([np.nan] * n), np.array(["a"] * n)]
    out[key] = choices[int(rng.integers(len(choices)))]
    return out


def test_fuzz_two_hand_npz(tmp_path, capsys):
    from interhandgen.data.format import TwoHandSet

    good = tmp_path / "good.npz"
    tiny_set().save(good)
    path = tmp_path / "fuzz.npz"
    argv = ["render", "--samples", path, "--out", tmp_path / "o.png", "--view-size", "8"]  # fails after loading
    failed = _fuzz_bytes(good.read_bytes(), path, TwoHandSet.load, argv, capsys, seed=1)
    rng = np.random.default_rng(2)
    arrays = tiny_set().to_arrays()
    for _ in range(CASES):
        np.savez(path, **_wrong_fields(arrays, rng))
        failed += not _check(TwoHandSet.load, path, argv, capsys)
    assert failed >= CASES  # most damage is detected (the rest hit bytes that do not matter)


def test_fuzz_view_export_input(tmp_path, capsys):
    # The viewer reads its samples with the same loader: a damaged file stops `view --export` with a clean error
    # before any page is written.
    from interhandgen.data.format import TwoHandSet

    good = tmp_path / "good.npz"
    tiny_set().save(good)
    path, page = tmp_path / "fuzz.npz", tmp_path / "page.html"
    failed = _fuzz_bytes(good.read_bytes(), path, TwoHandSet.load, ["view", path, "--export", page], capsys, seed=15)
    assert failed >= CASES // 2
    assert not page.exists()


# --- InterHand2.6M JSON -------------------------------------------------------------------------------------------
def _interhand_doc(rng):
    def hand():
        return {"pose": rng.normal(0, 0.2, 48).round(4).tolist(), "shape": rng.normal(0, 0.5, 10).round(4).tolist(),
                "trans": [0.0, 0.1, 0.5]}

    return {"0": {str(f): {"left": hand(), "right": hand()} for f in range(3)}}


def _wrong_json_value(doc, rng):
    frame = doc["0"][str(int(rng.integers(3)))]
    side = frame["left" if rng.integers(2) else "right"]
    key = ["pose", "shape", "trans"][int(rng.integers(3))]
    side[key] = [None, "x", True, {"a": 1}, [[1.0]], 7, []][int(rng.integers(7))]
    return doc


def test_fuzz_interhand_json(tmp_path, capsys):
    from interhandgen.data.interhand import load_interhand_mano_json

    rng = np.random.default_rng(3)
    path = tmp_path / "InterHand2.6M_test_MANO_NeuralAnnot.json"
    argv = ["data", "convert", "--format", "interhand-json", path, "--out", tmp_path / "o.npz", "--no-progress"]
    base = json.dumps(_interhand_doc(rng)).encode()
    _fuzz_bytes(base, path, load_interhand_mano_json, argv, capsys, seed=4)
    for _ in range(CASES):
        path.write_text(json.dumps(_wrong_json_value(_interhand_doc(rng), rng)))
        assert not _check(load_interhand_mano_json, path, argv, capsys)


# --- training checkpoint and exported model -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from interhandgen.training import TrainConfig, train

    run = tmp_path_factory.mktemp("fuzzrun")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 2, 64, generator=g)
    x[:, 0, 55:] = 0.0
    model = {"preset": "small", "hidden_dim": 32, "embed_dim": 16, "num_layers": 2, "skips": [1], "num_heads": 2,
             "ff_dim": 32, "num_encoder_layers": 1}
    cfg = TrainConfig(epochs=1, batch_size=32, lr=1e-3, warmup_steps=1, checkpoint_every=1, log_every=1,
                      sample_every_epochs=100, num_timesteps=24)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(model, cfg, x, x[:16], torch.zeros(2, 64), torch.ones(2, 64), run, progress=False)
    finally:
        torch.set_num_threads(n)
    return run


def test_fuzz_checkpoint(tmp_path, capsys, run_dir):
    from interhandgen.generation import load_model

    path = tmp_path / "fuzz.pt"
    argv = ["sample", "--num", "1", "--checkpoint", path, "--out", tmp_path / "o.npz", "--steps", "1"]
    base = (run_dir / "checkpoint.pt").read_bytes()
    assert _fuzz_bytes(base, path, load_model, argv, capsys, seed=5) >= CASES // 2
    ckpt = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    rng = np.random.default_rng(6)
    for _ in range(CASES):
        bad = dict(ckpt)
        key = ["stats", "model_config", "train_config", "ema", "format", "step"][int(rng.integers(6))]
        bad[key] = [None, "x", 3, [1, 2], {"mean": torch.zeros(3)}, torch.zeros(2)][int(rng.integers(6))]
        torch.save(bad, path)
        _check(load_model, path, argv, capsys)


def test_fuzz_exported_model(tmp_path, capsys, run_dir):
    from safetensors.torch import load_file, save_file

    from interhandgen.generation import load_model

    path = tmp_path / "fuzz.safetensors"
    argv = ["sample", "--num", "1", "--checkpoint", path, "--out", tmp_path / "o.npz", "--steps", "1"]
    base = (run_dir / "model.safetensors").read_bytes()
    assert _fuzz_bytes(base, path, load_model, argv, capsys, seed=7) >= CASES // 2
    tensors = load_file(run_dir / "model.safetensors")
    rng = np.random.default_rng(8)
    for _ in range(CASES):
        meta = {"format": "interhandgen.model.v1", "model_config": '{"preset": "small"}', "provenance": "{}"}
        key = ["model_config", "provenance", "format"][int(rng.integers(3))]
        meta[key] = ['{"hidden_dim": "wide"}', "[1, 2]", "{", "null", '{"preset": 3}', '{"num_layers": -1}'][
            int(rng.integers(6))]
        t = dict(tensors)
        if rng.integers(2):
            t["stats.std"] = torch.zeros_like(t["stats.std"])
        save_file(t, path, metadata=meta)
        assert not _check(load_model, path, argv, capsys)


# --- YAML experiment config ---------------------------------------------------------------------------------------
def test_fuzz_yaml_config(tmp_path, capsys):
    from interhandgen.training import load_experiment

    text = ("model: {preset: small, hidden_dim: 32, num_layers: 2, skips: [1]}\n"
            "train: {epochs: 1, batch_size: 16, lr: 2.0e-3, seed: 1, betas: [0.9, 0.99]}\n").encode()
    path = tmp_path / "c.yaml"
    argv = ["train", "--config", path, "--data", tmp_path / "missing.npz", "--out", tmp_path / "run"]
    rng = np.random.default_rng(9)
    for _ in range(2 * CASES):
        path.write_bytes(_damage(text, rng))
        if _check(load_experiment, path, argv, capsys):
            # It parsed: the run then stops at the missing data file, cleanly.
            rc = main([str(a) for a in argv])
            assert rc == 2 and "missing.npz" in capsys.readouterr().err


# --- evaluator ----------------------------------------------------------------------------------------------------
def test_fuzz_evaluator(tmp_path, capsys):
    import shutil

    from interhandgen.evaluation.bundled import bundled_evaluator_path, load_evaluator

    folder = tmp_path / "ev"
    shutil.copytree(bundled_evaluator_path(), folder)
    s = tmp_path / "s.npz"
    tiny_set().save(s)
    # --no-floor: the floor draw (a split the tiny set lacks) would stop the run before the evaluator is read.
    argv = ["evaluate", "--samples", s, "--reference", s, "--evaluator", folder, "--out", tmp_path / "r",
            "--no-floor"]
    for name, seed in (("config.json", 10), ("model.safetensors", 11)):
        good = (folder / name).read_bytes()
        rng = np.random.default_rng(seed)
        for _ in range(CASES):
            (folder / name).write_bytes(_damage(good, rng))
            try:
                load_evaluator(folder)
            except USER_ERRORS as exc:
                assert str(folder) in str(exc), exc
                rc = main([str(a) for a in argv])
                err = capsys.readouterr().err
                assert rc == 2 and "Traceback" not in err and str(folder) in err, err
        (folder / name).write_bytes(good)


# --- ARCTIC and hand model files ----------------------------------------------------------------------------------
def test_fuzz_arctic_and_hand_model(tmp_path, capsys):
    from interhandgen.data.arctic import load_arctic_sequences
    from interhandgen.hand.mano_io import read_mano_data
    from interhandgen.hand.open_hand import open_hand_data

    seq = tmp_path / "raw_seqs" / "s01" / "box_grab_01.mano.npy"
    seq.parent.mkdir(parents=True)
    hand = {"rot": np.zeros((4, 3)), "pose": np.zeros((4, 45)), "trans": np.zeros((4, 3)), "shape": np.zeros(10),
            "fitting_err": np.zeros(4)}
    np.save(seq, np.array({"left": hand, "right": dict(hand)}, dtype=object), allow_pickle=True)
    argv = ["data", "convert", "--format", "arctic", seq, "--out", tmp_path / "o.npz", "--no-objects",
            "--no-progress"]
    _fuzz_bytes(seq.read_bytes(), seq, lambda p: load_arctic_sequences(p, include_objects=False), argv, capsys, 12)

    model = tmp_path / "MANO_RIGHT.npz"
    open_hand_data("right").save_npz(model) if hasattr(open_hand_data("right"), "save_npz") else pytest.skip()
    argv = ["hand", "--model", model, "--out", tmp_path / "h.obj"]
    _fuzz_bytes(model.read_bytes(), model, lambda p: read_mano_data(p, side="right"), argv, capsys, 13)


def test_fuzz_mano_pickle(tmp_path, capsys):
    from interhandgen.hand.mano_io import read_mano_data, save_mano_pkl
    from interhandgen.hand.open_hand import open_hand_data

    path = tmp_path / "MANO_RIGHT.pkl"
    save_mano_pkl(open_hand_data("right"), path)
    argv = ["hand", "--model", path, "--out", tmp_path / "h.obj"]
    assert _fuzz_bytes(path.read_bytes(), path, lambda p: read_mano_data(p, side="right"), argv, capsys, 14) >= 1
