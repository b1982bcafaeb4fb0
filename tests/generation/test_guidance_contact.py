"""Contact (attraction) guidance, repeated Polyak steps and the noise-keeping guided update: closed forms,
brute force and the exact metrics."""

from __future__ import annotations

import argparse

import pytest
import torch

from interhandgen.cli._sampling_opts import add_sampler_options, settings_from_args
from interhandgen.data.canonical import canonical_vertices
from interhandgen.diffusion import Schedule, ddim_sample
from interhandgen.diffusion.samplers import ddim_step, sampling_timesteps, step_coefficients
from interhandgen.generation import AntiPenetrationGuidance, SamplerSettings, SubsetHand
from interhandgen.generation.apg import (contact_gap_loss, penetration_and_contact_loss, sphere_overlap_loss,
                                          surface_penetration_loss)
from interhandgen.generation.settle import hand_spheres
from interhandgen.geometry import min_distance, penetration_volume
from interhandgen.hand import open_hand


@pytest.fixture(scope="module")
def hands():
    left, right = open_hand("left"), open_hand("right")
    return left, right, SubsetHand(left), SubsetHand(right)


def test_contact_gap_loss_closed_form_and_gradient():
    # Two segments along x; the gap is between a's point at 0 and b's first point at g.
    gaps = torch.tensor([0.0005, 0.005, 0.015, 0.03], dtype=torch.float64)
    a = torch.zeros(4, 2, 3, dtype=torch.float64)
    a[:, 1, 0] = -0.01
    b = torch.zeros(4, 2, 3, dtype=torch.float64)
    b[:, 0, 0] = gaps
    b[:, 1, 0] = gaps + 0.01
    b.requires_grad_(True)
    loss = contact_gap_loss(a, b, touch=0.001, attract=0.02)
    expected = torch.tensor([0.0, 0.004 ** 2, 0.014 ** 2, 0.0], dtype=torch.float64)
    assert torch.allclose(loss, expected, atol=1e-15)
    assert loss[3] == 0.0 and loss[0] == 0.0  # beyond attract / already touching: exactly 0
    (grad,) = torch.autograd.grad(loss.sum(), b)
    want = torch.zeros_like(grad)
    want[1, 0, 0], want[2, 0, 0] = 2 * 0.004, 2 * 0.014  # d(gap - touch)^2 / d b_0x
    assert torch.allclose(grad, want, atol=1e-12)


def test_contact_gap_loss_matches_brute_force_on_random_clouds():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(64, 30, 3, generator=g, dtype=torch.float64) * 0.05
    b = torch.rand(64, 25, 3, generator=g, dtype=torch.float64) * 0.05
    b = b + torch.linspace(0.0, 0.08, 64, dtype=torch.float64)[:, None, None] * torch.tensor([1.0, 0, 0],
                                                                                              dtype=torch.float64)
    gap = torch.cdist(a, b).flatten(1).amin(1)
    want = torch.where((gap > 0.002) & (gap < 0.03), (gap - 0.002) ** 2, torch.zeros_like(gap))
    got = contact_gap_loss(a, b, touch=0.002, attract=0.03)
    assert torch.allclose(got, want, atol=1e-12)
    assert (want > 0).sum() > 5 and (want == 0).sum() > 5  # both regimes present
    with pytest.raises(ValueError, match="touch"):
        contact_gap_loss(a, b, touch=0.03, attract=0.02)


def near_pairs(gaps_m: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """A rest-pose left anchor and a palm-facing right hand moved along +y to several distances from it."""
    n = len(gaps_m)
    anchor = torch.zeros(n, 64)
    anchor[:, 55] = anchor[:, 59] = 1.0
    other = anchor.clone()
    other[:, 55:61] = torch.tensor([1.0, 0, 0, 0, -1.0, 0])
    other[:, 62] = torch.tensor(gaps_m)
    return anchor, other


def test_contact_guidance_closes_gaps_without_penetrating_and_leaves_far_pairs(hands):
    left, right, sub_left, sub_right = hands
    # Find offsets that put the exact surface gap at about 4, 8, 12 mm and one pair 60 mm away.
    anchor, other = near_pairs([0.0] * 4)
    va, _ = canonical_vertices(anchor, left)
    # Come in along -y from where the bounding boxes touch, 0.5 mm at a time; stop at the first offset whose exact
    # gap is below the target (so the hands are apart, about the target distance).
    start = float(va[0, :, 1].amax() - canonical_vertices(other[:1], right)[0][0, :, 1].amin())
    grid = other[:1].repeat(80, 1)
    grid[:, 62] = start - 0.0005 * torch.arange(80)
    scan = min_distance(va[:1].expand(80, -1, -1), canonical_vertices(grid, right)[0])
    for i, target in enumerate((0.004, 0.008, 0.012)):
        other[i, 62] = grid[int(torch.nonzero(scan < target)[0]), 62]
    other[3, 62] = start + 0.05
    mean, std = torch.zeros(64), torch.full((64,), 0.5)
    std[61:] = 0.06  # the bundled model's translation scale
    x_std = (other - mean) / std

    def exact(x):
        vo, _ = canonical_vertices(x * std + mean, right)
        return (min_distance(va, vo) * 1000.0, penetration_volume(va, left.faces, vo, right.faces, num_workers=1))

    gap_before, vol_before = exact(x_std)
    assert (gap_before[:3] > 3.0).all() and (vol_before == 0).all() and gap_before[3] > 40.0
    dense_left, dense_right = SubsetHand(left, 768), SubsetHand(right, 768)
    kwargs = dict(weight=1.5, num_steps=1, contact_weight=1.0, touch=0.001, attract=0.02)
    apg = AntiPenetrationGuidance.from_anchors(anchor, dense_left, dense_right, mean, std, iters=6, **kwargs)
    t = torch.zeros(4, dtype=torch.long)
    x = apg(x_std, x_std, t, 0)
    gap_after, vol_after = exact(x)
    assert (gap_after[:3] < 2.0).all()  # touching by the contact rate's test
    assert vol_after[:3].max() < 0.02  # without penetrating (measured: at most 0.005 cm^3)
    assert torch.equal(x[3], x_std[3])  # beyond attract: bit-for-bit
    # Without the contact term the penetration-free pairs do not move at all.
    plain = AntiPenetrationGuidance.from_anchors(anchor, sub_left, sub_right, mean, std, weight=1.5, num_steps=1)
    assert torch.equal(plain(x_std, x_std, t, 0), x_std)
    # More Polyak steps per reverse step remove more of the loss.
    one = AntiPenetrationGuidance.from_anchors(anchor, dense_left, dense_right, mean, std, iters=1, **kwargs)
    with torch.no_grad():
        assert (apg.loss(x)[:3] < apg.loss(one(x_std, x_std, t, 0))[:3]).all()
    with pytest.raises(ValueError, match="iters"):
        AntiPenetrationGuidance.from_anchors(anchor, sub_left, sub_right, mean, std, iters=0, **kwargs)
    with pytest.raises(ValueError, match="contact_weight"):
        AntiPenetrationGuidance.from_anchors(anchor, sub_left, sub_right, mean, std,
                                             **{**kwargs, "contact_weight": -1.0})


def test_contact_term_adds_to_the_penetration_penalty(hands):
    _, _, sub_left, sub_right = hands
    anchor, other = near_pairs([0.03, 0.05, 0.07])
    mean, std = torch.zeros(64), torch.ones(64)
    apg = AntiPenetrationGuidance.from_anchors(anchor, sub_left, sub_right, mean, std, weight=1.0, num_steps=1,
                                               contact_weight=2.5, touch=0.001, attract=0.02)
    with torch.no_grad():
        pa, na = sub_left(anchor)
        pb, nb = sub_right(other)
        want = surface_penetration_loss(pa, na, pb, nb) + 2.5 * contact_gap_loss(pa, pb, 0.001, 0.02)
        assert torch.allclose(apg.loss(other), want)


def test_ddim_step_direction_from_another_estimate_closed_form():
    sched = Schedule.cosine(129)
    g = torch.Generator().manual_seed(1)
    x_t, x0_u, noise = (torch.randn(5, 7, generator=g, dtype=torch.float64) for _ in range(3))
    x0_g = x0_u + 0.3
    for t, t_next, eta in ((100, 80, 1.0), (40, 20, 0.0), (5, -1, 1.0)):
        a_next, sigma, c_dir = step_coefficients(sched, t, t_next, eta)
        abar = float(sched.alphas_cumprod[t])
        eps = (x_t - abar ** 0.5 * x0_u) / (1 - abar) ** 0.5
        want = a_next * x0_g + c_dir * eps + sigma * noise
        got = ddim_step(x_t, x0_g, t, t_next, sched, eta=eta, noise=noise, direction_x0=x0_u)
        assert torch.allclose(got, want, atol=1e-12)
    # Default: the direction comes from the (guided) estimate itself.
    assert torch.equal(ddim_step(x_t, x0_g, 40, 20, sched, direction_x0=x0_g), ddim_step(x_t, x0_g, 40, 20, sched))
    with pytest.raises(ValueError, match="direction_x0"):
        ddim_step(x_t, x0_g, 40, 20, sched, direction_x0=x0_u[:, :3])


def test_guidance_keeps_noise_against_a_manual_loop():
    sched = Schedule.cosine(129)
    w = torch.randn(7, 7, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 0.3

    def denoiser(x, t, cond):
        return torch.tanh(x @ w)

    def hook(x0, x_t, t, i):
        return x0 + 0.1 * (i + 1)

    noise = torch.randn(3, 7, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    got = ddim_sample(denoiser, noise, sched, 6, eta=1.0, generator=torch.Generator().manual_seed(4),
                      x0_guidance=hook, guidance_keeps_noise=True)
    ts = sampling_timesteps(129, 6).tolist()
    gen = torch.Generator().manual_seed(4)
    x = noise
    for i, (t, t_next) in enumerate(zip(ts, ts[1:] + [-1])):
        x0 = denoiser(x, None, None)
        a_next, sigma, c_dir = step_coefficients(sched, t, t_next, 1.0)
        abar = float(sched.alphas_cumprod[t])
        eps = (x - abar ** 0.5 * x0) / (1 - abar) ** 0.5
        z = torch.randn(x.shape, generator=gen, dtype=x.dtype) if t_next >= 0 else torch.zeros_like(x)
        x = a_next * (x0 + 0.1 * (i + 1)) + c_dir * eps + sigma * z
    assert torch.allclose(got, x, atol=1e-12)
    plain = ddim_sample(denoiser, noise, sched, 6, eta=1.0, generator=torch.Generator().manual_seed(4),
                        x0_guidance=hook)
    assert not torch.allclose(plain, got)


def test_sampler_settings_validate_the_new_fields():
    for bad, match in (({"contact_weight": -1.0}, "contact_weight"), ({"contact_touch_mm": 30.0}, "contact"),
                       ({"apg_iters": 0}, "apg_iters")):
        with pytest.raises(ValueError, match=match):
            SamplerSettings(**bad).validate()


def test_combined_loss_equals_the_two_terms_with_one_search(hands):
    _, _, sub_left, sub_right = hands
    anchor, other = near_pairs([-0.03, 0.0, 0.02, 0.04, 0.06, 0.2])
    other[:, 61] = torch.linspace(-0.02, 0.02, 6)
    with torch.no_grad():
        pa, na = sub_left(anchor)
        pb, nb = sub_right(other)
    for margin in (0.005, None):
        want = surface_penetration_loss(pa, na, pb, nb, margin=margin) + 0.7 * contact_gap_loss(pa, pb, 0.001, 0.02)
        got = penetration_and_contact_loss(pa, na, pb, nb, 0.7, margin=margin, touch=0.001, attract=0.02)
        assert torch.allclose(got, want, rtol=1e-6, atol=1e-12)
    assert (want > 0).sum() >= 2 and (want == 0).sum() >= 1


def test_sphere_overlap_loss_closed_form_and_gradient():
    ca = torch.tensor([[[0.0, 0.0, 0.0], [10.0, 0.0, 0.0]]], dtype=torch.float64)
    ra = torch.tensor([[1.0, 1.0]], dtype=torch.float64)
    cb = torch.tensor([[[2.5, 0.0, 0.0]]], dtype=torch.float64, requires_grad=True)
    rb = torch.tensor([[2.0]], dtype=torch.float64)
    loss = sphere_overlap_loss(ca, ra, cb, rb)
    assert torch.allclose(loss, torch.tensor([0.25], dtype=torch.float64))  # overlap 1 + 2 - 2.5 = 0.5 with sphere 0
    (g,) = torch.autograd.grad(loss.sum(), cb)
    assert torch.allclose(g, torch.tensor([[[-1.0, 0.0, 0.0]]], dtype=torch.float64))  # d/dx (3 - x)^2 at 2.5
    with pytest.raises(ValueError, match="radii"):
        sphere_overlap_loss(ca, ra[:, :1], cb, rb)


def test_uncapped_spheres_contain_the_capped_ones(hands):
    _, _, sub_left, _ = hands
    x = torch.zeros(5, 64)
    x[:, :45] = torch.randn(5, 45, generator=torch.Generator().manual_seed(0)) * 0.8
    x[:, 55] = x[:, 59] = 1.0
    c1, r1 = hand_spheres(sub_left, x)
    c0, r0 = hand_spheres(sub_left, x, capped=False)
    assert torch.equal(c0, c1) and (r0 >= r1).all() and (r0 > r1).any()


def test_sphere_term_acts_only_on_overlapping_spheres_and_separates_deep_overlaps(hands):
    left, right, sub_left, sub_right = hands
    # Two palm-facing hands: pair 0 pushed 25 mm through each other (deep), pair 1 touching-distance apart.
    anchor, other = near_pairs([0.0, 0.0])
    va, _ = canonical_vertices(anchor, left)
    start = float(va[0, :, 1].amax() - canonical_vertices(other[:1], right)[0][0, :, 1].amin())
    other[0, 62], other[1, 62] = start - 0.045, start
    mean, std = torch.zeros(64), torch.full((64,), 0.5)
    std[61:] = 0.06
    x_std = (other - mean) / std
    kwargs = dict(weight=1.5, num_steps=1, iters=4)
    plain = AntiPenetrationGuidance.from_anchors(anchor, sub_left, sub_right, mean, std, **kwargs)
    proxy = AntiPenetrationGuidance.from_anchors(anchor, sub_left, sub_right, mean, std, proxy_weight=1.0, **kwargs)
    t = torch.zeros(2, dtype=torch.long)
    x_plain, x_proxy = plain(x_std, x_std, t, 0), proxy(x_std, x_std, t, 0)
    assert proxy._proxy_rows.tolist() == [0]  # only the deep pair's spheres overlap

    def volume(x):
        vo, _ = canonical_vertices(x * std + mean, right)
        return penetration_volume(va, left.faces, vo, right.faces, num_workers=1)

    v0, v_plain, v_proxy = volume(x_std), volume(x_plain), volume(x_proxy)
    assert v0[0] > 20.0 and v_proxy[0] < 0.5 * v_plain[0]
    assert torch.equal(x_proxy[1], x_plain[1])  # no sphere overlap: the same step as without the term
    with pytest.raises(ValueError, match="proxy_weight"):
        AntiPenetrationGuidance(*sub_left(anchor), sub_right, mean, std, 1.0, 1, proxy_weight=1.0)


def test_cli_guidance_flags_reach_the_settings():
    p = argparse.ArgumentParser()
    add_sampler_options(p)
    args = p.parse_args(["--contact-weight", "1", "--apg-iters", "6", "--apg-points", "384", "--apg-proxy-weight",
                         "0.5", "--settle-steps", "0", "--resample-rounds", "0", "--contact-attract-mm", "15"])
    s = settings_from_args(args, SamplerSettings().apg_weight)
    assert (s.contact_weight, s.apg_iters, s.apg_points, s.apg_proxy_weight) == (1.0, 6, 384, 0.5)
    assert s.contact_attract_mm == 15.0
    defaults = settings_from_args(p.parse_args([]), SamplerSettings().apg_weight)
    assert defaults == SamplerSettings()
    with pytest.raises(ValueError, match="contact_weight"):
        settings_from_args(p.parse_args(["--contact-weight", "-1"]), 1.5)
    with pytest.raises(ValueError, match="contact_attract_mm"):  # not above the touch distance (1 mm)
        settings_from_args(p.parse_args(["--contact-weight", "1", "--contact-attract-mm", "0.5"]), 1.5)
