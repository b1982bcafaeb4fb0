"""Training loop: exact resume after a kill, graceful stop on SIGTERM, clear errors, DDP with 2 CPU processes."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from interhandgen.models.artifact import read_model_file
from interhandgen.training import TrainConfig, load_checkpoint, train

TINY_MODEL = {"preset": "small", "hidden_dim": 64, "embed_dim": 32, "num_layers": 3, "skips": [1],
              "num_heads": 2, "ff_dim": 64, "num_encoder_layers": 1}

SCRIPT = textwrap.dedent(
    """
    import sys, torch
    torch.set_num_threads(1)
    sys.path.insert(0, {tests!r})
    from test_training import make_data, TINY_MODEL, tiny_cfg
    from interhandgen.training import train
    x, v, m, s = make_data()
    train(TINY_MODEL, tiny_cfg(), x, v, m, s, {out!r}, resume={resume}, progress=False)
    """
)


def make_data(n: int = 384, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, 64, generator=g)
    x[:, 0, 55:] = 0.0  # canonical anchor
    v = torch.randn(64, 2, 64, generator=g)
    v[:, 0, 55:] = 0.0
    return x, v, torch.zeros(2, 64), torch.ones(2, 64)


def tiny_cfg(**kw) -> TrainConfig:
    base = dict(epochs=3, batch_size=32, lr=2e-3, warmup_steps=4, checkpoint_every=5, log_every=1,
                sample_every_epochs=1, seed=3)
    base.update(kw)
    return TrainConfig(**base)


def read_losses(run: Path) -> list[tuple[str, str, str]]:
    with open(run / "log.csv", newline="") as fh:
        return [(r["kind"], r["step"], r["loss"]) for r in csv.DictReader(fh)]


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _spawn(out: Path, resume: bool) -> subprocess.Popen:
    code = SCRIPT.format(tests=str(Path(__file__).parent), out=str(out), resume=resume)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_rows(path: Path, rows: int, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if path.exists() and sum(1 for _ in open(path)) - 1 >= rows:
            return
        if proc.poll() is not None:
            raise AssertionError(f"training exited early: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.05)
    raise AssertionError("training did not log in time")


def test_killed_run_resumes_to_identical_loss_curve(tmp_path):
    x, v, m, s = make_data()
    ref = tmp_path / "ref"
    result = train(TINY_MODEL, tiny_cfg(), x, v, m, s, ref, progress=False)
    assert result.status == "finished" and result.step == 3 * (384 // 32)
    # Kill a second run hard (no chance to checkpoint) in the middle of epoch 1, then resume it.
    run = tmp_path / "run"
    proc = _spawn(run, resume=False)
    _wait_rows(run / "log.csv", 17, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ckpt = load_checkpoint(run)
    assert 0 < ckpt["step"] < result.step, "the kill should land between checkpoints, mid-run"
    train(TINY_MODEL, tiny_cfg(), x, v, m, s, run, resume=True, progress=False)
    assert read_losses(run) == read_losses(ref)
    a = read_model_file(ref / "model.safetensors").state_dict
    b = read_model_file(run / "model.safetensors").state_dict
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_sigterm_checkpoints_at_the_current_step_and_resume_matches(tmp_path):
    x, v, m, s = make_data()
    ref = tmp_path / "ref"
    train(TINY_MODEL, tiny_cfg(), x, v, m, s, ref, progress=False)
    run = tmp_path / "run"
    proc = _spawn(run, resume=False)
    _wait_rows(run / "log.csv", 8, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    assert b"--resume" in err
    stopped = load_checkpoint(run)["step"]
    assert stopped >= 8  # checkpointed where it stopped, not at the last periodic checkpoint
    assert not (run / "model.safetensors").exists()
    train(TINY_MODEL, tiny_cfg(), x, v, m, s, run, resume=True, progress=False)
    assert read_losses(run) == read_losses(ref)


def test_stats_and_config_travel_with_the_model(tmp_path):
    x, v, m, s = make_data()
    mean, std = torch.randn(2, 64), torch.rand(2, 64) + 0.5
    train(TINY_MODEL, tiny_cfg(epochs=1), x, v, mean, std, tmp_path, progress=False)
    art = read_model_file(tmp_path / "model.safetensors")
    state, cfg, m2, s2, prov = art.state_dict, art.model_config, art.stats_mean, art.stats_std, art.provenance
    assert torch.equal(m2, mean) and torch.equal(s2, std)
    assert cfg == TINY_MODEL and prov["steps"] == 384 // 32


def test_loss_decreases_on_a_learnable_distribution(tmp_path):
    g = torch.Generator().manual_seed(0)
    base = torch.randn(4, 2, 64, generator=g)
    x = base[torch.randint(0, 4, (512,), generator=g)] + 0.05 * torch.randn(512, 2, 64, generator=g)
    x[:, 0, 55:] = 0
    train(TINY_MODEL, tiny_cfg(epochs=6, batch_size=64, lr=3e-3, ema_decay=0.9), x, x[:64], torch.zeros(2, 64),
          torch.ones(2, 64), tmp_path, progress=False)
    rows = [r for r in read_losses(tmp_path) if r[0] == "val"]
    assert float(rows[-1][2]) < 0.5 * float(rows[0][2])


def test_errors_are_clear(tmp_path):
    x, v, m, s = make_data()
    with pytest.raises(ValueError, match="train_x must have shape"):
        train(TINY_MODEL, tiny_cfg(), x[:, :1], v, m, s, tmp_path / "a", progress=False)
    bad = x.clone()
    bad[3, 1, 7] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        train(TINY_MODEL, tiny_cfg(), bad, v, m, s, tmp_path / "b", progress=False)
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        train(TINY_MODEL, tiny_cfg(), x, v, m, s, tmp_path / "c", resume=True, progress=False)
    with pytest.raises(ValueError, match="train_has_object is for object-conditioned"):
        train(TINY_MODEL, tiny_cfg(), x, v, m, s, tmp_path / "e", progress=False,
              train_has_object=torch.ones(x.shape[0], dtype=torch.bool))
    run = tmp_path / "d"
    train(TINY_MODEL, tiny_cfg(epochs=1), x, v, m, s, run, progress=False, max_steps=3)
    with pytest.raises(FileExistsError, match="--resume"):
        train(TINY_MODEL, tiny_cfg(), x, v, m, s, run, progress=False)
    with pytest.raises(ValueError, match="different data"):
        train(TINY_MODEL, tiny_cfg(), x + 1, v, m, s, run, resume=True, progress=False)
    (run / "checkpoint.pt").write_bytes((run / "checkpoint.pt").read_bytes()[:1000])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        train(TINY_MODEL, tiny_cfg(), x, v, m, s, run, resume=True, progress=False)
    with pytest.raises(ValueError, match="unknown key"):
        TrainConfig.from_dict({"epochz": 3})


def test_ddp_two_cpu_processes(tmp_path):
    """torchrun --nproc_per_node=2 (gloo): both ranks train on disjoint shards; rank 0 writes the model."""
    script = tmp_path / "ddp_train.py"
    script.write_text(textwrap.dedent(
        f"""
        import sys, torch
        torch.set_num_threads(1)
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_training import make_data, TINY_MODEL, tiny_cfg
        from interhandgen.training import train
        from interhandgen.training import init_distributed_from_env
        import torch.distributed as dist
        init_distributed_from_env("cpu")
        x, v, m, s = make_data()
        r = train(TINY_MODEL, tiny_cfg(epochs=1), x, v, m, s, {str(tmp_path / 'run')!r}, progress=False)
        print("rank", dist.get_rank(), "world", dist.get_world_size(), "steps", r.step)
        from interhandgen.training import exit_distributed
        exit_distributed(0)
        """
    ))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    from fixtures.network import free_port  # a fixed port fails when another run holds it

    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
                           str(script)], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "world 2 steps 12" in proc.stdout
    state = read_model_file(tmp_path / "run" / "model.safetensors").state_dict
    assert all(torch.isfinite(t).all() for t in state.values())
    assert len(load_checkpoint(tmp_path / "run")["rng"]) == 2
