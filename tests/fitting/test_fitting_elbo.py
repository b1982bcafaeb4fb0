"""The diffusion prior's ELBO estimate (DiffusionPrior.elbo_terms, elbo_grid) against closed forms for Gaussian data,
where the exact denoiser (the posterior mean) is known: the estimate's expectation, its ordering of candidates under
shared noise, and its limit, the exact log-density difference."""

import pytest
import torch
from torch import nn

from interhandgen.diffusion import Schedule
from interhandgen.fitting.priors import DiffusionPrior, elbo_grid

SIGMA = 0.7  # standard deviation of every number of the Gaussian data (standardised units)
SLOPE = 0.5  # the partner's mean is SLOPE x the anchor (a conditional the cascade must use)


class GaussianDenoiser(nn.Module):
    """The exact x0-predictor E[x0 | x_t] for x0 ~ N(m, SIGMA^2 I): m + c (x_t - sqrt(abar) m),
    c = sqrt(abar) SIGMA^2 / (abar SIGMA^2 + 1 - abar); m = 0 unconditionally, SLOPE x cond when conditioned."""

    def __init__(self, schedule: Schedule) -> None:
        super().__init__()
        self.register_buffer("abar", schedule.alphas_cumprod.float())

    def forward(self, x_t, t, cond, cond_mask):
        a = self.abar[t][:, None]
        m = SLOPE * cond * cond_mask[:, None].to(cond)
        c = a.sqrt() * SIGMA ** 2 / (a * SIGMA ** 2 + 1 - a)
        return m + c * (x_t - a.sqrt() * m)


def _prior(schedule: Schedule) -> DiffusionPrior:
    return DiffusionPrior(GaussianDenoiser(schedule), torch.zeros(2, 64), torch.ones(2, 64), schedule)


def _expected_terms(x: torch.Tensor, schedule: Schedule, steps, weights) -> torch.Tensor:
    """Closed form of E_eps[elbo_terms] [B, 2, 64]: with x0 - x0_hat = (x - m) / (SNR SIGMA^2 + 1) - c sqrt(1 - abar)
    eps, each step adds w ((x - m)^2 / (SNR SIGMA^2 + 1)^2 + c^2 (1 - abar))."""
    abar = schedule.alphas_cumprod[steps]
    snr = abar / (1 - abar)
    c = abar.sqrt() * SIGMA ** 2 / (abar * SIGMA ** 2 + 1 - abar)
    x = x.double()
    m = torch.stack([torch.zeros_like(x[:, 0]), SLOPE * x[:, 0]], 1)
    d2 = (x - m)[..., None] ** 2  # [B, 2, 64, 1]
    out = (weights * (d2 / (snr * SIGMA ** 2 + 1) ** 2 + c ** 2 * (1 - abar))).sum(-1)
    out[:, 0, 55:] = 0.0
    return out


def test_elbo_grid_weights_are_the_elbo_steps_and_telescope():
    schedule = Schedule.linear(num_timesteps=129)
    abar = schedule.alphas_cumprod
    snr = abar / (1 - abar)
    lo, hi = round(0.02 * 128), round(0.6 * 128)
    steps, w = elbo_grid(abar, (0.02, 0.6), hi - lo + 1)  # one stratum per step: the ELBO's own terms
    assert steps.tolist() == list(range(lo, hi + 1))
    assert torch.allclose(w, 0.5 * (snr[steps - 1] - snr[steps]))
    for k in (1, 5, 24):
        steps_k, w_k = elbo_grid(abar, (0.02, 0.6), k)
        assert len(steps_k) == k and (steps_k >= lo).all() and (steps_k <= hi).all() and (w_k > 0).all()
        assert torch.isclose(w_k.sum(), w.sum())
    with pytest.raises(ValueError):
        elbo_grid(abar, (0.0, 0.5), 4)  # step 0 has no predecessor
    with pytest.raises(ValueError):
        elbo_grid(abar, (0.1, 0.11), 10)  # more strata than steps
    prior = _prior(schedule)
    with pytest.raises(ValueError, match="noise must have shape"):
        prior.elbo_terms(torch.zeros(3, 2, 64), steps_k, w_k, torch.zeros(2, 4, 2, 64))


def test_elbo_terms_match_the_gaussian_closed_form():
    schedule = Schedule.linear(num_timesteps=129)
    prior = _prior(schedule)
    steps, w = elbo_grid(schedule.alphas_cumprod, (0.02, 0.6), 8)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 2, 64, generator=g) * 1.5
    noise = torch.randn(4000, 3, 2, 64, generator=g)
    got = prior.elbo_terms(x, steps, w, noise).double()
    want = _expected_terms(x, schedule, steps, w)
    assert (got[:, 0, 55:] == 0).all()  # the anchor's constant slots
    # Per frame (sums over the numbers) the Monte Carlo estimate is within 1.5% of its expectation.
    assert torch.allclose(got.sum((1, 2)), want.sum((1, 2)), rtol=0.015)


def test_shared_noise_ranks_candidates_like_the_density():
    """Two candidates per frame under the same few draws: the one the Gaussian makes likelier gets the lower value,
    and the difference of the values is the closed form's (the noise-only term cancels)."""
    schedule = Schedule.linear(num_timesteps=129)
    prior = _prior(schedule)
    steps, w = elbo_grid(schedule.alphas_cumprod, (0.02, 0.6), 16)
    g = torch.Generator().manual_seed(1)
    near = torch.randn(5, 2, 64, generator=g) * SIGMA
    near[:, 1] += SLOPE * near[:, 0]  # the partner at its conditional mean plus data-like spread
    far = near.clone()
    far[:, 1, 55:] += 3.0 * SIGMA  # the partner's placement numbers moved 3 sigma off: less likely
    x = torch.stack([near, far], 1).reshape(10, 2, 64)

    def values(draws: int, shared: bool) -> torch.Tensor:
        noise = torch.randn(draws, 5, 1 if shared else 2, 2, 64, generator=g).expand(-1, -1, 2, -1, -1)
        return prior.elbo_terms(x, steps, w, noise.reshape(draws, 10, 2, 64)).sum((1, 2)).view(5, 2).double()

    assert (values(2, shared=True).diff(dim=1) > 0).all()
    # Independent draws: the noise-only term (about 400 per frame here, with a spread of tens) swamps the
    # difference of about 20; shared draws cancel it, what is left converges to the closed form's difference.
    want = _expected_terms(x, schedule, steps, w).sum((1, 2)).view(5, 2).diff(dim=1)
    assert torch.allclose(values(512, shared=True).diff(dim=1), want, rtol=0.1)


def test_full_range_elbo_difference_is_the_log_density_difference():
    """Over (nearly) the whole SNR range the ELBO's dependence on x is exact for Gaussian data:
    -log p(x1) + log p(x2) = (|x1 - m|^2 - |x2 - m|^2) / (2 SIGMA^2), summed over both factors of the cascade."""
    schedule = Schedule.linear(beta_start=1e-5, beta_end=0.05, num_timesteps=1000)
    prior = _prior(schedule)
    steps, w = elbo_grid(schedule.alphas_cumprod, (0.001, 1.0), 999)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(4, 2, 64, generator=g)
    noise = torch.zeros(1, 4, 2, 64)  # zero noise: exactly the x-dependent part (the noise-only term is constant)
    v = prior.elbo_terms(x, steps, w, noise).double()
    m = torch.stack([torch.zeros_like(x[:, 0]), SLOPE * x[:, 0]], 1).double()
    d2 = (x.double() - m) ** 2
    d2[:, 0, 55:] = 0.0
    nll = d2.sum((1, 2)) / (2 * SIGMA ** 2)
    # The discrete sum takes each step's residual at the lower SNR end of its weight's interval: 2% above the
    # integral on this schedule; truncating the range costs far less.
    got = v.sum((1, 2))
    assert torch.allclose(got, nll, rtol=0.03)
    assert ((got - got[0]).sign() == (nll - nll[0]).sign()).all()


def test_guided_projection_by_inversion_comes_back_to_the_estimate():
    """Without guidance, DDIM inversion to t and the deterministic steps back return near the estimate (the exact
    Gaussian denoiser: a round trip of the probability-flow ODE, off only by the discretisation), whereas the forward
    process's fresh noise lands on another sample of the prior; with guidance the data pull the result as before."""
    schedule = Schedule.linear(num_timesteps=129)
    prior = _prior(schedule)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(16, 2, 64, generator=g) * SIGMA
    x[:, 0, 55:] = 0.0  # the anchor's constant slots (the frame)

    def no_data(v):
        return (v * 0.0).sum((1, 2))

    def gap(y):
        return (y - x)[:, :, :55].norm(dim=(1, 2)) / x[:, :, :55].norm(dim=(1, 2))

    for t in (0.1, 0.3):
        back = prior.guided_projection(x, no_data, t, 30, 0.0, 0, invert=True)
        noised = prior.guided_projection(x, no_data, t, 30, 0.0, 0, torch.Generator().manual_seed(0))
        assert torch.equal(back[:, 0, 55:], x[:, 0, 55:])
        assert gap(back).max() < 0.02 and gap(noised).min() > 5 * gap(back).max()
    assert torch.equal(prior.guided_projection(x, no_data, 0.3, 30, 0.0, 0, invert=True), back)  # no randomness
    target = torch.zeros(2, 64)
    pulled = prior.guided_projection(x, lambda v: ((v - target)[:, :, :55] ** 2).sum((1, 2)), 0.3, 30, 0.05, 2,
                                     invert=True)
    assert ((pulled - target)[:, :, :55].norm(dim=(1, 2)) < (back - target)[:, :, :55].norm(dim=(1, 2))).all()
