"""Objective options of the cascaded kinds: Min-SNR timestep weights and the geometric terms on the predicted x0."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch

from interhandgen.data.format import HandModelSpec
from interhandgen.diffusion import Schedule
from interhandgen.exceptions import InputError
from interhandgen.generation import SubsetHand
from interhandgen.models import PartnerGeometry, build_model, check_objective, diffusion_loss, timestep_weights
from interhandgen.training import TrainConfig, objective_geometry, train

IDENTITY6 = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0], dtype=torch.float64)


@pytest.fixture(scope="module")
def layers():
    return HandModelSpec.open_hand().load("pca", False)


def _geometry(layers, points=48, anchor_points=256, band=0.02):
    # mean 0, std 1: standardised vectors are the raw ones, so offsets below are in metres.
    mean, std = torch.zeros(2, 64, dtype=torch.float64), torch.ones(2, 64, dtype=torch.float64)
    anchor = SubsetHand(layers["left"], anchor_points).double()
    partner = SubsetHand(layers["right"], points).double()
    g = PartnerGeometry(anchor, partner, mean, std, contact_band=band)
    g.mean, g.std = mean, std  # keep float64 for the finite-difference check
    return g, anchor, partner


def _touching_pair(n: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw canonical vectors [n, 64]: anchor at the origin, partner flipped about y and 2-3 cm above the palm."""
    g = torch.Generator().manual_seed(seed)
    anchor = torch.zeros(n, 64, dtype=torch.float64)
    anchor[:, :45] = 0.3 * torch.randn(n, 45, generator=g, dtype=torch.float64)
    anchor[:, 55:61] = IDENTITY6
    other = torch.zeros(n, 64, dtype=torch.float64)
    other[:, :45] = 0.3 * torch.randn(n, 45, generator=g, dtype=torch.float64)
    other[:, 55:61] = torch.tensor([-1.0, 0.0, 0.0, 0.0, 1.0, 0.0], dtype=torch.float64)  # 180 deg about y
    other[:, 61:64] = torch.tensor([0.0, 0.0, 0.02]) + 0.005 * torch.randn(n, 3, generator=g, dtype=torch.float64)
    return anchor, other


def test_min_snr_weights_equal_the_closed_form():
    betas = np.linspace(1e-4, 0.02, 50)
    abar = np.cumprod(1.0 - betas)
    snr = abar / (1.0 - abar)
    gamma = 5.0
    want = np.minimum(snr, gamma) / np.minimum(snr, gamma).mean()
    sched = Schedule.linear(1e-4, 0.02, 50)
    t = torch.tensor([0, 1, 7, 30, 49, 49])
    got = timestep_weights(sched, t, "min_snr", gamma)
    np.testing.assert_allclose(got.numpy(), want[t.numpy()], rtol=1e-12)
    assert torch.equal(timestep_weights(sched, t, "uniform"), torch.ones(6, dtype=torch.float64))
    # Cosine schedule: abar_t = f(t + 1) / f(0), f(u) = cos^2((u/T + s)/(1 + s) pi/2), up to the 0.999 cap of
    # the last beta.
    T, s = 129, 0.008
    f = np.cos((np.arange(T + 1) / T + s) / (1 + s) * np.pi / 2) ** 2
    abar_cos = f[1:] / f[0]
    snr_cos = abar_cos / (1.0 - abar_cos)
    w = np.minimum(snr_cos, gamma)
    all_t = torch.arange(T - 1)  # the last step's beta is capped: leave it out of the comparison
    got_cos = timestep_weights(Schedule.cosine(T), all_t, "min_snr", gamma).numpy()
    full = timestep_weights(Schedule.cosine(T), torch.arange(T), "min_snr", gamma).numpy()
    assert abs(full.mean() - 1.0) < 1e-12  # mean weight over the timesteps is 1
    np.testing.assert_allclose(got_cos / got_cos[-1], w[: T - 1] / w[T - 2], rtol=1e-9)


def test_min_snr_rejects_unknown_weighting_and_bad_gamma():
    sched = Schedule.linear()
    with pytest.raises(InputError, match="loss_weighting"):
        timestep_weights(sched, torch.tensor([0]), "snr")
    with pytest.raises(InputError, match="gamma"):
        timestep_weights(sched, torch.tensor([0]), "min_snr", 0.0)


def test_geometry_terms_are_zero_at_the_ground_truth(layers):
    g, _, _ = _geometry(layers)
    anchor, other = _touching_pair()
    points, contact = g.terms(other, other, anchor)
    assert torch.equal(points, torch.zeros(3, dtype=torch.float64))
    assert torch.equal(contact, torch.zeros(3, dtype=torch.float64))


def test_geometry_terms_of_a_translation_match_the_closed_form(layers):
    """Moving the partner by d moves every surface point by d (points term |d|^2) and changes each signed distance
    to a fixed tangent plane by d . n (contact term: the mean of (d . n)^2 over the points in the band)."""
    g, anchor_layer, partner_layer = _geometry(layers)
    anchor, other = _touching_pair()
    d = torch.tensor([0.003, -0.002, 0.004], dtype=torch.float64)
    pred = other.clone()
    pred[:, 61:64] += d
    points, contact = g.terms(pred, other, anchor)
    np.testing.assert_allclose(points.numpy(), np.full(3, float(d @ d) / 1e-4), rtol=1e-9)
    # Brute force: nearest anchor point by the full distance matrix, then the plane distance and its band.
    p, _ = partner_layer(other)
    a, n = anchor_layer(anchor)
    idx = torch.cdist(p, a).argmin(-1)
    near = torch.gather(a, 1, idx[..., None].expand(-1, -1, 3))
    nrm = torch.gather(n, 1, idx[..., None].expand(-1, -1, 3))
    s = ((p - near) * nrm).sum(-1)
    band = s.abs() < 0.02
    assert band.sum(1).min() >= 5  # the pair touches: the test exercises the contact term
    want = torch.stack([((nrm[i][band[i]] @ d) ** 2).mean() for i in range(3)]) / 1e-4
    np.testing.assert_allclose(contact.numpy(), want.numpy(), rtol=1e-9)


def test_geometry_gradient_matches_finite_differences(layers):
    g, _, _ = _geometry(layers, points=24, anchor_points=128)
    anchor, other = _touching_pair(n=2, seed=1)
    g2 = torch.Generator().manual_seed(5)
    pred = (other + 0.002 * torch.randn(other.shape, generator=g2, dtype=torch.float64)).requires_grad_()

    def f(x):
        points, contact = g.terms(x, other, anchor)
        return points.sum() + 3.0 * contact.sum()

    assert torch.autograd.gradcheck(f, (pred,), eps=1e-6, atol=1e-5, rtol=1e-4)


class _ZeroNet(torch.nn.Module):
    """Predicts x0 = 0 (plus a parameter so the loss has a graph)."""

    def __init__(self):
        super().__init__()
        self.b = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x_t, t, cond=None, mask=None):
        return torch.zeros_like(x_t) + self.b


def _batch(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    anchor, other = _touching_pair(n, seed)
    x = torch.stack([anchor, other], 1).float()
    return x + 0.01 * torch.randn(x.shape, generator=g)


def test_default_objective_is_unchanged_and_tiny_gamma_min_snr_is_uniform():
    sched = Schedule.cosine(129)
    net = build_model({"preset": "small", "hidden_dim": 32, "embed_dim": 16, "num_layers": 2, "skips": [1],
                       "num_heads": 2, "ff_dim": 32, "num_encoder_layers": 1})
    x = _batch()
    old_style = types.SimpleNamespace(num_timesteps=129, cond_drop_prob=None, antithetic_timesteps=True,
                                      anchor_loss_dims=55)
    a = diffusion_loss(net, x, sched, old_style, torch.Generator().manual_seed(1))
    b = diffusion_loss(net, x, sched, TrainConfig(), torch.Generator().manual_seed(1))
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    # gamma below every SNR: min(SNR, gamma) = gamma for all t, so the normalised weights are all 1.
    tiny = TrainConfig(loss_weighting="min_snr", min_snr_gamma=1e-9)
    c = diffusion_loss(net, x, sched, tiny, torch.Generator().manual_seed(1))
    assert torch.allclose(c[0], a[0], rtol=1e-6)


def test_geometric_terms_enter_the_loss_of_the_conditioned_rows(layers):
    sched = Schedule.cosine(129)
    mean, std = torch.zeros(2, 64), torch.ones(2, 64)
    cfg = TrainConfig(geometry_weight=0.5, contact_weight=2.0, geometry_rows=5, geometry_points=32)
    geom = objective_geometry(cfg, HandModelSpec.open_hand(), mean, std)
    x = _batch(n=8)
    plain = diffusion_loss(_ZeroNet(), x, sched, TrainConfig(), torch.Generator().manual_seed(2))
    total, la, lo = diffusion_loss(_ZeroNet(), x, sched, cfg, torch.Generator().manual_seed(2), geom)
    points, contact = geom.terms(torch.zeros(5, 64), x[:5, 1], x[:5, 0])
    extra = (0.5 * points + 2.0 * contact).sum() / 8  # mean over the 8 conditioned rows
    assert torch.allclose(lo, plain[2] + extra, rtol=1e-5) and torch.equal(la, plain[1])
    assert torch.allclose(total, plain[0] + extra, rtol=1e-5)
    with pytest.raises(ValueError, match="PartnerGeometry"):
        diffusion_loss(_ZeroNet(), x, sched, cfg, torch.Generator().manual_seed(2))


def test_objective_options_are_validated():
    with pytest.raises(InputError, match="loss_weighting"):
        TrainConfig.from_dict({"loss_weighting": "snr"})
    with pytest.raises(InputError, match="geometry_weight"):
        TrainConfig.from_dict({"geometry_weight": -1.0})
    with pytest.raises(InputError, match="contact_band_mm"):
        TrainConfig.from_dict({"contact_band_mm": 0.0})
    with pytest.raises(InputError, match="kind 'vae'"):
        check_objective({"kind": "vae"}, TrainConfig(loss_weighting="min_snr"))
    with pytest.raises(InputError, match="kind 'joint'"):
        check_objective({"kind": "joint"}, TrainConfig(geometry_weight=0.5))
    check_objective({"kind": "joint"}, TrainConfig(loss_weighting="v"))
    with pytest.raises(InputError, match="kind 'shared_object'"):  # its objective has no such terms
        check_objective({"kind": "shared_object"}, TrainConfig(geometry_weight=0.5))
    check_objective({"kind": "separate"}, TrainConfig(loss_weighting="min_snr"))
    check_objective({"kind": "joint"}, TrainConfig())
    assert objective_geometry(TrainConfig(), None, torch.zeros(2, 64), torch.ones(2, 64)) is None
    with pytest.raises(InputError, match="hand model"):
        objective_geometry(TrainConfig(contact_weight=1.0), None, torch.zeros(2, 64), torch.ones(2, 64))


def test_training_with_geometry_and_min_snr_runs_and_validates_on_the_plain_loss(tmp_path):
    torch.set_num_threads(1)
    x = _batch(n=64, seed=3)
    v = _batch(n=16, seed=4)
    mean, std = x.mean(0), x.std(0).clamp(min=1e-3)
    z, zv = (x - mean) / std, (v - mean) / std
    model = {"preset": "small", "hidden_dim": 32, "embed_dim": 16, "num_layers": 2, "skips": [1], "num_heads": 2,
             "ff_dim": 32, "num_encoder_layers": 1}
    cfg = TrainConfig(epochs=2, batch_size=16, warmup_steps=2, log_every=1, sample_every_epochs=0,
                      loss_weighting="min_snr", geometry_weight=0.1, contact_weight=0.1, geometry_rows=8,
                      geometry_points=16)
    res = train(model, cfg, z, zv, mean, std, tmp_path / "run", progress=False, hand_model=HandModelSpec.open_hand())
    assert res.status == "finished" and (tmp_path / "run" / "model.safetensors").is_file()
    with pytest.raises(InputError, match="hand model"):
        train(model, cfg, z, zv, mean, std, tmp_path / "run2", progress=False)
