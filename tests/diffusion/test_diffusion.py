"""Diffusion core: schedules, forward process, posterior, DDIM / reference samplers, guidance hook.

Independent truths: numpy transcriptions of the schedule formulas, the Gaussian-product form of the posterior,
the closed-form optimal x0-denoiser of a Gaussian data distribution with the exact (closed-form) law of the
resulting linear sampler, and a direct transcription of the reference code's update.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from interhandgen.diffusion import (
    Schedule,
    ddim_sample,
    ddim_step,
    eps_from_x0,
    q_posterior,
    q_sample,
    sampling_timesteps,
    x0_from_eps,
)

F64 = torch.float64


# ----------------------------------------------------------------------------------------------------- schedules
def test_linear_schedule_matches_numpy():
    s = Schedule.linear(1e-4, 0.01, 129)
    betas = np.linspace(1e-4, 0.01, 129)
    abar = np.cumprod(1 - betas)
    np.testing.assert_allclose(s.betas.numpy(), betas, rtol=0, atol=1e-15)
    np.testing.assert_allclose(s.alphas_cumprod.numpy(), abar, rtol=1e-13)
    np.testing.assert_allclose(s.alphas_cumprod_prev.numpy(), np.concatenate([[1.0], abar[:-1]]), rtol=1e-13)
    np.testing.assert_allclose(s.sqrt_one_minus_alphas_cumprod.numpy() ** 2, 1 - abar, rtol=1e-12)
    assert s.num_timesteps == 129 and s.betas.dtype == F64
    # The paper schedule does not reach pure noise (documented): abar_{T-1} ~ 0.52.
    assert 0.51 < float(s.alphas_cumprod[-1]) < 0.53


def test_cosine_schedule_matches_formula():
    T, s_ = 200, 0.008
    s = Schedule.cosine(T, s=s_)
    f = lambda u: np.cos((u + s_) / (1 + s_) * np.pi / 2) ** 2  # noqa: E731
    u = np.arange(T + 1) / T
    abar_formula = f(u[1:]) / f(0.0)
    unclipped = np.minimum.accumulate(np.ones(T)) * (1 - f(u[1:]) / f(u[:-1]) < 0.999)
    k = int(unclipped.sum())  # every beta below the cap: abar is the formula exactly
    assert k >= T - 2
    np.testing.assert_allclose(s.alphas_cumprod.numpy()[:k], abar_formula[:k], rtol=1e-10)
    assert float(s.betas.max()) <= 0.999


def test_schedule_errors_and_to():
    with pytest.raises(ValueError, match="betas must lie"):
        Schedule.from_betas(torch.tensor([0.1, 1.0]))
    with pytest.raises(ValueError, match="shape"):
        Schedule.from_betas(torch.ones(2, 2) * 0.1)
    with pytest.raises(TypeError, match="betas"):
        Schedule.from_betas([0.1, 0.2])
    with pytest.raises(ValueError, match="num_timesteps"):
        Schedule.linear(1e-4, 0.01, 0)
    with pytest.raises(ValueError, match="num_timesteps"):
        Schedule.cosine(10.5)
    s = Schedule.linear().to("cpu")
    assert s.device.type == "cpu" and s.alphas_cumprod.dtype == F64


# ------------------------------------------------------------------------------------ forward process / helpers
def test_q_sample_and_conversions():
    s = Schedule.linear(1e-4, 0.02, 50)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(8, 5, generator=g)
    eps = torch.randn(8, 5, generator=g)
    t = torch.randint(0, 50, (8,), generator=g)
    x_t = q_sample(x0, t, eps, s)
    abar = np.cumprod(1 - np.linspace(1e-4, 0.02, 50))[t.numpy()][:, None]
    np.testing.assert_allclose(x_t.numpy(), np.sqrt(abar) * x0.numpy() + np.sqrt(1 - abar) * eps.numpy(), rtol=1e-5,
                               atol=1e-6)
    assert x_t.dtype == torch.float32
    torch.testing.assert_close(eps_from_x0(x_t, t, x0, s), eps, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(x0_from_eps(x_t, t, eps, s), x0, rtol=1e-4, atol=1e-4)


def test_q_sample_errors():
    s = Schedule.linear(1e-4, 0.02, 10)
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="lie in 0..9"):
        q_sample(x, torch.tensor([0, 1, 10]), x, s)
    with pytest.raises(TypeError, match="integer"):
        q_sample(x, torch.tensor([0.0, 1.0, 2.0]), x, s)
    with pytest.raises(ValueError, match="same shape"):
        q_sample(x, torch.tensor([0, 1, 2]), torch.zeros(3, 3), s)
    with pytest.raises(ValueError, match="batch size"):
        q_sample(x, torch.tensor([0, 1]), x, s)


def test_q_posterior_is_the_gaussian_product():
    """q(x_{t-1}|x_t, x0) ∝ N(x_t; sqrt(a_t) x_{t-1}, b_t) N(x_{t-1}; sqrt(abar_{t-1}) x0, 1 - abar_{t-1})."""
    s = Schedule.cosine(60)
    g = torch.Generator().manual_seed(1)
    x0, x_t = torch.randn(60, 3, generator=g, dtype=F64), torch.randn(60, 3, generator=g, dtype=F64)
    t = torch.arange(60)
    mean, var = q_posterior(x0, x_t, t, s)
    b = s.betas.numpy()[:, None]
    a = 1 - b
    abar_prev = np.concatenate([[1.0], np.cumprod(1 - s.betas.numpy())[:-1]])[:, None]
    t0 = np.arange(60) == 0
    prec = a / b + 1 / np.where(t0[:, None], np.inf, 1 - abar_prev)
    v = 1 / prec
    m = v * (np.sqrt(a) * x_t.numpy() / b + np.where(t0[:, None], 0.0, np.sqrt(abar_prev) * x0.numpy()
                                                      / np.where(t0[:, None], 1.0, 1 - abar_prev)))
    m[t0] = x0.numpy()[t0]  # at t = 0 the posterior is a point mass at x0
    v[t0] = 0.0
    np.testing.assert_allclose(mean.numpy(), m, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(var.numpy(), v, rtol=1e-9, atol=1e-15)


# ------------------------------------------------------------------------------------------------ timesteps
def test_sampling_timesteps():
    assert sampling_timesteps(129, 42, "leading").tolist() == list(range(123, -1, -3))
    lin = sampling_timesteps(129, 42, "linspace")
    assert lin[0] == 128 and lin[-1] == 0 and (lin[1:] < lin[:-1]).all() and lin.numel() == 42
    assert sampling_timesteps(10, 10).tolist() == list(range(9, -1, -1))
    assert sampling_timesteps(10, 1).tolist() == [9]
    with pytest.raises(ValueError, match="num_steps"):
        sampling_timesteps(10, 11)
    with pytest.raises(ValueError, match="spacing"):
        sampling_timesteps(10, 3, "quad")


# ---------------------------------------------------------------------------------- one step: DDPM equivalence
@pytest.mark.parametrize("schedule", [Schedule.linear(), Schedule.cosine(100)], ids=["linear", "cosine"])
def test_eta1_consecutive_step_is_the_ddpm_posterior(schedule):
    g = torch.Generator().manual_seed(2)
    x_t, x0_hat, z = (torch.randn(16, 4, generator=g, dtype=F64) for _ in range(3))
    for t in (1, 17, schedule.num_timesteps - 1):
        mean, var = q_posterior(x0_hat, x_t, torch.full((16,), t), schedule)
        no_noise = ddim_step(x_t, x0_hat, t, t - 1, schedule, eta=1.0, noise=torch.zeros_like(z))
        torch.testing.assert_close(no_noise, mean, rtol=1e-12, atol=1e-12)
        with_noise = ddim_step(x_t, x0_hat, t, t - 1, schedule, eta=1.0, noise=z)
        torch.testing.assert_close(with_noise - no_noise, var.sqrt() * z, rtol=1e-10, atol=1e-12)


def test_eta0_step_keeps_consistent_state_on_its_trajectory():
    """DDIM (eta=0) with the exact x0 of a noiseless pair maps q_sample(x0, t, e) to q_sample(x0, t', e)."""
    s = Schedule.linear()
    g = torch.Generator().manual_seed(3)
    x0, e = torch.randn(5, 6, generator=g, dtype=F64), torch.randn(5, 6, generator=g, dtype=F64)
    x_t = q_sample(x0, torch.full((5,), 100), e, s)
    x_next = ddim_step(x_t, x0, 100, 40, s, eta=0.0)
    torch.testing.assert_close(x_next, q_sample(x0, torch.full((5,), 40), e, s), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ddim_step(x_t, x0, 100, -1, s), x0)


# ------------------------------------------------------------------------- Gaussian data: closed-form checks
D = 4


def gaussian_problem():
    g = torch.Generator().manual_seed(11)
    Q, _ = torch.linalg.qr(torch.randn(D, D, dtype=F64, generator=g))
    sigma = Q @ torch.diag(torch.tensor([0.25, 0.6, 1.0, 1.6], dtype=F64)) @ Q.T
    mu = torch.tensor([0.5, -1.0, 0.3, 1.2], dtype=F64)
    return mu, sigma


def optimal_denoiser(mu, sigma, schedule):
    """E[x0 | x_t] for x0 ~ N(mu, sigma): mu + a sigma (a^2 sigma + s^2 I)^-1 (x_t - a mu), a^2 = abar_t."""
    abar = schedule.alphas_cumprod
    a = abar.sqrt()
    eye = torch.eye(D, dtype=F64)
    gains = torch.stack([a[k] * sigma @ torch.linalg.inv(abar[k] * sigma + (1 - abar[k]) * eye)
                         for k in range(schedule.num_timesteps)])

    def denoise(x_t, t, cond=None):
        assert cond is None
        assert t.dtype == torch.int64
        k = int(t[0])
        if (t == k).all():  # what the sampler passes: one timestep per call
            return mu + (x_t - a[k] * mu) @ gains[k].T
        return mu + torch.einsum("bij,bj->bi", gains[t], x_t - a[t, None] * mu)

    return denoise, gains


def sampler_law(mu, sigma, schedule, timesteps, eta):
    """Exact mean/covariance of the DDIM chain with the optimal denoiser, started from the exact marginal
    q(x_{t_first}). Written from DDIM eq. 12 (Song et al.), independently of the implementation."""
    abar = schedule.alphas_cumprod.tolist()
    eye = torch.eye(D, dtype=F64)
    a0 = math.sqrt(abar[timesteps[0]])
    m, C = a0 * mu, a0 ** 2 * sigma + (1 - a0 ** 2) * eye
    for t, t_next in zip(timesteps, timesteps[1:] + [-1]):
        at, an = abar[t], 1.0 if t_next < 0 else abar[t_next]
        K = math.sqrt(at) * sigma @ torch.linalg.inv(at * sigma + (1 - at) * eye)
        var = eta ** 2 * (1 - an) / (1 - at) * (1 - at / an)
        # x0 = mu + K (x - sqrt(at) mu);  eps = (x - sqrt(at) x0) / sqrt(1 - at);  x' = sqrt(an) x0 + c eps + sd z
        c = math.sqrt(max(0.0, 1 - an - var))
        M = math.sqrt(an) * K + c / math.sqrt(1 - at) * (eye - math.sqrt(at) * K)
        b = (math.sqrt(an) - c * math.sqrt(at) / math.sqrt(1 - at)) * (eye - math.sqrt(at) * K) @ mu
        m, C = M @ m + b, M @ C @ M.T + var * eye
    return m, C


def run_gaussian(schedule, num_steps, eta, spacing, n, seed):
    mu, sigma = gaussian_problem()
    denoise, _ = optimal_denoiser(mu, sigma, schedule)
    ts = sampling_timesteps(schedule.num_timesteps, num_steps, spacing).tolist()
    a0 = math.sqrt(float(schedule.alphas_cumprod[ts[0]]))
    g = torch.Generator().manual_seed(seed)
    chol = torch.linalg.cholesky(a0 ** 2 * sigma + (1 - a0 ** 2) * torch.eye(D, dtype=F64))
    start = a0 * mu + torch.randn(n, D, generator=g, dtype=F64) @ chol.T  # exact marginal at the first step
    x = ddim_sample(denoise, start, schedule, num_steps, eta=eta, generator=g, spacing=spacing)
    return x, ts, mu, sigma


def assert_moments(x, mean, cov, n_se=5.0):
    n = x.shape[0]
    emp_mean, emp_cov = x.mean(0), torch.cov(x.T)
    se_mean = (torch.diagonal(cov) / n).sqrt()
    d = torch.diagonal(cov)
    se_cov = ((d[:, None] * d[None, :] + cov ** 2) / n).sqrt()
    z_mean = ((emp_mean - mean) / se_mean).abs().max().item()
    z_cov = ((emp_cov - cov) / se_cov).abs().max().item()
    assert z_mean < n_se, f"mean off by {z_mean:.1f} standard errors: {emp_mean} vs {mean}"
    assert z_cov < n_se, f"covariance off by {z_cov:.1f} standard errors:\n{emp_cov}\nvs\n{cov}"


LAW_CASES = [
    ("linear", 5, 0.0, "linspace"),
    ("linear", 42, 0.0, "leading"),
    ("linear", 42, 1.0, "leading"),
    ("linear", 129, 1.0, "linspace"),
    ("linear", 12, 0.5, "linspace"),
    ("cosine", 8, 0.0, "linspace"),
    ("cosine", 25, 1.0, "leading"),
    ("cosine", 100, 0.0, "linspace"),
]


def make_schedule(kind):
    return Schedule.linear() if kind == "linear" else Schedule.cosine(100)


@pytest.mark.parametrize("kind,steps,eta,spacing", LAW_CASES)
def test_sampler_output_follows_its_closed_form_law(kind, steps, eta, spacing):
    """Every step count / eta / schedule: sample moments equal the exact law of the linear chain within 5 SE."""
    schedule = make_schedule(kind)
    x, ts, mu, sigma = run_gaussian(schedule, steps, eta, spacing, n=40_000, seed=steps * 7 + int(eta * 10))
    m, C = sampler_law(mu, sigma, schedule, ts, eta)
    assert_moments(x, m, C)
    torch.testing.assert_close(m, mu, rtol=0, atol=1e-10)  # the mean is exact for any number of steps


@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_sampler_reproduces_data_distribution(kind, eta):
    """With all steps of a fine enough schedule the samples reproduce N(mu, Sigma) within sampling error."""
    schedule = Schedule.linear() if kind == "linear" else Schedule.cosine(1000)
    steps = schedule.num_timesteps
    x, ts, mu, sigma = run_gaussian(schedule, steps, eta, "linspace", n=20_000, seed=5 + int(eta))
    assert_moments(x, mu, sigma, n_se=5.0)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_discretisation_bias_shrinks_with_steps(eta):
    """The exact law converges to Sigma as the step count grows (first order: error ~ 1/steps)."""
    mu, sigma = gaussian_problem()
    s = Schedule.cosine(1000)
    errs = []
    for steps in (10, 40, 160, 1000):
        ts = sampling_timesteps(1000, steps).tolist()
        _, C = sampler_law(mu, sigma, s, ts, eta)
        errs.append((C - sigma).abs().max().item())
    assert all(b < a for a, b in zip(errs, errs[1:])), errs
    assert errs[-1] < 0.01 and errs[2] / errs[-1] > 3.0, errs


# ------------------------------------------------------------------------------ determinism, hook, errors
def _toy_denoiser(D_=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(D_, D_, generator=g, dtype=F64) / math.sqrt(D_)

    def denoise(x_t, t, cond=None):
        return 0.9 * torch.tanh(x_t @ W + 0.01 * t[:, None].to(x_t.dtype))

    return denoise


def test_same_seed_same_samples():
    s = Schedule.linear()
    den = _toy_denoiser()
    noise = torch.randn(32, 6, generator=torch.Generator().manual_seed(0), dtype=F64)
    run = lambda seed, eta: ddim_sample(den, noise, s, 20, eta=eta,  # noqa: E731
                                        generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(run(3, 0.7), run(3, 0.7), rtol=0, atol=0)
    assert (run(3, 0.7) - run(4, 0.7)).abs().max() > 1e-3
    torch.testing.assert_close(run(3, 0.0), run(4, 0.0), rtol=0, atol=0)  # eta = 0 draws nothing


def test_guidance_hook_called_once_per_step_with_the_right_timesteps():
    s = Schedule.linear()
    den = _toy_denoiser()
    noise = torch.randn(5, 6, generator=torch.Generator().manual_seed(1), dtype=F64)
    calls = []

    def hook(x0_hat, x_t, t, step_index):
        calls.append((t.clone(), step_index, x_t.clone()))
        return x0_hat + (3.0 if step_index == 41 else 0.0)

    plain = ddim_sample(den, noise, s, 42)
    out = ddim_sample(den, noise, s, 42, x0_guidance=hook)
    assert [c[1] for c in calls] == list(range(42))
    expected_t = sampling_timesteps(129, 42, "linspace").tolist()
    for (t, _, _), tt in zip(calls, expected_t):
        assert t.dtype == torch.int64 and t.shape == (5,) and (t == tt).all()
    torch.testing.assert_close(calls[0][2], noise)
    # The last step returns the (hooked) x0 prediction: a shift of 3 there shifts the output by exactly 3.
    x_last = calls[-1][2]
    torch.testing.assert_close(out, den(x_last, torch.zeros(5, dtype=torch.int64)) + 3.0)
    assert (out - plain).abs().max() > 1.0


def test_reference_update_defaults_to_the_reference_timesteps():
    seen = []
    ddim_sample(lambda x, t, c: (seen.append(int(t[0])), torch.zeros_like(x))[1],
                torch.zeros(2, 3), Schedule.linear(), 42, update="reference")
    assert seen == list(range(123, -1, -3))


def test_sampler_errors():
    s = Schedule.linear()
    den = _toy_denoiser()
    x = torch.zeros(3, 6, dtype=F64)
    with pytest.raises(ValueError, match="eta"):
        ddim_sample(den, x, s, 10, eta=1.5)
    with pytest.raises(ValueError, match="num_steps"):
        ddim_sample(den, x, s, 200)
    with pytest.raises(ValueError, match="update"):
        ddim_sample(den, x, s, 10, update="ddpm")
    with pytest.raises(ValueError, match="denoiser must return"):
        ddim_sample(lambda a, t, c: a[:, :2], x, s, 10)
    with pytest.raises(ValueError, match="x0_guidance"):
        ddim_sample(den, x, s, 10, x0_guidance=lambda a, b, t, i: a[:1])
    with pytest.raises(ValueError, match="strictly decreasing"):
        ddim_sample(den, x, s, 3, timesteps=[5, 9, 0])
    with pytest.raises(ValueError, match="noise must be"):
        ddim_sample(den, torch.zeros(6), s, 3)
    with pytest.raises(ValueError, match="noise is required"):
        ddim_step(x, x, 10, 5, s, eta=1.0)


# ------------------------------------------------------------------------------------- the reference update
def reference_generalized_steps(x, seq, model, betas, eta, noises):
    """Transcription of the reference ``generalized_steps`` (common/utils_diff.py): alphas indexed at t + 1 of
    [1, cumprod(1 - b)], seq_next = [-1] + seq[:-1], x' = sqrt(a') x0 + c1 z + c2 (x0 - x)."""
    abar = torch.cat([torch.ones(1, dtype=F64), torch.cumprod(1 - betas, 0)])
    seq_next = [-1] + list(seq[:-1])
    for k, (i, j) in enumerate(zip(reversed(seq), reversed(seq_next))):
        at, at_next = abar[i + 1], abar[j + 1]
        x0 = model(x, torch.full((x.shape[0],), i, dtype=torch.int64), None)
        c1 = eta * ((1 - at / at_next) * (1 - at_next) / (1 - at)).sqrt()
        c2 = ((1 - at_next) - c1 ** 2).sqrt()
        z = noises[k] if k < len(noises) else torch.zeros_like(x)
        x = at_next.sqrt() * x0 + c1 * z + c2 * (x0 - x)
    return x


@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_reference_update_matches_transcription(eta):
    s = Schedule.linear(1e-4, 0.01, 129)
    den = _toy_denoiser(seed=4)
    noise = torch.randn(7, 6, generator=torch.Generator().manual_seed(9), dtype=F64)
    ours = ddim_sample(den, noise, s, 42, eta=eta, generator=torch.Generator().manual_seed(5), update="reference")
    g = torch.Generator().manual_seed(5)
    noises = [torch.randn(7, 6, generator=g, dtype=F64) for _ in range(41)] if eta > 0 else []
    ref = reference_generalized_steps(noise, list(range(0, 126, 3)), den, s.betas, eta, noises)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    ddim = ddim_sample(den, noise, s, 42, eta=eta, generator=torch.Generator().manual_seed(5), spacing="leading")
    assert (ddim - ours).abs().max() > 1e-3  # the reference update is a different sampler


def test_reference_update_collapses_a_gaussian_where_ddim_does_not():
    """Documented property (docs/diffusion.md): with the EXACT denoiser of N(mu, Sigma), 42 reference-update steps
    contract all samples to nearly one point, while DDIM reproduces the covariance."""
    schedule = Schedule.linear()
    mu, sigma = gaussian_problem()
    denoise, _ = optimal_denoiser(mu, sigma, schedule)
    ts = sampling_timesteps(129, 42, "leading").tolist()
    a0 = math.sqrt(float(schedule.alphas_cumprod[ts[0]]))
    g = torch.Generator().manual_seed(21)
    chol = torch.linalg.cholesky(a0 ** 2 * sigma + (1 - a0 ** 2) * torch.eye(D, dtype=F64))
    start = a0 * mu + torch.randn(4000, D, generator=g, dtype=F64) @ chol.T
    ref = ddim_sample(denoise, start, schedule, 42, update="reference")
    ddim = ddim_sample(denoise, start, schedule, 42, spacing="leading")
    assert torch.linalg.eigvalsh(torch.cov(ref.T)).max() < 1e-3 * torch.linalg.eigvalsh(sigma).min()
    assert (torch.linalg.eigvalsh(torch.cov(ddim.T)) / torch.linalg.eigvalsh(sigma)).min() > 0.85
