"""The shared two-stage denoiser: config loading, shapes, dtypes, batch independence, null condition, gradients,
extra condition tokens, and input validation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from interhandgen.models import DenoiserConfig, build_denoiser, count_parameters

ROOT = Path(__file__).resolve().parents[2]
TINY = DenoiserConfig(hidden_dim=48, embed_dim=16, num_layers=4, skips=(1, 3), num_heads=2, ff_dim=32, dropout=0.0)


def inputs(B, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, 64, generator=g, dtype=dtype)
    t = torch.randint(0, 129, (B,), generator=g)
    cond = torch.randn(B, 64, generator=g, dtype=dtype)
    mask = torch.rand(B, generator=g) < 0.5
    mask[0], mask[1] = True, False
    return x, t, cond, mask


# ------------------------------------------------------------------------------------------------ configs
def test_paper_parameter_count(capsys):
    """Reference TwoHandDiff count from its layer shapes (H=2056, E=512, D=64, ff 2048), plus our null embedding."""
    H, E, D, FF = 2056, 512, 64, 2048
    lin = lambda i, o: i * o + o  # noqa: E731
    mlps = lin(E, H) + lin(H, E) + 2 * (lin(D, H) + lin(H, E))
    enc_layer = lin(E, 3 * E) + lin(E, E) + lin(E, FF) + lin(FF, E) + 4 * E
    stack = 3 * lin(H + 2 * E, H) + 4 * lin(2 * H + 2 * E, H)
    reference = mlps + 2 * enc_layer + lin(3 * E, H) + lin(D, H) + stack + lin(H, D)
    model = build_denoiser(DenoiserConfig.paper())
    n = count_parameters(model)
    with capsys.disabled():
        print(f"\n[paper] parameters: ours {n:,} (reference {reference:,} + learned null {E})")
    assert n == reference + E
    assert 75.4e6 < reference < 75.5e6
    zeros = build_denoiser(DenoiserConfig.paper(null_condition="zeros"))
    assert count_parameters(zeros) == reference


def test_small_is_a_few_million_parameters():
    n = count_parameters(build_denoiser(DenoiserConfig.small()))
    assert 1.5e6 < n < 8e6, n  # about 1.9M (width 256)


@pytest.mark.parametrize("name, overrides", [("paper", {}), ("small", {"prediction": "v"})])
def test_yaml_configs_equal_presets(name, overrides, tmp_path):
    # configs/small.yaml (the bundled model's recipe) is the small network predicting v.
    cfg = DenoiserConfig.from_yaml(ROOT / "configs" / f"{name}.yaml")
    assert cfg == DenoiserConfig.preset(name, **overrides)
    # Other top-level sections (train:, data:, ...) are ignored; unknown keys inside model: are not.
    text = (ROOT / "configs" / f"{name}.yaml").read_text() + "\ntrain:\n  epochs: 3\nsomething_else: {a: 1}\n"
    (tmp_path / "c.yaml").write_text(text)
    assert DenoiserConfig.from_yaml(tmp_path / "c.yaml") == cfg


def test_config_dict_round_trip_and_preset_key():
    cfg = DenoiserConfig.small(num_layers=5, skips=(2,))
    assert DenoiserConfig.from_dict(cfg.to_dict()) == cfg
    assert DenoiserConfig.from_dict({"preset": "small", "hidden_dim": 256}) == DenoiserConfig.small(hidden_dim=256)
    assert DenoiserConfig.from_dict(None) == DenoiserConfig.paper()


def test_config_errors(tmp_path):
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['hiden_dim'\]"):
        DenoiserConfig.from_dict({"hiden_dim": 3})
    with pytest.raises(ValueError, match="skips must be distinct layer indices in 0..6"):
        DenoiserConfig(skips=(1, 9))
    with pytest.raises(ValueError, match="divisible by num_heads"):
        DenoiserConfig(embed_dim=510, num_heads=4)
    with pytest.raises(ValueError, match="null_condition"):
        DenoiserConfig(null_condition="none")
    with pytest.raises(ValueError, match="unknown model preset 'huge'"):
        DenoiserConfig.from_dict({"preset": "huge"})
    with pytest.raises(TypeError, match="skips must be a list"):
        DenoiserConfig.from_dict({"skips": 3})
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        DenoiserConfig.from_yaml(tmp_path / "missing.yaml")
    (tmp_path / "nomodel.yaml").write_text("train:\n  epochs: 2\n")
    with pytest.raises(ValueError, match="no 'model' section"):
        DenoiserConfig.from_yaml(tmp_path / "nomodel.yaml")
    with pytest.raises(TypeError, match="DenoiserConfig"):
        build_denoiser({"hidden_dim": 3})


# ------------------------------------------------------------------------------------------------ forward
def test_shapes_dtype_and_device_follow_inputs():
    model = build_denoiser(TINY).eval()
    x, t, cond, mask = inputs(5)
    out = model(x, t, cond, mask)
    assert out.shape == (5, 64) and out.dtype == torch.float32 and out.device == x.device
    model64 = build_denoiser(TINY).double().eval()
    x64, _, cond64, _ = inputs(5, dtype=torch.float64)
    out64 = model64(x64, t, cond64, mask)
    assert out64.dtype == torch.float64
    with pytest.raises(TypeError, match="dtype torch.float64 but the model's parameters are torch.float32"):
        model(x64, t, cond64, mask)
    if torch.cuda.is_available():
        gpu = build_denoiser(TINY).cuda().eval()
        got = gpu(x.cuda(), t.cuda(), cond.cuda(), mask.cuda())
        assert got.device.type == "cuda"
        gpu.load_state_dict(model.state_dict())
        torch.testing.assert_close(gpu(x.cuda(), t.cuda(), cond.cuda(), mask.cuda()).cpu(), out, rtol=1e-4,
                                   atol=1e-4)


@pytest.mark.parametrize("cfg", [TINY, DenoiserConfig.small()], ids=["tiny", "small"])
def test_output_of_a_sample_does_not_depend_on_the_batch(cfg):
    torch.manual_seed(0)
    model = build_denoiser(cfg).eval()
    x, t, cond, mask = inputs(150, seed=1)  # 150 rows: the folded route; single rows: the projected route
    with torch.no_grad():
        full = model(x, t, cond, mask)
        x2, cond2 = x.clone(), cond.clone()
        x2[1:] = torch.randn_like(x2[1:])
        cond2[1:] = torch.randn_like(cond2[1:])
        other = model(x2, t, cond2, mask)
        torch.testing.assert_close(other[0], full[0], rtol=1e-5, atol=1e-6)
        for i in (0, 1, 77):
            single = model(x[i:i + 1], t[i:i + 1], cond[i:i + 1], mask[i:i + 1])
            torch.testing.assert_close(single[0], full[i], rtol=1e-5, atol=1e-5)


def test_compat_mode_mixes_the_batch():
    torch.manual_seed(0)
    model = build_denoiser(TINY.__class__(**{**TINY.to_dict(), "reference_compat": True})).eval()
    assert model.mixes_batch
    x, t, cond, mask = inputs(8, seed=2)
    with torch.no_grad():
        a = model(x, t, cond, mask)
        x2 = x.clone()
        x2[1:] += 1.0
        b = model(x2, t, cond, mask)
    assert (a[0] - b[0]).abs().max() > 1e-4
    with pytest.raises(ValueError, match="extra_tokens are not supported in reference_compat"):
        model(x, t, cond, mask, extra_tokens=torch.zeros(8, 1, 16))


def test_null_condition_learned_and_zeros():
    torch.manual_seed(0)
    x, t, cond, _ = inputs(6, seed=3)
    off = torch.zeros(6, dtype=torch.bool)
    on = torch.ones(6, dtype=torch.bool)
    learned = build_denoiser(TINY).eval()
    with torch.no_grad():
        a = learned(x, t, cond, off)
        garbage = torch.full_like(cond, float("nan"))
        torch.testing.assert_close(learned(x, t, garbage, off), a, rtol=0, atol=0)  # ignored, even NaN
        torch.testing.assert_close(learned(x, t, None, None), a, rtol=0, atol=0)
        assert (learned(x, t, torch.zeros_like(cond), on) - a).abs().max() > 1e-4  # null != zero condition
        # Changing the learned null embedding changes exactly the unconditioned rows.
        learned.null_cond_embedding.add_(1.0)
        assert (learned(x, t, cond, off) - a).abs().max() > 1e-4
    zeros = build_denoiser(DenoiserConfig(**{**TINY.to_dict(), "null_condition": "zeros"})).eval()
    assert zeros.null_cond_embedding is None
    with torch.no_grad():
        # Equal up to rounding: an all-null batch computes its (shared) condition token once.
        torch.testing.assert_close(zeros(x, t, cond, off), zeros(x, t, torch.zeros_like(cond), on), rtol=1e-5,
                                   atol=1e-6)


def test_gradients_reach_all_parameters():
    torch.manual_seed(0)
    model = build_denoiser(TINY.__class__(**{**TINY.to_dict(), "dropout": 0.1})).train()
    x, t, cond, mask = inputs(128, seed=4)  # folded route in training too
    cond[~mask] = float("nan")  # ignored rows must not poison the gradients
    loss = (model(x, t, cond, mask) - x).pow(2).mean()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"no gradient reaches {name}"


def test_folded_and_projected_skip_routes_agree_in_float64():
    torch.manual_seed(5)
    model = build_denoiser(TINY).double().eval()
    x, t, cond, mask = inputs(300, seed=5, dtype=torch.float64)
    with torch.no_grad():
        folded = model(x, t, cond, mask)
        projected = torch.cat([model(x[i:i + 10], t[i:i + 10], cond[i:i + 10], mask[i:i + 10])
                               for i in range(0, 300, 10)])  # 10 rows: below the folding threshold
    torch.testing.assert_close(folded, projected, rtol=1e-12, atol=1e-12)


def test_extra_tokens():
    torch.manual_seed(0)
    model = build_denoiser(TINY).eval()
    x, t, cond, mask = inputs(4, seed=6)
    tok = torch.randn(4, 3, 16)
    with torch.no_grad():
        a = model(x, t, cond, mask, extra_tokens=tok)
        tok2 = tok.clone()
        tok2[2] += 1.0
        b = model(x, t, cond, mask, extra_tokens=tok2)
        assert (a[2] - b[2]).abs().max() > 1e-4  # the tokens condition the output ...
        torch.testing.assert_close(a[[0, 1, 3]], b[[0, 1, 3]], rtol=1e-5, atol=1e-6)  # ... row by row
        assert (a - model(x, t, cond, mask)).abs().max() > 1e-4
    with pytest.raises(ValueError, match=r"extra_tokens must have shape \[4, K, 16\]"):
        model(x, t, cond, mask, extra_tokens=torch.zeros(4, 3, 8))


def test_input_errors():
    model = build_denoiser(TINY)
    x, t, cond, mask = inputs(4)
    with pytest.raises(ValueError, match=r"x_t must have shape \[B, 64\]"):
        model(x[:, :10], t, cond, mask)
    with pytest.raises(TypeError, match="integer timesteps"):
        model(x, t.float(), cond, mask)
    with pytest.raises(ValueError, match=r"t must be a tensor of shape \[4\]"):
        model(x, t[:3], cond, mask)
    with pytest.raises(ValueError, match="cond must have the shape"):
        model(x, t, cond[:, :5], mask)
    with pytest.raises(ValueError, match="cond_mask must be a bool tensor"):
        model(x, t, cond, mask.float())
    with pytest.raises(ValueError, match="cond_mask was given without cond"):
        model(x, t, None, mask)


@pytest.mark.parametrize("null", ["learned", "zeros"])
def test_shared_timestep_and_null_condition_routes_agree_in_float64(null):
    """A batch with one timestep (a sampler's step) and, in the anchor stage, only null conditions computes those
    tokens and their context products once; the rows must equal the per-row route (the same rows in a batch whose
    timesteps differ)."""
    torch.manual_seed(7)
    model = build_denoiser(DenoiserConfig(**{**TINY.to_dict(), "null_condition": null})).double().eval()
    x, _, cond, mask = inputs(200, seed=7, dtype=torch.float64)
    t = torch.full((200,), 41)
    odd = torch.tensor([3])  # one more row at another timestep forces the per-row route
    x_odd, c_odd = torch.randn(1, 64, dtype=torch.float64), torch.randn(1, 64, dtype=torch.float64)
    with torch.no_grad():
        for c, m in ((None, None), (cond, torch.zeros_like(mask)), (cond, mask), (cond, torch.ones_like(mask))):
            shared = model(x, t, c, m)
            c_all = None if c is None else torch.cat([c, c_odd])
            m_all = None if m is None else torch.cat([m, torch.ones(1, dtype=torch.bool)])
            if c is None:  # all rows null: give the extra row a null condition too
                c_all, m_all = torch.zeros(201, 64, dtype=torch.float64), torch.zeros(201, dtype=torch.bool)
            per_row = model(torch.cat([x, x_odd]), torch.cat([t, odd]), c_all, m_all)[:200]
            torch.testing.assert_close(shared, per_row, rtol=1e-12, atol=1e-12)
