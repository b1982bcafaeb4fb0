"""Configuration files and options: wrong types, out-of-range values and empty inputs end in a clean error that
names the file and the field."""

from __future__ import annotations

import numpy as np
import pytest

from interhandgen.training import TrainConfig

from _rel_util import assert_clean_error, run_cli, tiny_set

MODEL = "model: {preset: small, hidden_dim: 32, embed_dim: 16, num_layers: 2, skips: [1], num_heads: 2, ff_dim: 32}\n"


@pytest.mark.parametrize("train, fragment", [
    ("seed: abc", "train.seed must be int"),
    ("epochs: 1.5", "train.epochs must be int"),
    ("checkpoint_every: true", "train.checkpoint_every must be int"),
    ("lr: 1.0e+6", "train.lr must lie in (0, 1]"),
    ("lr: 1e-3", "YAML reads exponents without a dot as text"),
    ("lr: .nan", "train.lr must be float"),
    ("betas: [0.9]", "train.betas must be tuple[float, float]"),
    ("cond_drop_prob: yes", "train.cond_drop_prob must be float | None"),
])
def test_train_config_fields(tmp_path, capsys, train, fragment):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(MODEL + "train:\n  " + train + "\n")
    rc, err = run_cli(["train", "--config", cfg, "--data", tmp_path / "d.npz", "--out", tmp_path / "run"], capsys)
    assert_clean_error(rc, err, str(cfg), fragment)
    assert not (tmp_path / "run" / ".lock").exists()  # the lock is released on errors


@pytest.mark.parametrize("text, fragment", [
    ("model: [unclosed\n", "not valid YAML"),
    ("model: 3\n", "'model' section (a mapping)"),
    (MODEL + "train: 5\n", "the 'train' section must be a mapping"),
    ("!!python/object/apply:os.system ['true']\n", "not valid YAML"),
])
def test_broken_yaml(tmp_path, capsys, text, fragment):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    rc, err = run_cli(["train", "--config", cfg, "--data", tmp_path / "d.npz", "--out", tmp_path / "run"], capsys)
    assert_clean_error(rc, err, str(cfg), fragment)


def test_valid_config_still_loads():
    cfg = TrainConfig.from_dict({"lr": 1, "epochs": 2, "cond_drop_prob": None, "betas": [0.9, 0.99], "seed": 4})
    assert cfg.lr == 1 and cfg.betas == (0.9, 0.99)


def test_evaluate_subset_size_zero(tmp_path, capsys):
    s = tmp_path / "s.npz"
    tiny_set().save(s)
    for flag, value, fragment in (("--subset-size", "0", "argument --subset-size: must be >= 1"),
                                  ("--replications", "0", "argument --replications: must be >= 1")):
        rc, err = run_cli(["evaluate", "--samples", s, "--reference", s, "--out", tmp_path / "r", flag, value],
                          capsys)
        assert_clean_error(rc, err, fragment)
    assert not (tmp_path / "r" / "metrics.json").exists()


def test_data_stats_on_zero_samples(tmp_path, capsys):
    empty = tmp_path / "e.npz"
    tiny_set()[np.zeros(0, dtype=np.int64)].save(empty)
    rc, err = run_cli(["data", "stats", empty, "--out", tmp_path / "st"], capsys)
    assert_clean_error(rc, err, str(empty), "holds no samples")


@pytest.mark.parametrize("flag, value, fragment", [
    ("--max-samples", "1", "--max-samples must be >= 2"),
    ("--max-samples", "0", "argument --max-samples: must be >= 1"),
    ("--epochs", "0", "argument --epochs: must be >= 1"),
    ("--lr", "100", "--lr must lie in"),
    ("--lr", "0", "--lr must be > 0"),
])
def test_evaluator_train_options(tmp_path, capsys, flag, value, fragment):
    s = tmp_path / "s.npz"
    tiny_set().save(s)
    rc, err = run_cli(["evaluator", "train", "--data", s, "--out", tmp_path / "ev", flag, value], capsys)
    assert_clean_error(rc, err, fragment)


def test_resume_of_a_folder_without_a_run(tmp_path, capsys):
    rc, err = run_cli(["train", "--data", tmp_path / "d.npz", "--resume", tmp_path / "nothing"], capsys)
    assert_clean_error(rc, err, "no checkpoint.pt in that folder")
    assert not (tmp_path / "nothing").exists()  # nothing created (not even the lock's folder)
