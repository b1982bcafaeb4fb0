"""Run hygiene and reproducibility: orphan temp files, TensorBoard cut at the resumed step, byte-identical model
files, sample metadata that records what determines the output."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from interhandgen.data.format import TwoHandSet
from interhandgen.run_hygiene import remove_orphan_temps, truncate_event_files

from _rel_util import run_cli, tiny_set

TINY_YAML = """\
model: {preset: small, hidden_dim: 32, embed_dim: 16, num_layers: 2, skips: [1], num_heads: 2, ff_dim: 32,
        num_encoder_layers: 1}
train: {epochs: 1, batch_size: 16, lr: 2.0e-3, warmup_steps: 2, checkpoint_every: 2, log_every: 1,
        sample_every_epochs: 100, num_timesteps: 12, seed: 1}
"""


def test_orphan_temps_removed(tmp_path):
    keep = tmp_path / "checkpoint.pt"
    keep.write_bytes(b"x")
    orphans = [tmp_path / f".checkpoint.pt.{i}abc.tmp" for i in range(3)]
    for p in orphans:
        p.write_bytes(b"partial")
    (tmp_path / "notes.tmp").write_text("a user's file: not ours (no leading dot)")
    assert sorted(remove_orphan_temps(tmp_path)) == sorted(orphans)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt", "notes.tmp"]


def test_tensorboard_events_cut_at_resumed_step(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(tmp_path))
    for step in range(10):
        w.add_scalar("loss", float(step), step)
    w.close()
    assert truncate_event_files(tmp_path, 6) == 4
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    assert [e.step for e in acc.Scalars("loss")] == list(range(6))
    assert truncate_event_files(tmp_path, 6) == 0  # idempotent


def _split_set(n: int = 48):
    split = np.array([0] * 32 + [1] * 8 + [2] * (n - 40))
    return tiny_set(n=n, split=split, split_names=["train", "validation", "test"])


@pytest.mark.slow
def test_training_twice_gives_byte_identical_model_and_cleans_orphans(tmp_path, capsys):
    data = tmp_path / "d.npz"
    _split_set().save(data)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(TINY_YAML)
    digests = []
    for name in ("a", "b"):
        rc = run_cli(["train", "--config", cfg, "--data", data, "--out", tmp_path / name, "--no-progress",
                      "--threads", "1"], capsys)[0]
        assert rc == 0
        digests.append(hashlib.sha256((tmp_path / name / "model.safetensors").read_bytes()).hexdigest())
    assert digests[0] == digests[1]
    # Resume of a finished run in a folder with orphans from killed checkpoint writes: they are removed.
    orphan = tmp_path / "a" / ".checkpoint.pt.xyz.tmp"
    orphan.write_bytes(b"partial")
    rc, err = run_cli(["train", "--data", data, "--resume", tmp_path / "a", "--no-progress", "--threads", "1"], capsys)
    assert rc == 0
    assert not orphan.exists() and "removed 1 temp file" in err


@pytest.mark.slow
def test_sample_metadata_records_batch_size(tmp_path, capsys):
    out = tmp_path / "s.npz"
    rc = run_cli(["sample", "--num", "2", "--out", out, "--batch-size", "1", "--steps", "4", "--no-progress",
                  "--threads", "1"], capsys)[0]
    assert rc == 0
    meta = TwoHandSet.load(out).metadata
    assert meta["batch_size"] == 1 and meta["num"] == 2 and meta["seed"] == 0 and meta["sampler"]["steps"] == 4
