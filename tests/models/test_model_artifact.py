"""The model file records everything needed to sample it: a model trained on a MANO-format hand round-trips
through export / load / sample and decodes with that hand model; a different hand model is refused."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

from interhandgen import cli
from interhandgen.data.canonical import LAYOUT_VERSION, to_canonical
from interhandgen.data.format import HandModelSpec, TwoHandSet
from interhandgen.exceptions import ModelMismatchError
from interhandgen.generation import InterHandGen, SamplerSettings, bundled_model_path, load_model
from interhandgen.hand import load_mano, save_mano_pkl
from interhandgen.hand.open_hand import open_hand_data
from interhandgen.models.artifact import MODEL_FORMAT, read_model_file
from interhandgen.training import TrainConfig, train

TINY = {"preset": "small", "hidden_dim": 32, "embed_dim": 16, "num_layers": 2, "skips": [1], "num_heads": 2,
        "ff_dim": 32, "num_encoder_layers": 1}
FAST = SamplerSettings(steps=3, apg_weight=0.0, settle_steps=0, resample_rounds=0)


def _mano_dir(path, hand_data):
    path.mkdir()
    save_mano_pkl(hand_data, path / "MANO_RIGHT.pkl")
    save_mano_pkl(hand_data.mirrored(), path / "MANO_LEFT.pkl")
    return path


@pytest.fixture(scope="module")
def mano_run(tmp_path_factory):
    """A tiny model trained on canonical pairs decoded from the open hand saved in MANO format."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("mano_model")
    mano = _mano_dir(root / "mano", open_hand_data("right"))
    spec = HandModelSpec.mano(mano)
    g = torch.Generator().manual_seed(0)
    n = 64
    z = lambda k: (0.3 * torch.randn(n, k, generator=g, dtype=torch.float64)).numpy()  # noqa: E731
    right_t = np.zeros((n, 3))
    right_t[:, 0] = 0.08
    two = TwoHandSet(dict(pose=z(45), betas=z(10), global_orient=z(3), transl=np.zeros((n, 3))),
                     dict(pose=z(45), betas=z(10), global_orient=z(3), transl=right_t),
                     pose_space="pca", flat_hand_mean=False, hand_model=spec)
    x = to_canonical(two, two.hand_models(), anchor="left", dtype=torch.float32).x
    mean, std = x.mean(0), x.std(0).clamp_min(1e-3)
    xs = (x - mean) / std
    cfg = TrainConfig(epochs=1, batch_size=32, lr=1e-3, warmup_steps=1, checkpoint_every=100, log_every=1,
                      sample_every_epochs=1, seed=0)
    train(TINY, cfg, xs, xs[:16], mean, std, root / "run", progress=False, hand_model=spec,
          provenance={"command": "test", "commit": "test"})
    return root, mano, spec


def test_model_file_records_the_mano_hand_model(mano_run):
    root, mano, spec = mano_run
    path = root / "run" / "model.safetensors"
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata()
    assert meta["format"] == MODEL_FORMAT
    header = json.loads(meta["header"])
    assert header["hand_model"] == {"kind": "mano", "mano_right_sha256": spec.mano_right_sha256,
                                    "mano_left_sha256": spec.mano_left_sha256, "fix_left_shapedirs": True}
    assert header["layout_version"] == LAYOUT_VERSION and header["conditioning"] == ["hand"]
    assert header["schedule"] == {"schedule": "linear", "num_timesteps": 129, "beta_start": 1e-4, "beta_end": 0.01}
    assert header["provenance"]["command"] == "test" and len(header["provenance"]["data"]["sha256"]) == 64
    art = read_model_file(path)
    assert art.kind == "shared" and art.stats_mean.shape == (2, 64)


def test_mano_model_round_trips_and_decodes_with_its_hand_model(mano_run):
    root, mano, spec = mano_run
    gen = InterHandGen.load(root / "run", hand_model=HandModelSpec.mano(mano))
    two = gen.sample(5, seed=1, settings=FAST, progress=False)
    assert two.hand_model.kind == "mano" and two.hand_model.mano_right_sha256 == spec.mano_right_sha256
    # Decoded with the MANO files: the layer's template is the file's, read by the independent MANO loader.
    ref = load_mano(mano / "MANO_RIGHT.pkl")
    assert torch.equal(gen.hands["right"].v_template.cpu(), ref.v_template.cpu())
    # The same weights decoded again give the same pairs (the file carries everything needed).
    again = InterHandGen.load(root / "run" / "model.safetensors", hand_model=HandModelSpec.mano(mano))
    two2 = again.sample(5, seed=1, settings=FAST, progress=False)
    assert np.array_equal(two.right.pose, two2.right.pose) and np.array_equal(two.left.transl, two2.left.transl)


def test_hand_model_mismatches_raise(mano_run, tmp_path):
    root, mano, spec = mano_run
    with pytest.raises(ModelMismatchError, match="--mano-dir"):
        InterHandGen.load(root / "run")  # no hand model given for a MANO-trained model
    with pytest.raises(ModelMismatchError, match="'mano', but 'open_hand'"):
        InterHandGen.load(root / "run", hand_model=HandModelSpec.open_hand())
    other = _mano_dir(tmp_path / "other", _perturbed())
    with pytest.raises(ModelMismatchError, match="SHA-256"):
        InterHandGen.load(root / "run", hand_model=HandModelSpec.mano(other))
    with pytest.raises(ModelMismatchError, match="fix_left_shapedirs"):
        InterHandGen.load(root / "run", hand_model=HandModelSpec.mano(mano, fix_left_shapedirs=False))
    # The bundled model records the open hand: it refuses a MANO hand model.
    with pytest.raises(ModelMismatchError, match="'open_hand', but 'mano'"):
        load_model(bundled_model_path()).hand_model(HandModelSpec.mano(mano))


def _perturbed():
    data = open_hand_data("right")
    data.v_template = data.v_template * 1.01
    return data


def test_sample_cli_names_the_missing_mano_dir(mano_run, tmp_path, capsys):
    root, mano, _ = mano_run
    out = tmp_path / "s.npz"
    base = ["sample", "--checkpoint", str(root / "run"), "--num", "3", "--out", str(out), "--steps", "3",
            "--no-apg", "--settle-steps", "0", "--resample-rounds", "0", "--no-progress"]
    assert cli.main(base) == 2
    err = capsys.readouterr().err
    assert err.startswith("interhandgen sample: error:") and "--mano-dir" in err
    assert cli.main(base + ["--mano-dir", str(mano)]) == 0
    assert TwoHandSet.load(out).hand_model.kind == "mano"


def test_v1_model_files_keep_loading(tmp_path):
    """A file in the earlier format (no hand model, layout or conditioning in its header) loads and samples as the
    same weights in the current format do; it decodes with the hand model the caller gives (default open hand)."""
    from safetensors.torch import save_file

    art = read_model_file(bundled_model_path())
    tensors = {f"net.{k}": v for k, v in art.state_dict.items()}
    tensors.update({"stats.mean": art.stats_mean, "stats.std": art.stats_std})
    v1 = tmp_path / "v1.safetensors"
    save_file(tensors, str(v1), metadata={"format": "interhandgen.model.v1",
                                          "model_config": json.dumps(art.model_config),
                                          "provenance": json.dumps({"train_config": art.train_config})})
    old = read_model_file(v1)
    assert old.hand_model is None and old.schedule == art.schedule and old.layout_version == 1
    a = InterHandGen.load(v1).sample(3, seed=2, settings=FAST, progress=False)
    b = InterHandGen.load().sample(3, seed=2, settings=FAST, progress=False)
    assert np.array_equal(a.right.pose, b.right.pose) and np.array_equal(a.right.transl, b.right.transl)
