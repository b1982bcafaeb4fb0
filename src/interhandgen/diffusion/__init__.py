"""Gaussian diffusion core: schedules, forward noising, DDIM / reference samplers, classifier-free guidance (cfg).

Works with any x0-predicting denoiser ``denoiser(x_t [B, D], t [B] int64, cond) -> x0_hat [B, D]``; see
docs/diffusion.md.
"""

from interhandgen.diffusion.cfg import classifier_free_guidance, conditional, dims_mask, unconditional
from interhandgen.diffusion.samplers import (
    SOLVERS,
    SPACINGS,
    UPDATES,
    ddim_sample,
    ddim_step,
    sampling_timesteps,
    step_coefficients,
)
from interhandgen.diffusion.schedule import Schedule, eps_from_x0, q_posterior, q_sample, x0_from_eps

__all__ = [
    "Schedule",
    "q_sample",
    "q_posterior",
    "eps_from_x0",
    "x0_from_eps",
    "ddim_sample",
    "ddim_step",
    "sampling_timesteps",
    "step_coefficients",
    "SOLVERS",
    "SPACINGS",
    "UPDATES",
    "classifier_free_guidance",
    "conditional",
    "unconditional",
    "dims_mask",
]
