"""``temperature`` of ``ddim_sample`` (and ``SamplerSettings``): every Gaussian draw of the run, the initial state
included, scaled. With the optimal denoiser of zero-mean Gaussian data the whole run is linear in its draws, so the
samples at temperature T are exactly T times those of the same draws at 1 (for both solvers and any eta)."""

from __future__ import annotations

import pytest
import torch

from interhandgen.diffusion import Schedule, ddim_sample
from interhandgen.exceptions import InputError
from interhandgen.generation.cascade import SamplerSettings

from tests.diffusion.test_diffusion import F64, D, gaussian_problem, optimal_denoiser


def _run(denoise, schedule, temperature=None, eta=1.0, solver="ddim", steps=12):
    noise = torch.randn(256, D, dtype=F64, generator=torch.Generator().manual_seed(3))
    gen = torch.Generator().manual_seed(4)
    kw = {} if temperature is None else {"temperature": temperature}
    return ddim_sample(denoise, noise, schedule, steps, eta=eta, generator=gen, solver=solver, **kw)


@pytest.mark.parametrize("eta,solver", [(1.0, "ddim"), (0.5, "ddim"), (0.0, "ddim"), (1.0, "dpmpp2m"),
                                        (0.0, "dpmpp2m")])
@pytest.mark.parametrize("temperature", [0.3, 0.7, 1.5])
def test_linear_run_scales_with_temperature(eta, solver, temperature):
    _, sigma = gaussian_problem()
    schedule = Schedule.cosine(129)
    denoise, _ = optimal_denoiser(torch.zeros(D, dtype=F64), sigma, schedule)
    base = _run(denoise, schedule, eta=eta, solver=solver)
    hot = _run(denoise, schedule, temperature, eta=eta, solver=solver)
    torch.testing.assert_close(hot, temperature * base, rtol=1e-10, atol=1e-12)
    assert hot.std() < base.std() if temperature < 1 else hot.std() > base.std()


def test_temperature_one_is_the_standard_run_bit_for_bit():
    mu, sigma = gaussian_problem()
    schedule = Schedule.cosine(129)
    denoise, _ = optimal_denoiser(mu, sigma, schedule)
    assert torch.equal(_run(denoise, schedule), _run(denoise, schedule, 1.0))


def test_affine_run_is_affine_in_temperature():
    # with mean mu the run is affine in its draws, so a sample is m + T d (m: the run with every draw zero): equal
    # steps of T give equal steps of the sample
    mu, sigma = gaussian_problem()
    schedule = Schedule.cosine(129)
    denoise, _ = optimal_denoiser(mu, sigma, schedule)
    quarter, half, one = (_run(denoise, schedule, T) for T in (0.25, 0.5, 1.0))
    torch.testing.assert_close(half - quarter, (one - half) / 2, rtol=1e-9, atol=1e-11)
    assert (one - half).abs().max() > 0.1  # the draws matter


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), True, "1"])
def test_temperature_refusals(bad):
    mu, sigma = gaussian_problem()
    schedule = Schedule.cosine(129)
    with pytest.raises(InputError, match="temperature"):
        _run(optimal_denoiser(mu, sigma, schedule)[0], schedule, bad)
    with pytest.raises(InputError, match="temperature"):
        SamplerSettings(temperature=bad).validate()
