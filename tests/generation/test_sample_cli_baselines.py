"""`interhandgen sample` on single-stage baseline checkpoints (joint diffusion, VAE)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from interhandgen.generation import sample_checkpoint
from interhandgen.models import build_model
from interhandgen.cli import main
from interhandgen.data.format import TwoHandSet
from interhandgen.generation import SamplerSettings
from interhandgen.models.artifact import export_model

MODELS = {
    "joint": {"kind": "joint", "width": 32, "depth": 1, "time_dim": 16},
    "vae": {"kind": "vae", "latent_dim": 8, "width": 32, "depth": 1, "kl_weight": 0.1},
}
TRAIN = {"schedule": "cosine", "num_timesteps": 20}


def _export(tmp_path, kind):
    torch.manual_seed(0)
    net = build_model(MODELS[kind])
    path = tmp_path / f"{kind}.safetensors"
    mean, std = torch.zeros(2, 64), torch.ones(2, 64) * 0.05
    mean[:, 55] = mean[:, 59] = 1.0  # identity 6D rotation on average
    export_model(net.state_dict(), MODELS[kind], mean, std, path, provenance={"train_config": TRAIN})
    return path


@pytest.mark.parametrize("kind", ["joint", "vae"])
def test_cli_sample_equals_the_api_for_baseline_kinds(tmp_path, kind):
    path = _export(tmp_path, kind)
    out = tmp_path / "s.npz"
    steps = ["--steps", "10"] if kind == "joint" else []
    assert main(["sample", "--num", "6", "--checkpoint", str(path), "--out", str(out), "--no-progress",
                 "--batch-size", "4", *steps]) == 0
    got = TwoHandSet.load(out)
    settings = SamplerSettings(steps=10, cfg_scale=0.0, apg_weight=0.0, settle_steps=0, resample_rounds=0) if kind == "joint" else None
    want = sample_checkpoint(path, 6, seed=0, settings=settings, batch_size=4, progress=False)
    assert len(got) == 6 and got.metadata["model_kind"] == kind
    for side in ("left", "right"):
        np.testing.assert_array_equal(getattr(got, side).transl, getattr(want, side).transl)


@pytest.mark.parametrize("kind,flag", [("joint", ["--apg-weight", "1.0"]), ("joint", ["--cfg-scale", "0.5"]),
                                       ("vae", ["--steps", "10"]), ("joint", ["--anchor-steps", "30"]),
                                       ("vae", ["--anchor-steps", "30"]), ("joint", ["--anchor-solver", "ddim"]),
                                       ("vae", ["--temperature", "0.5"])])
def test_cli_rejects_options_a_baseline_cannot_honour(tmp_path, capsys, kind, flag):
    path = _export(tmp_path, kind)
    code = main(["sample", "--num", "2", "--checkpoint", str(path), "--out", str(tmp_path / "s.npz"), "--no-progress",
                 *flag])
    err = capsys.readouterr().err
    assert code != 0 and path.name in err
    assert "do not apply" in err or "apply to the cascaded model only" in err or "no anchor stage" in err
    assert not (tmp_path / "s.npz").exists()


def test_cli_temperature_reaches_the_joint_sampler(tmp_path):
    path = _export(tmp_path, "joint")
    out = tmp_path / "s.npz"
    assert main(["sample", "--num", "6", "--checkpoint", str(path), "--out", str(out), "--no-progress",
                 "--batch-size", "4", "--steps", "10", "--temperature", "0.5"]) == 0
    settings = SamplerSettings(steps=10, cfg_scale=0.0, apg_weight=0.0, settle_steps=0, resample_rounds=0,
                               temperature=0.5)
    want = sample_checkpoint(path, 6, seed=0, settings=settings, batch_size=4, progress=False)
    plain = sample_checkpoint(path, 6, seed=0, settings=dataclasses.replace(settings, temperature=1.0), batch_size=4,
                              progress=False)
    got = TwoHandSet.load(out)
    np.testing.assert_array_equal(got.right.transl, want.right.transl)
    assert not np.array_equal(got.right.transl, plain.right.transl)


def test_cli_anchor_steps_reach_the_cascaded_sampler(tmp_path):
    """``--anchor-steps`` sets stage 1 alone; without it the default (25) applies; the file records what was used."""
    out_default, out_30 = tmp_path / "d.npz", tmp_path / "a.npz"
    common = ["sample", "--num", "4", "--no-progress", "--threads", "1", "--settle-steps", "0", "--resample-rounds", "0"]
    assert main([*common, "--out", str(out_default)]) == 0
    assert main([*common, "--anchor-steps", "30", "--out", str(out_30)]) == 0
    assert TwoHandSet.load(out_default).metadata["sampler"]["anchor_steps"] == SamplerSettings().anchor_steps == 25
    got = TwoHandSet.load(out_30)
    assert got.metadata["sampler"]["anchor_steps"] == 30
    from interhandgen.generation import InterHandGen

    torch.set_num_threads(1)
    want = InterHandGen.load().sample(4, seed=0, progress=False,
                                      settings=SamplerSettings(anchor_steps=30, settle_steps=0, resample_rounds=0))
    for side in ("left", "right"):
        np.testing.assert_array_equal(getattr(got, side).pose, getattr(want, side).pose)


def test_cli_anchor_solver(tmp_path):
    """``--anchor-solver`` reaches the cascade and is recorded; the default follows eta; other kinds refuse it."""
    common = ["sample", "--num", "2", "--no-progress", "--threads", "1", "--settle-steps", "0", "--resample-rounds", "0"]
    for extra, want in (([], "dpmpp2m"), (["--anchor-solver", "ddim"], "ddim"), (["--eta", "0.5"], "ddim"),
                        (["--eta", "0"], "dpmpp2m")):
        out = tmp_path / f"s{len(extra)}_{want}.npz"
        assert main([*common, *extra, "--out", str(out)]) == 0
        assert TwoHandSet.load(out).metadata["sampler"]["anchor_solver"] == want
    assert main([*common, "--eta", "0.5", "--anchor-solver", "dpmpp2m", "--out", str(tmp_path / "x.npz")]) != 0
    assert not (tmp_path / "x.npz").exists()
