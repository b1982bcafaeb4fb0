"""v-prediction (model.prediction: v, train.loss_weighting: v): the network's x0 is the closed form of its v output,
the weighted x0 loss is exactly the squared error of v, and a v model trains, saves and reloads."""

from __future__ import annotations

import pytest
import torch

from interhandgen.diffusion import Schedule, q_sample
from interhandgen.exceptions import InputError
from interhandgen.models import build_model, diffusion_loss, timestep_weights
from interhandgen.models.losses import draw_timesteps, joint_loss
from interhandgen.models.artifact import build_network, read_model
from interhandgen.training import TrainConfig, train

TINY = {"preset": "small", "hidden_dim": 32, "embed_dim": 16, "num_layers": 2, "skips": [1], "num_heads": 2,
        "ff_dim": 32, "num_encoder_layers": 1}


def _inputs(n=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    x_t = torch.randn(n, 64, generator=g)
    cond = torch.randn(n, 64, generator=g)
    t = torch.randint(0, 129, (n,), generator=g)
    mask = torch.rand(n, generator=g) < 0.5
    return x_t, t, cond, mask


def test_v_network_returns_the_closed_form_x0_of_its_raw_output():
    sched = Schedule.cosine(129)
    torch.manual_seed(0)
    v_net = build_model({**TINY, "prediction": "v"}, sched).eval()
    raw = build_model(TINY).eval()  # same weights, no conversion: its output is the v head
    raw.load_state_dict(v_net.state_dict())
    x_t, t, cond, mask = _inputs()
    v = raw(x_t, t, cond, mask)
    abar = sched.alphas_cumprod[t].float()[:, None]
    want = abar.sqrt() * x_t - (1 - abar).sqrt() * v
    torch.testing.assert_close(v_net(x_t, t, cond, mask), want, rtol=1e-5, atol=1e-6)
    # The schedule is not part of the weights: the state dicts have the same keys.
    assert set(v_net.state_dict()) == set(raw.state_dict())


def test_v_network_without_a_schedule_is_refused():
    with pytest.raises(InputError, match="noise schedule"):
        build_model({**TINY, "prediction": "v"})
    with pytest.raises(InputError, match="prediction"):
        build_model({**TINY, "prediction": "eps"})
    with pytest.raises(InputError, match="beyond"):
        net = build_model({**TINY, "prediction": "v"}, Schedule.cosine(10))
        x_t, t, cond, mask = _inputs()
        net(x_t, t, cond, mask)


def test_v_weight_makes_the_x0_loss_the_squared_error_of_v():
    sched = Schedule.cosine(129)
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(200, 64, generator=g, dtype=torch.float64)
    x0_hat = x0 + 0.1 * torch.randn(200, 64, generator=g, dtype=torch.float64)
    noise = torch.randn(200, 64, generator=g, dtype=torch.float64)
    t = torch.arange(200) % 129
    x_t = q_sample(x0, t, noise, sched)
    a = sched.sqrt_alphas_cumprod[t][:, None]
    s = sched.sqrt_one_minus_alphas_cumprod[t][:, None]
    v = a * noise - s * x0
    v_hat = (a * x_t - x0_hat) / s  # the v that gives x0_hat
    w = timestep_weights(sched, t, "v")
    torch.testing.assert_close(w * ((x0_hat - x0) ** 2).sum(1), ((v_hat - v) ** 2).sum(1), rtol=1e-9, atol=0)


def test_v_weighting_scales_each_row_of_the_diffusion_loss():
    sched = Schedule.cosine(129)
    torch.manual_seed(0)
    net = build_model(TINY)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(16, 2, 64, generator=g)
    plain = diffusion_loss(net, x, sched, TrainConfig(), torch.Generator().manual_seed(2))
    weighted = diffusion_loss(net, x, sched, TrainConfig(loss_weighting="v"), torch.Generator().manual_seed(2))
    # Every weight is >= 1 (1 / (1 - abar)), so the weighted loss is larger, and not by a constant factor.
    assert weighted[0] > plain[0]
    assert not torch.isclose(weighted[1] / plain[1], weighted[2] / plain[2])


def test_v_model_trains_saves_and_reloads(tmp_path):
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(64, 2, 64, generator=g)
    v = torch.randn(16, 2, 64, generator=g)
    mean, std = torch.zeros(2, 64), torch.ones(2, 64)
    model = {**TINY, "prediction": "v"}
    cfg = TrainConfig(epochs=2, batch_size=16, warmup_steps=2, log_every=1, sample_every_epochs=0,
                      schedule="cosine", loss_weighting="v")
    res = train(model, cfg, x, v, mean, std, tmp_path / "run", progress=False)
    assert res.status == "finished"
    art = read_model(tmp_path / "run" / "model.safetensors")
    assert art.model_config["prediction"] == "v"
    net = build_network(art)
    again = build_network(read_model(tmp_path / "run" / "model.safetensors"))
    x_t, t, cond, mask = _inputs(seed=9)
    out = net(x_t, t, cond, mask)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, again(x_t, t, cond, mask), rtol=0, atol=0)
    # The saved schedule is the training one: at t = 0 the x0 is nearly x_t (abar_0 close to 1).
    t0 = torch.zeros(7, dtype=torch.long)
    assert (net(x_t, t0, cond, mask) - x_t).abs().max() < 0.1 * x_t.abs().max()


JOINT = {"kind": "joint", "width": 32, "depth": 2, "time_dim": 16}


def test_joint_v_network_returns_the_closed_form_x0_of_its_raw_output():
    sched = Schedule.linear(num_timesteps=129)
    torch.manual_seed(0)
    v_net = build_model({**JOINT, "prediction": "v"}, sched).eval()
    raw = build_model(JOINT).eval()
    raw.load_state_dict(v_net.state_dict())
    g = torch.Generator().manual_seed(4)
    x_t = torch.randn(9, 128, generator=g)
    t = torch.randint(0, 129, (9,), generator=g)
    v = raw(x_t, t)
    abar = sched.alphas_cumprod[t].float()[:, None]
    torch.testing.assert_close(v_net(x_t, t), abar.sqrt() * x_t - (1 - abar).sqrt() * v, rtol=1e-5, atol=1e-6)
    assert set(v_net.state_dict()) == set(raw.state_dict())
    with pytest.raises(InputError, match="noise schedule"):
        build_model({**JOINT, "prediction": "v"})
    with pytest.raises(InputError, match="prediction"):
        build_model({**JOINT, "prediction": "eps"}, sched)


class _ConstantJoint(torch.nn.Module):
    """x0_hat = a fixed tensor: the joint loss's weighting can be checked against a hand-computed v error."""

    def __init__(self, out):
        super().__init__()
        self.out = out

    def forward(self, x_t, t, cond=None, cond_mask=None):
        return self.out


def test_joint_v_weighting_is_the_squared_error_of_v():
    sched = Schedule.cosine(129)
    g = torch.Generator().manual_seed(6)
    batch = torch.randn(32, 2, 64, generator=g, dtype=torch.float64)
    x0_hat = torch.randn(32, 128, generator=g, dtype=torch.float64)
    cfg = TrainConfig(loss_weighting="v")
    loss, _, _ = joint_loss(_ConstantJoint(x0_hat), batch, sched, cfg, torch.Generator().manual_seed(7))
    # Redraw the loss's own t and noise (same generator, same order) and compute the v error directly.
    gen = torch.Generator().manual_seed(7)
    t = draw_timesteps(32, cfg.num_timesteps, cfg.antithetic_timesteps, gen)
    noise = torch.randn(32, 128, generator=gen, dtype=torch.float64)
    x0 = batch.reshape(32, 128)
    x_t = q_sample(x0, t, noise, sched)
    a = sched.sqrt_alphas_cumprod[t][:, None].double()
    s = sched.sqrt_one_minus_alphas_cumprod[t][:, None].double()
    v, v_hat = a * noise - s * x0, (a * x_t - x0_hat) / s
    w = torch.ones(128, dtype=torch.float64)
    w[cfg.anchor_loss_dims:64] = 0
    want = (((v_hat - v) ** 2 * w).sum(1) / w.sum()).mean()
    torch.testing.assert_close(loss, want, rtol=1e-9, atol=0)


def test_joint_v_model_trains_saves_and_reloads(tmp_path):
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(64, 2, 64, generator=g)
    v = torch.randn(16, 2, 64, generator=g)
    cfg = TrainConfig(epochs=2, batch_size=16, warmup_steps=2, log_every=1, sample_every_epochs=0,
                      schedule="cosine", loss_weighting="v")
    res = train({**JOINT, "prediction": "v"}, cfg, x, v, torch.zeros(2, 64), torch.ones(2, 64), tmp_path / "run",
                progress=False)
    assert res.status == "finished"
    art = read_model(tmp_path / "run" / "model.safetensors")
    assert art.kind == "joint" and art.model_config["prediction"] == "v"
    net = build_network(art)
    x_t = torch.randn(5, 128, generator=g)
    t0 = torch.zeros(5, dtype=torch.long)
    # At t = 0 a v network's x0 is nearly x_t whatever its weights (abar_0 close to 1).
    assert (net(x_t, t0) - x_t).abs().max() < 0.1 * x_t.abs().max()
