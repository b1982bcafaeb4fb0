"""Reverse-diffusion samplers for x0-predicting denoisers: DDIM (any steps, any eta) and the reference variant.

A denoiser is any callable ``denoiser(x_t [B, ...], t [B] int64, cond) -> x0_hat [B, ...]`` that predicts the clean
sample. One reverse step from timestep t to t_next (t_next = -1 means "to the clean sample", abar = 1) is

    DDIM (Song et al. 2021, eq. 12):
        eps_hat = (x_t - sqrt(abar_t) x0_hat) / sqrt(1 - abar_t)
        sigma   = eta * sqrt((1 - abar_next) / (1 - abar_t) * (1 - abar_t / abar_next))
        x_next  = sqrt(abar_next) x0_hat + sqrt(1 - abar_next - sigma^2) eps_hat + sigma z

    reference (jyunlee/InterHandGen, common/utils_diff.py, ``generalized_steps``):
        x_next  = sqrt(abar_next) x0_hat + sigma z + sqrt(1 - abar_next - sigma^2) (x0_hat - x_t)

The reference variant uses the difference (x0_hat - x_t) where DDIM uses the implied noise; it is not a DDIM step
(for instance it does not keep x_t when x0_hat is exact and eta = 0), but reproducing the reference samples from
its checkpoint needs it. With eta = 1 and all T steps DDIM is ancestral DDPM sampling: its mean and variance are
those of the posterior q(x_{t-1} | x_t, x0_hat).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence

import torch
from tqdm.auto import tqdm

from interhandgen.diffusion.schedule import Schedule
from interhandgen.exceptions import InputError

Denoiser = Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]
X0Guidance = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int], torch.Tensor]

UPDATES = ("ddim", "reference")
SOLVERS = ("ddim", "dpmpp2m")
SPACINGS = ("linspace", "leading")


def sampling_timesteps(num_timesteps: int, num_steps: int, spacing: str = "linspace") -> torch.Tensor:
    """The timesteps a sampler visits, in visiting order (descending), as int64 [num_steps].

    Args:
        num_timesteps: T of the trained schedule.
        num_steps: S, 1 <= S <= T.
        spacing: ``"linspace"``: round(linspace(T-1, 0, S)), i.e. from the noisiest trained step down to 0
            (S = 1 gives [T-1]). ``"leading"``: k * (T // S) for k = S-1 .. 0, the DDIM paper's "uniform" skip and the
            reference code's list (T = 129, S = 42: 123, 120, ..., 3, 0).
    """
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or not 1 <= num_steps <= num_timesteps:
        raise InputError(f"num_steps must be an int in 1..{num_timesteps} (the schedule's T), got {num_steps!r}")
    if spacing == "linspace":
        ts = torch.linspace(num_timesteps - 1, 0, num_steps, dtype=torch.float64).round().to(torch.int64)
    elif spacing == "leading":
        ts = torch.arange(num_steps - 1, -1, -1, dtype=torch.int64) * (num_timesteps // num_steps)
    else:
        raise InputError(f"spacing must be one of {SPACINGS}, got {spacing!r}")
    return ts


def step_coefficients(schedule: Schedule, t: int, t_next: int, eta: float) -> tuple[float, float, float]:
    """(sqrt(abar_next), sigma, c_dir) of one step t -> t_next (t_next = -1: abar_next = 1), computed in float64.

    c_dir = sqrt(1 - abar_next - sigma^2) multiplies the direction term (eps_hat for DDIM, x0_hat - x_t for the
    reference update).
    """
    if not 0 <= t < schedule.num_timesteps:
        raise InputError(f"t must lie in 0..{schedule.num_timesteps - 1}, got {t}")
    if not -1 <= t_next < t:
        raise InputError(f"t_next must lie in -1..{t - 1} (below t = {t}), got {t_next}")
    abar_t = float(schedule.alphas_cumprod[t])
    abar_next = 1.0 if t_next < 0 else float(schedule.alphas_cumprod[t_next])
    sigma = eta * math.sqrt((1.0 - abar_next) / (1.0 - abar_t) * (1.0 - abar_t / abar_next))
    # 1 - abar_next - sigma^2 >= 0 exactly for eta <= 1; max() only absorbs a rounding residue of ~1e-17.
    c_dir = math.sqrt(max(0.0, 1.0 - abar_next - sigma * sigma))
    return math.sqrt(abar_next), sigma, c_dir


def ddim_step(
    x_t: torch.Tensor,
    x0_hat: torch.Tensor,
    t: int,
    t_next: int,
    schedule: Schedule,
    eta: float = 0.0,
    noise: Optional[torch.Tensor] = None,
    update: str = "ddim",
    direction_x0: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """One reverse step x_t -> x_{t_next} given the clean-sample estimate (see the module docstring).

    Args:
        x_t, x0_hat: [B, ...].
        t, t_next: python ints, t_next < t; t_next = -1 steps to the clean sample.
        noise: standard normal [B, ...]; required when sigma > 0 (eta > 0 and t_next >= 0).
        update: ``"ddim"`` or ``"reference"``.
        direction_x0: the clean estimate the direction term is computed from (default ``x0_hat``); a guided
            sampler passes the unguided prediction here to keep its implied noise.
    Returns: x_{t_next} [B, ...].
    """
    if update not in UPDATES:
        raise InputError(f"update must be one of {UPDATES}, got {update!r}")
    if x0_hat.shape != x_t.shape:
        raise InputError(f"x0_hat must have the shape of x_t {list(x_t.shape)}, got {list(x0_hat.shape)}")
    if direction_x0 is None:
        direction_x0 = x0_hat
    elif direction_x0.shape != x_t.shape:
        raise InputError(f"direction_x0 must have the shape of x_t {list(x_t.shape)}, got {list(direction_x0.shape)}")
    a_next, sigma, c_dir = step_coefficients(schedule, t, t_next, eta)
    if update == "ddim":
        a_t = math.sqrt(float(schedule.alphas_cumprod[t]))
        s_t = math.sqrt(1.0 - float(schedule.alphas_cumprod[t]))
        direction = (x_t - a_t * direction_x0) / s_t
    else:
        direction = direction_x0 - x_t
    x_next = a_next * x0_hat + c_dir * direction
    if sigma > 0.0:
        if noise is None:
            raise InputError(f"noise is required for a stochastic step (eta = {eta}, t = {t} -> {t_next})")
        if noise.shape != x_t.shape:
            raise InputError(f"noise must have the shape of x_t {list(x_t.shape)}, got {list(noise.shape)}")
        x_next = x_next + sigma * noise
    return x_next


def check_temperature(temperature) -> None:
    """InputError unless ``temperature`` is a finite number > 0 (a bool is not a number)."""
    if isinstance(temperature, bool) or not (isinstance(temperature, (int, float)) and 0.0 < temperature < math.inf):
        raise InputError(f"temperature must be a finite number > 0, got {temperature!r}")


@torch.no_grad()
def ddim_sample(
    denoiser: Denoiser,
    noise: torch.Tensor,
    schedule: Schedule,
    num_steps: int,
    eta: float = 0.0,
    cond: Any = None,
    generator: Optional[torch.Generator] = None,
    *,
    update: str = "ddim",
    x0_guidance: Optional[X0Guidance] = None,
    progress: bool = False,
    spacing: Optional[str] = None,
    timesteps: Optional[Sequence[int]] = None,
    guidance_keeps_noise: bool = False,
    solver: str = "ddim",
    temperature: float = 1.0,
) -> torch.Tensor:
    """Run the reverse process from ``noise`` (the state at the first visited timestep) to a clean sample.

    Args:
        denoiser: ``denoiser(x_t [B, ...], t [B] int64, cond) -> x0_hat [B, ...]``.
        noise: initial state [B, ...]; its dtype and device are those of the whole run.
        schedule: the trained schedule (T steps).
        num_steps: number of reverse steps (network evaluations).
        eta: 0 = deterministic DDIM, 1 = DDPM posterior variance; must lie in [0, 1].
        cond: passed unchanged to every denoiser call.
        generator: torch.Generator for the stochastic steps (draws are made on the generator's device and moved).
        update: ``"ddim"`` (standard) or ``"reference"`` (the reference code's variant, see module docstring).
        x0_guidance: hook ``(x0_hat, x_t, t [B], step_index) -> x0_hat`` applied to every prediction before the
            update; step_index counts 0 .. num_steps-1 in visiting order (0 = noisiest). Its gradients, if it needs
            any, must be enabled inside it (the sampler runs under ``torch.no_grad``).
        progress: show a tqdm bar.
        spacing: timestep spacing (see :func:`sampling_timesteps`); default ``"leading"`` for ``update="reference"``
            (the reference list 123, 120, ..., 0 for T = 129, 42 steps) and ``"linspace"`` otherwise.
        guidance_keeps_noise: the direction term uses the denoiser's own prediction, so the step keeps the noise
            it implies and the guided change of x0 moves x_{t_next} by sqrt(abar_next) times it (False: the
            direction is re-derived from the guided x0, which cancels part of the change).
        timesteps: explicit strictly decreasing timesteps to visit (overrides num_steps/spacing; length must equal
            num_steps).
        solver: ``"ddim"`` (the first-order steps above) or ``"dpmpp2m"``: DPM-Solver++(2M) (Lu et al. 2022, data
            prediction, midpoint form), the second-order multistep version of the same step, for eta 0 (its ODE
            form) or 1 (its SDE form) and the ddim update. With lambda = log(sqrt(abar) / sqrt(1 - abar)),
            h = lambda_next - lambda_t and r = h_previous / h, the DDIM step (eta 1: (s_next / s_t) e^{-h} x_t +
            sqrt(abar_next) (1 - e^{-2h}) x0 + noise; eta 0: (s_next / s_t) x_t + sqrt(abar_next) (1 - e^{-h}) x0) is
            taken with x0_hat + (x0_hat - x0_hat_previous) / (2 r) in place of x0_hat. The first step (no previous
            estimate) and the last two (into the last visited timestep and to the clean sample) stay first order:
            the step into t = 0 has a large h / h_previous, and its extrapolation overshoots in the data's
            low-variance directions (docs/diffusion.md).
        temperature: every Gaussian draw of the run, the initial state ``noise`` included, is multiplied by it (1:
            the standard process, bit for bit). Below 1 the samples gather nearer the modes the denoiser
            predicts (the truncation of GANs): for a Gaussian denoiser, whose run is linear in its draws, the
            samples are exactly ``temperature`` times those of the same draws at 1; for a learned one it is a
            heuristic, not sampling from a tempered density.
    Returns: x0 [B, ...]: the last step goes to t = -1, where both updates return the final x0_hat.
    """
    if not isinstance(noise, torch.Tensor) or noise.dim() < 2:
        raise InputError(f"noise must be a tensor [B, D, ...], got "
                         f"{list(noise.shape) if isinstance(noise, torch.Tensor) else type(noise).__name__}")
    if not noise.is_floating_point():
        raise TypeError(f"noise must be a floating-point tensor, got dtype {noise.dtype}")
    if not 0.0 <= float(eta) <= 1.0:
        raise InputError(f"eta must lie in [0, 1], got {eta}")
    if update not in UPDATES:
        raise InputError(f"update must be one of {UPDATES}, got {update!r}")
    if solver not in SOLVERS:
        raise InputError(f"solver must be one of {SOLVERS}, got {solver!r}")
    check_temperature(temperature)
    if solver == "dpmpp2m" and (float(eta) not in (0.0, 1.0) or update != "ddim"):
        raise InputError(f"solver 'dpmpp2m' exists for eta 0 or 1 and the ddim update; got eta = {eta}, "
                         f"update = {update!r}")
    if solver == "dpmpp2m" and guidance_keeps_noise:
        raise InputError("guidance_keeps_noise takes the direction term from the unguided prediction, which the "
                         "second-order solver's extrapolated x0 replaces; use solver 'ddim' with it")
    if timesteps is None:
        ts = sampling_timesteps(schedule.num_timesteps, num_steps,
                                spacing or ("leading" if update == "reference" else "linspace"))
    else:
        ts = torch.as_tensor(list(timesteps), dtype=torch.int64)
        if ts.dim() != 1 or ts.numel() != num_steps:
            raise InputError(f"timesteps must hold num_steps = {num_steps} ints, got {list(timesteps)}")
        if (ts[1:] >= ts[:-1]).any() or int(ts.min()) < 0 or int(ts.max()) >= schedule.num_timesteps:
            raise InputError(f"timesteps must be strictly decreasing within 0..{schedule.num_timesteps - 1}, "
                             f"got {ts.tolist()}")
    visit = ts.tolist()
    nexts = visit[1:] + [-1]
    B, device = noise.shape[0], noise.device
    x = noise if temperature == 1.0 else noise * temperature
    prev_x0, prev_h = None, math.inf  # the second-order solver's previous estimate and log-SNR step
    for i, (t, t_next) in enumerate(tqdm(list(zip(visit, nexts)), desc="reverse diffusion", disable=not progress)):
        t_batch = torch.full((B,), t, dtype=torch.int64, device=device)
        x0_hat = denoiser(x, t_batch, cond)
        if not isinstance(x0_hat, torch.Tensor) or x0_hat.shape != x.shape:
            raise InputError(f"the denoiser must return x0_hat of shape {list(x.shape)}, got "
                             f"{list(x0_hat.shape) if isinstance(x0_hat, torch.Tensor) else type(x0_hat).__name__}")
        unguided = x0_hat
        if x0_guidance is not None:
            x0_hat = x0_guidance(x0_hat, x, t_batch, i)
            if not isinstance(x0_hat, torch.Tensor) or x0_hat.shape != x.shape:
                raise InputError(f"x0_guidance must return a tensor of shape {list(x.shape)}")
        z = None
        if eta > 0.0 and t_next >= 0:
            z = torch.randn(x.shape, generator=generator, dtype=x.dtype,
                            device=generator.device if generator is not None else device).to(device)
            if temperature != 1.0:
                z = z * temperature
        step_x0 = x0_hat
        if solver == "dpmpp2m":
            # The DDIM step with eta 0 / 1 is the first-order solver (ODE / SDE); the second-order one takes it with
            # the extrapolated x0 everywhere.
            h = _log_snr_step(schedule, t, t_next)
            if prev_x0 is not None and math.isfinite(h) and math.isfinite(prev_h) and i < len(visit) - 2:
                step_x0 = x0_hat + (x0_hat - prev_x0) * (h / (2.0 * prev_h))
            prev_x0, prev_h = x0_hat, h
        x = ddim_step(x, step_x0, t, t_next, schedule, eta=eta, noise=z, update=update,
                      direction_x0=unguided if guidance_keeps_noise else None)
    return x


def _log_snr_step(schedule: Schedule, t: int, t_next: int) -> float:
    """h = lambda(t_next) - lambda(t), lambda = 0.5 log(abar / (1 - abar)); inf when either end is pure noise or
    clean (abar 0 or 1)."""
    a_t = float(schedule.alphas_cumprod[t])
    a_n = 1.0 if t_next < 0 else float(schedule.alphas_cumprod[t_next])
    if not (0.0 < a_t < 1.0 and 0.0 < a_n < 1.0):
        return math.inf
    return 0.5 * (math.log(a_n / (1.0 - a_n)) - math.log(a_t / (1.0 - a_t)))
