"""Baselines under the protocol: sampling of every model kind, the results-table writer, and (slow) the whole
pipeline: synth -> train each kind -> sample -> evaluate -> docs table."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from interhandgen.generation import check_settings, sample_joint, sample_vae
from interhandgen.models import TwoHandVAE
from interhandgen.diffusion import Schedule
from interhandgen.evaluation.replication import t_confidence_interval
from interhandgen.generation import CANONICAL_TAIL, SamplerSettings


@pytest.fixture(scope="module")
def rt(load_benchmark):
    return load_benchmark("results_table")


# ----------------------------------------------------------------------------------------------- sampling per kind
def test_settings_a_kind_cannot_honour_raise():
    assert check_settings("joint", None).cfg_scale == 0 and check_settings("joint", None).apg_weight == 0
    assert check_settings("shared", None) == SamplerSettings()
    with pytest.raises(ValueError, match="cfg_scale must be 0"):
        check_settings("joint", SamplerSettings(cfg_scale=0.1))
    with pytest.raises(ValueError, match="apg_weight must be 0"):
        check_settings("vae", SamplerSettings(cfg_scale=0.0, apg_weight=0.5))
    with pytest.raises(ValueError, match="settings.steps does not apply"):
        check_settings("vae", SamplerSettings(cfg_scale=0.0, apg_weight=0.0, settle_steps=0, resample_rounds=0, steps=10))
    with pytest.raises(ValueError, match="settling"):
        check_settings("joint", SamplerSettings(cfg_scale=0.0, apg_weight=0.0, steps=10))
    assert check_settings("joint", SamplerSettings(cfg_scale=0.0, apg_weight=0.0, settle_steps=0, resample_rounds=0, steps=10)).steps == 10


class ZeroDenoiser(nn.Module):
    """Predicts x0 = 0 for every input: deterministic DDIM then ends exactly at 0 (standardised)."""

    def forward(self, x_t, t):
        assert x_t.shape[1] == 128
        return torch.zeros_like(x_t)


def test_joint_sampling_ends_at_the_prediction_and_imposes_the_canonical_anchor_tail():
    mean, std = torch.randn(2, 64), torch.rand(2, 64) + 0.5
    x = sample_joint(ZeroDenoiser(), Schedule.cosine(50), mean, std, 7, SamplerSettings(steps=5, cfg_scale=0.0, apg_weight=0.0, settle_steps=0, resample_rounds=0),
                     seed=3, batch_size=4, progress=False)
    expected = mean.expand(7, 2, 64).clone()
    expected[:, 0, 55:] = CANONICAL_TAIL
    torch.testing.assert_close(x, expected)


def test_joint_sampling_is_seeded():
    torch.manual_seed(0)
    net = nn.Sequential()  # identity: x0_hat = x_t keeps the noise, so different seeds give different output

    class Identity(nn.Module):
        def forward(self, x_t, t):
            return net(x_t)

    mean, std = torch.zeros(2, 64), torch.ones(2, 64)
    s = SamplerSettings(steps=4, cfg_scale=0.0, apg_weight=0.0, settle_steps=0, resample_rounds=0)
    a = sample_joint(Identity(), Schedule.cosine(50), mean, std, 5, s, seed=1, progress=False)
    b = sample_joint(Identity(), Schedule.cosine(50), mean, std, 5, s, seed=1, progress=False)
    c = sample_joint(Identity(), Schedule.cosine(50), mean, std, 5, s, seed=2, progress=False)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_vae_sampling_decodes_seeded_standard_normal_latents():
    torch.manual_seed(0)
    vae = TwoHandVAE(latent_dim=4, width=16, depth=1).eval()
    mean, std = torch.randn(2, 64), torch.rand(2, 64) + 0.5
    x = sample_vae(vae, mean, std, 6, seed=5, batch_size=4)
    z = torch.cat([torch.randn(4, 4, generator=torch.Generator().manual_seed(5 * 1_000_003)),
                   torch.randn(2, 4, generator=torch.Generator().manual_seed(5 * 1_000_003 + 1))])
    with torch.no_grad():
        expected = (vae.decode(z) * std.reshape(1, 128) + mean.reshape(1, 128)).reshape(6, 2, 64)
    expected[:, 0, 55:] = CANONICAL_TAIL
    torch.testing.assert_close(x, expected)
    with pytest.raises(ValueError, match="num must be a positive integer"):
        sample_vae(vae, mean, std, 0)


# ----------------------------------------------------------------------------------------------- the table writer
def test_parse_entry(rt):
    e = rt.parse_entry("no APG=runs/small:apg_weight=0,steps=20")
    assert (e.name, e.path, e.overrides) == ("no APG", "runs/small", {"apg_weight": 0.0, "steps": 20})
    assert rt.parse_entry("VAE=runs/vae").overrides == {}
    for bad in ("runs/small", "x=runs/small:cfg=1", "x=runs/small:steps", "=runs/small"):
        with pytest.raises(ValueError, match="--entry"):
            rt.parse_entry(bad)


def test_table_writer_on_tiny_inputs(tmp_path, rt):
    rng = np.random.default_rng(0)
    keys = [k for k, _, _ in rt.COLUMNS]
    values_a = [{k: float(rng.uniform(0, 1)) for k in keys} for _ in range(3)]
    values_b = [{k: float(rng.uniform(5, 6)) for k in keys} for _ in range(3)]
    from interhandgen.evaluation.protocol import EvaluationSettings
    import dataclasses

    doc = {"num": 100, "replications": 3, "seed": 0, "pr_size": 100, "data": "d.npz", "data_sha256": "ab" * 32,
           "reference_split": "test", "num_reference": 50, "evaluator": "ev", "evaluator_sha256": "cd" * 32,
           "feature_dim": 256, "settings": dataclasses.asdict(EvaluationSettings()), "depth_note": "",
           "command": "python benchmarks/results_table.py --num 100", "seconds": 12.0,
           "entries": [{"name": "model A", "path": "runs/a", "overrides": {"apg_weight": 1.0},
                        "summary": rt.summarise(values_a)},
                       {"name": "model B", "path": "b.npz", "overrides": {}, "summary": rt.summarise(values_b)}]}
    md = rt.results_markdown(doc)
    rows = [line for line in md.splitlines() if line.startswith("| model ")]
    assert len(rows) == 2
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert cells[0] == "model A" and len(cells) == 1 + len(rt.COLUMNS)
    mean, _, lo, hi = t_confidence_interval([v["fhid"] for v in values_a])
    assert cells[1] == f"{mean:.3g} ± {(hi - lo) / 2:.3g}"
    assert "python benchmarks/results_table.py --num 100" in md
    assert "ab" * 32 in md and "cd" * 32 in md
    assert "| InterHandGen | 1.00 | 0.15 | 3.59 | 0.86 |" in md  # the paper's row, quoted
    # --from-json rewrites the same Markdown
    (tmp_path / "r.json").write_text(json.dumps(doc))
    rt.main(["--from-json", str(tmp_path / "r.json"), "--out", str(tmp_path / "r.md")])
    assert (tmp_path / "r.md").read_text() == md


# ----------------------------------------------------------------------------------------------- end to end (slow)
TINY_DENOISER = dict(data_dim=64, hidden_dim=32, embed_dim=16, num_layers=3, skips=[1], num_heads=2, ff_dim=32,
                     num_encoder_layers=1, dropout=0.0, null_condition="learned", reference_compat=False)
TINY_TRAIN = dict(epochs=1, batch_size=64, lr=1e-3, warmup_steps=2, schedule="cosine", num_timesteps=50,
                  checkpoint_every=100, log_every=5, sample_every_epochs=5)
TINY_MODELS = {
    "shared": TINY_DENOISER,
    "separate": {**TINY_DENOISER, "kind": "separate"},
    "joint": {"kind": "joint", "width": 32, "depth": 1, "time_dim": 16},
    "vae": {"kind": "vae", "latent_dim": 8, "width": 32, "depth": 1, "kl_weight": 0.1},
}


@pytest.mark.slow
def test_whole_pipeline_synth_train_sample_evaluate_table(tmp_path, rt):
    from interhandgen.cli import main
    from interhandgen.generation import sample_checkpoint
    from interhandgen.data.format import TwoHandSet
    from interhandgen.evaluation.features import (FeatureExtractorConfig, TwoHandPointNet, save_feature_extractor,
                                                  select_vertex_indices)
    from interhandgen.evaluation.protocol import canonical_two_hand_vertices

    data = tmp_path / "synth.npz"
    assert main(["data", "synth", "--num", "240", "--seed", "0", "--out", str(data), "--no-progress"]) == 0
    runs = tmp_path / "runs"
    for name, model in TINY_MODELS.items():
        cfg = tmp_path / f"{name}.yaml"
        cfg.write_text(yaml.safe_dump({"model": model, "train": TINY_TRAIN}))
        assert main(["train", "--config", str(cfg), "--data", str(data), "--out", str(runs / name),
                     "--no-progress"]) == 0
        two = sample_checkpoint(runs / name, 5, seed=0, progress=False)
        assert isinstance(two, TwoHandSet) and len(two) == 5 and two.metadata["model_kind"] == name
        assert np.isfinite(two.right.transl).all()
    # a samples file entry too
    sample_checkpoint(runs / "joint", 32, seed=9, progress=False).save(tmp_path / "joint_samples.npz")

    ref = TwoHandSet.load(data).select_split("test")
    verts = canonical_two_hand_vertices(ref, ref.hand_models())
    config = FeatureExtractorConfig(num_vertices=verts.shape[2],
                                    vertex_indices=tuple(select_vertex_indices(verts[:, 0].mean(0).numpy(), 32)),
                                    sa1_centroids=16, sa1_neighbours=(4, 8), sa1_mlps=((16, 16), (16, 32)),
                                    sa2_centroids=8, sa2_neighbours=(4,), sa2_mlps=((32, 32),), global_mlp=(64, 128),
                                    head_hidden=64, feature_dim=32)
    torch.manual_seed(0)
    save_feature_extractor(TwoHandPointNet(config).eval(), tmp_path / "evaluator")

    out = tmp_path / "results.md"
    doc = rt.main(["--data", str(data), "--evaluator", str(tmp_path / "evaluator"), "--bundled", str(runs / "shared"),
                   "--baselines-dir", str(runs), "--entry", f"joint file={tmp_path / 'joint_samples.npz'}",
                   "--num", "16", "--replications", "2", "--pr-size", "16", "--depth-pairs", "2",
                   "--out", str(out)])
    names = [row["name"] for row in doc["entries"]]
    assert len(names) == 10 + 3 + 1  # bundled + 9 ablations, joint/separate/vae (no shared_budget run), the file
    for row in doc["entries"]:
        for key, _, _ in rt.COLUMNS:
            stat = row["summary"][key]
            assert len(stat["values"]) == 2 and np.isfinite(stat["values"]).all()
            assert stat["ci_low"] <= stat["mean"] <= stat["ci_high"]
    md = out.read_text()
    for name in names:
        assert f"| {name} |" in md
    assert json.loads(out.with_suffix(".json").read_text())["data_sha256"] == rt.file_sha256(data)
