"""The second-order solver (DPM-Solver++(2M), SDE form at eta 1, ODE form at eta 0) of ``ddim_sample``: its exact
law on Gaussian data (a linear chain in the state (x, previous x0 estimate), written here from the solver's
equations), the law's convergence against DDIM's, its first-order steps, and its refusals."""

from __future__ import annotations

import math

import pytest
import torch

from interhandgen.diffusion import Schedule, ddim_sample, sampling_timesteps
from interhandgen.exceptions import InputError

from tests.diffusion.test_diffusion import F64, D, assert_moments, gaussian_problem, optimal_denoiser, sampler_law


def solver_law(mu, sigma, schedule, timesteps, eta=1.0):
    """Exact mean/covariance of the 2M chain (eta 1: SDE, eta 0: ODE) with the optimal denoiser, from the exact marginal at the first
    step. State y = (x, p), p the previous x0 estimate. lambda = log(alpha / sigma), h = lambda_next - lambda_t,
    D = x0 + h / (2 h_prev) (x0 - p) (first order at the first step, when either h is infinite, and in the last two
    steps), and the step
    SDE: x' = (s_n / s_t) e^{-h} x + a_n (1 - e^{-2h}) D + s_n sqrt(1 - e^{-2h}) z;
    ODE: x' = (s_n / s_t) x + a_n (1 - e^{-h}) D (Lu et al. 2022)."""
    abar = schedule.alphas_cumprod.tolist()
    eye, zero = torch.eye(D, dtype=F64), torch.zeros(D, D, dtype=F64)

    def lam(ab):
        return math.inf if ab >= 1.0 else (-math.inf if ab <= 0.0 else 0.5 * math.log(ab / (1.0 - ab)))

    a0 = math.sqrt(abar[timesteps[0]])
    m = torch.cat([a0 * mu, torch.zeros(D, dtype=F64)])
    C = torch.block_diag(a0 ** 2 * sigma + (1 - a0 ** 2) * eye, zero)
    h_prev, have_prev = math.inf, False
    n = len(timesteps)
    for i, (t, t_next) in enumerate(zip(timesteps, timesteps[1:] + [-1])):
        at, an = abar[t], 1.0 if t_next < 0 else abar[t_next]
        K = math.sqrt(at) * sigma @ torch.linalg.inv(at * sigma + (1 - at) * eye)
        e = mu - math.sqrt(at) * K @ mu  # x0 = K x + e
        h = lam(an) - lam(at)
        second = have_prev and math.isfinite(h) and math.isfinite(h_prev) and i < n - 2
        c_r = h / (2.0 * h_prev) if second else 0.0
        emh = 0.0 if not math.isfinite(h) else math.exp(-h)
        s_t, s_n, a_n = math.sqrt(1 - at), math.sqrt(1 - an), math.sqrt(an)
        if eta == 1.0:
            k_x, k_d, sd = s_n / s_t * emh, a_n * (1 - emh ** 2), s_n * math.sqrt(1 - emh ** 2)
        else:
            k_x, k_d, sd = s_n / s_t, a_n * (1 - emh), 0.0
        A = torch.cat([torch.cat([k_x * eye + k_d * (1 + c_r) * K, -k_d * c_r * eye], 1),
                       torch.cat([K, zero], 1)])
        b = torch.cat([k_d * (1 + c_r) * e, e])
        m, C = A @ m + b, A @ C @ A.T + torch.block_diag(sd ** 2 * eye, zero)
        h_prev, have_prev = h, True
    return m[:D], C[:D, :D]


@pytest.mark.parametrize("kind,steps,eta", [("linear", 12, 1.0), ("cosine", 25, 1.0), ("cosine", 8, 1.0),
                                            ("linear", 12, 0.0), ("cosine", 8, 0.0)])
def test_solver_output_follows_its_closed_form_law(kind, steps, eta):
    schedule = Schedule.linear() if kind == "linear" else Schedule.cosine(100)
    mu, sigma = gaussian_problem()
    denoise, _ = optimal_denoiser(mu, sigma, schedule)
    ts = sampling_timesteps(schedule.num_timesteps, steps).tolist()
    a0 = math.sqrt(float(schedule.alphas_cumprod[ts[0]]))
    g = torch.Generator().manual_seed(steps)
    chol = torch.linalg.cholesky(a0 ** 2 * sigma + (1 - a0 ** 2) * torch.eye(D, dtype=F64))
    start = a0 * mu + torch.randn(40_000, D, generator=g, dtype=F64) @ chol.T
    x = ddim_sample(denoise, start, schedule, steps, eta=eta, generator=g, solver="dpmpp2m")
    m, C = solver_law(mu, sigma, schedule, ts, eta)
    assert_moments(x, m, C)
    # ... and the law differs from DDIM's at this step count (the correction does something).
    _, C_ddim = sampler_law(mu, sigma, schedule, ts, eta)
    assert (C - C_ddim).abs().max() > 1e-3


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_solver_converges_faster_than_ddim(eta):
    """The covariance error of the exact laws: first order for DDIM (x4 steps -> about /4), better for 2M."""
    mu, sigma = gaussian_problem()
    s = Schedule.cosine(1000)
    e_ddim, e_2m = [], []
    for steps in (25, 100, 400):
        ts = sampling_timesteps(1000, steps).tolist()
        e_ddim.append((sampler_law(mu, sigma, s, ts, eta)[1] - sigma).abs().max().item())
        e_2m.append((solver_law(mu, sigma, s, ts, eta)[1] - sigma).abs().max().item())
    assert all(b < a for a, b in zip(e_2m, e_2m[1:])), e_2m
    assert e_2m[1] < e_ddim[1] and e_2m[2] < e_ddim[2], (e_2m, e_ddim)
    assert e_2m[1] / e_2m[2] > e_ddim[1] / e_ddim[2], (e_2m, e_ddim)


def test_constant_prediction_gives_the_ddim_step():
    """With the same x0 estimate at every step the correction vanishes: the DDIM eta = 1 chain, draw for draw."""
    s = Schedule.cosine(100)
    target = torch.randn(16, 5, generator=torch.Generator().manual_seed(1), dtype=F64)
    den = lambda x, t, c: target.clone()  # noqa: E731
    noise = torch.randn(16, 5, generator=torch.Generator().manual_seed(2), dtype=F64)
    ddim = ddim_sample(den, noise, s, 10, eta=1.0, generator=torch.Generator().manual_seed(3))
    two = ddim_sample(den, noise, s, 10, eta=1.0, generator=torch.Generator().manual_seed(3), solver="dpmpp2m")
    torch.testing.assert_close(two, ddim, rtol=0, atol=1e-12)


def test_solver_refusals():
    s = Schedule.cosine(100)
    den = lambda x, t, c: torch.zeros_like(x)  # noqa: E731
    x = torch.zeros(2, 3)
    with pytest.raises(InputError, match="solver must be one of"):
        ddim_sample(den, x, s, 5, eta=1.0, solver="heun")
    with pytest.raises(InputError, match="eta 0 or 1"):
        ddim_sample(den, x, s, 5, eta=0.5, solver="dpmpp2m")
    with pytest.raises(InputError, match="eta 0 or 1"):
        ddim_sample(den, x, s, 5, eta=1.0, solver="dpmpp2m", update="reference")
    with pytest.raises(InputError, match="guidance_keeps_noise"):
        ddim_sample(den, x, s, 5, eta=1.0, solver="dpmpp2m", guidance_keeps_noise=True)
