"""tools/ema_init_share.py: the initial weights it rebuilds are the trainer's, the file's own share gives the file
back, and a file trained with the EMA warm-up is refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors import safe_open

from interhandgen.cli import main

from fixtures.objmodel_sets import SMALL_OBJECT_MODEL as SMALL, random_object_set

TOOL = Path(__file__).resolve().parents[2] / "tools" / "ema_init_share.py"


def _train(root: Path, decay: float, warmup: bool) -> Path:
    data = root / "obj.npz"
    if not data.exists():
        random_object_set(24, seed=0).save(data)
    cfg = root / f"cfg_{decay}_{warmup}.yaml"
    cfg.write_text(yaml.safe_dump({"model": SMALL, "train": {
        "epochs": 3, "batch_size": 8, "warmup_steps": 1, "num_timesteps": 20, "schedule": "cosine", "seed": 3,
        "sample_every_epochs": 100, "ema_decay": decay, "ema_warmup": warmup}}))
    out = root / f"run_{decay}_{warmup}"
    assert main(["train", "--config", str(cfg), "--data", str(data), "--out", str(out), "--no-progress",
                 "--threads", "1"]) == 0
    return out / "model.safetensors"


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    f = safe_open(str(path), "pt")
    return {k: f.get_tensor(k) for k in f.keys()}


def _tool(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("ema_share")


def test_share_one_is_the_trainers_initial_weights_and_the_own_share_the_file(root, tmp_path):
    # decay 0.99999: after a few steps the exported average is the initial weights to ~1e-4 of the update, an
    # independent view of W0 (the trainer's own); share -> 1 of the tool must give the same weights
    near = _train(root, 0.99999, False)
    assert _tool(near, "--share", "0.999999", "--out", tmp_path / "w0.safetensors").returncode == 0
    file, w0 = _tensors(near), _tensors(tmp_path / "w0.safetensors")
    net = [k for k in file if k.startswith("net.") and file[k].is_floating_point()]
    scale = max(float(file[k].abs().max()) for k in net)
    assert max(float((file[k] - w0[k]).abs().max()) for k in net) < 1e-3 * scale
    # the file's own share (d^k) gives it back up to rounding; another share changes only the network's floats
    model = _train(root, 0.9, False)
    steps = json.loads(safe_open(str(model), "pt").metadata()["header"])["provenance"]["steps"]
    r = _tool(model, "--share", repr(0.9 ** steps), "--out", tmp_path / "same.safetensors")
    assert r.returncode == 0, r.stderr
    orig, same = _tensors(model), _tensors(tmp_path / "same.safetensors")
    for k in orig:
        torch.testing.assert_close(same[k], orig[k], rtol=1e-5, atol=1e-6)
    assert _tool(model, "--share", "0.5", "--out", tmp_path / "half.safetensors").returncode == 0
    half = _tensors(tmp_path / "half.safetensors")
    assert any(not torch.equal(half[k], orig[k]) for k in net)
    assert torch.equal(half["stats.mean"], orig["stats.mean"])


def test_refusals(root, tmp_path):
    warm = _train(root, 0.9, True)
    r = _tool(warm, "--share", "0.2", "--out", tmp_path / "x.safetensors")
    assert r.returncode != 0 and "ema_warmup" in r.stderr and not (tmp_path / "x.safetensors").exists()
    r = _tool(warm, "--share", "1.0", "--out", tmp_path / "x.safetensors")
    assert r.returncode != 0 and "--share" in r.stderr
