"""Switchable priors over the canonical two-hand vectors x [B, 2, 64] (left = anchor first, raw units).

Each prior maps x to a value per frame [B] whose gradient the fit follows; ``progress`` in [0, 1] is the
fraction of the prior-weighted stage done (schedules use it), ``generator`` draws the noise.

- :class:`NoPrior` (``none``): 0.
- :class:`GaussianPrior` (``gaussian``): 0.5 * squared standardised distance of both hands' pose PCA coefficients
  and betas from the training data's mean (the per-dimension mean and std stored with the model file), the
  classic pose-PCA / shape L2 prior with the data's scales.
- :class:`VAEPrior` (``vae``): the two-hand VAE baseline (kind ``vae`` model files): 0.5 |mu(z)|^2 + 0.5 |D(mu(z)) - z|^2
  on the standardised 128 numbers z (the anchor's constant rotation/translation slots excluded), i.e. the
  latent's prior energy plus the distance to the VAE's manifold, differentiable through the frozen encoder and
  decoder.
- :class:`DiffusionPrior` (``interhandgen``): the cascaded diffusion prior as a score-distillation-like term on
  the standardised vectors z. The anchor term is unconditional, the partner term conditioned on the CURRENT
  (detached) anchor, as in the cascade p(x_a) p(x_o | x_a):

      z_t = sqrt(abar_t) z + sqrt(1 - abar_t) eps,      z_hat = D(z_t, t [, cond = z_a]) (frozen, no gradient)
      value = w(t) * |z - z_hat|^2      ->  gradient 2 w(t) (z - z_hat): a step towards the model's denoised estimate

  Variant ``sds`` (the paper's term): t uniform in [t_min, t_max] anew at every iteration, w = 1.
  Variant ``dposer`` (DPoser-style one-step denoising): t decreases linearly from t_max to t_min over the stage
  (coarse corrections first, fine ones last) and w(t) = sqrt(SNR(t) / SNR(t_max)) (SNR = abar / (1 - abar)), so
  the smaller residuals at low noise keep their pull; the value is divided by the SNR weight's mean over the
  schedule so both variants use the same prior weight scale.

:meth:`DiffusionPrior.elbo_terms` is a much better estimate of the pair's negative log-likelihood under the
cascade, for ranking candidates (the depth-flip hypotheses) rather than for a gradient: the diffusion ELBO's
denoising sum over a grid of timesteps with the ELBO's own weights (see :func:`elbo_grid`), averaged over several
noise draws that the caller shares between the candidates of a frame (common random numbers).
"""

from __future__ import annotations

import torch
from torch import nn

from interhandgen.data.canonical import HAND_DIM
from interhandgen.exceptions import InputError

PRIORS = ("interhandgen", "vae", "gaussian", "none")
DIFFUSION_VARIANTS = ("sds", "dposer")
# Pose PCA coefficients and betas of a canonical hand vector: what the Gaussian prior covers.
_SHAPE_POSE = slice(0, 55)
# The anchor's rotation/translation slots are constants of the canonical frame, never part of a prior.
_ANCHOR_FREE = slice(0, 55)


def elbo_grid(alphas_cumprod: torch.Tensor, t_range: tuple[float, float], num: int
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Timesteps (int64 [K]) and ELBO weights (float64 [K]) of a K-point stratified grid over ``t_range`` (fractions
    of T) of a schedule with cumulative products ``alphas_cumprod`` [T].

    With an x0-predicting denoiser and the posterior variance in the reverse steps, the ELBO's term of step t is
    0.5 (SNR(t-1) - SNR(t)) |x0 - x0_hat(x_t, t)|^2 (Kingma et al. 2021, "Variational Diffusion Models", in
    discrete time; SNR = abar / (1 - abar)). The steps t_lo..t_hi are cut into K contiguous strata of (nearly)
    equal length and each stratum is represented by its middle step, weighted by the sum of its steps' weights,
    0.5 (SNR(first - 1) - SNR(last)): the weights telescope, so they sum to 0.5 (SNR(t_lo - 1) - SNR(t_hi)), the
    truncated ELBO's total weight, whatever K."""
    abar = alphas_cumprod.detach().cpu().to(torch.float64)
    T = abar.shape[0]
    lo, hi = (int(round(f * (T - 1))) for f in t_range)
    if not 1 <= lo <= hi <= T - 1:
        raise InputError(f"t_range {t_range} gives steps {lo}..{hi}; they must lie in 1..{T - 1}")
    if not 1 <= num <= hi - lo + 1:
        raise InputError(f"num must lie in 1..{hi - lo + 1} (the steps in t_range), got {num}")
    snr = abar / (1.0 - abar)
    edges = torch.linspace(lo, hi + 1, num + 1, dtype=torch.float64).round().long()  # stratum k: edges[k]..edges[k+1]-1
    first, last = edges[:-1], edges[1:] - 1
    weights = 0.5 * (snr[first - 1] - snr[last])
    return (first + last) // 2, weights


class NoPrior(nn.Module):
    name = "none"

    def forward(self, x: torch.Tensor, progress: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
        return x.new_zeros(x.shape[0])


class GaussianPrior(nn.Module):
    """0.5 |(x - mean) / std|^2 over both hands' pose and shape numbers. mean, std: [2, 64]."""

    name = "gaussian"

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).clone())
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).clone())

    def forward(self, x: torch.Tensor, progress: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
        z = (x - self.mean.to(x)) / self.std.to(x)
        return 0.5 * (z[..., _SHAPE_POSE] ** 2).sum(dim=(1, 2))


def _placement_weight(value: float) -> float:
    """A prior's weight of the partner's relative placement numbers, checked (> 0, finite)."""
    value = float(value)
    if not (value > 0 and value < float("inf")):
        raise InputError(f"placement_weight must be a finite number > 0, got {value}")
    return value


class VAEPrior(nn.Module):
    """Prior energy of the two-hand VAE (a frozen :class:`interhandgen.baselines.networks.TwoHandVAE`)."""

    name = "vae"

    def __init__(self, net: nn.Module, mean: torch.Tensor, std: torch.Tensor, placement_weight: float = 1.0) -> None:
        super().__init__()
        self.net = net.eval()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).clone())
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).clone())
        self.placement_weight = _placement_weight(placement_weight)
        w = torch.ones(2, HAND_DIM)
        w[0, _ANCHOR_FREE.stop:] = 0.0
        self.register_buffer("weight", w.reshape(2 * HAND_DIM))
        self.observe_placement(False)

    def observe_placement(self, observed: bool) -> None:
        """Weigh the partner's placement by 1 (``observed``: 3D joints or an initial estimate place the hands) or by
        ``placement_weight`` (2D keypoints only, which leave the relative depth open). The weight multiplies the
        residual before squaring: the square root of the placement weight."""
        self.weight.view(2, HAND_DIM)[1, _ANCHOR_FREE.stop:] = 1.0 if observed else self.placement_weight ** 0.5

    def forward(self, x: torch.Tensor, progress: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
        z = ((x - self.mean.to(x)) / self.std.to(x)).reshape(x.shape[0], 2 * HAND_DIM)
        mu, _ = self.net.encode(z)
        rec = self.net.decode(mu)
        return 0.5 * (mu ** 2).sum(1) + 0.5 * (((rec - z) * self.weight.to(x)) ** 2).sum(1)


class DiffusionPrior(nn.Module):
    """The cascaded diffusion prior as a score-distillation-like term (see the module docstring).

    Args:
        net: the frozen shared denoiser ``net(x_t, t, cond, cond_mask) -> x0_hat`` (kind ``shared`` or ``separate``).
        mean, std: [2, 64] standardisation statistics of the model file.
        schedule: its noise schedule (:class:`interhandgen.diffusion.Schedule`).
        variant: "sds" or "dposer".
        t_range: (t_min, t_max) as fractions of the schedule's T.
        placement_weight: weight of the partner's 9 relative rotation and translation numbers in the term (the
            placement of one hand relative to the other, which 2D keypoints constrain least; docs/fitting.md); the
            fit sets it back to 1 for observations that place the hands (:meth:`observe_placement`).
    """

    name = "interhandgen"

    def __init__(self, net: nn.Module, mean: torch.Tensor, std: torch.Tensor, schedule, variant: str = "sds",
                 t_range: tuple[float, float] = (0.02, 0.3), placement_weight: float = 1.0) -> None:
        super().__init__()
        self.placement_weight = _placement_weight(placement_weight)
        self.register_buffer("partner_weight", torch.ones(HAND_DIM))
        self.observe_placement(False)
        if variant not in DIFFUSION_VARIANTS:
            raise ValueError(f"variant must be one of {DIFFUSION_VARIANTS}, got {variant!r}")
        lo, hi = t_range
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"t_range must satisfy 0 <= t_min <= t_max <= 1, got {t_range}")
        self.net = net.eval()
        self.variant = variant
        T = schedule.num_timesteps
        self.t_min, self.t_max = int(round(lo * (T - 1))), int(round(hi * (T - 1)))
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).clone())
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).clone())
        abar = schedule.alphas_cumprod.detach().cpu().to(torch.float64)
        self.register_buffer("sqrt_abar", abar.sqrt().float())
        self.register_buffer("sqrt_one_minus", (1 - abar).sqrt().float())
        snr = abar / (1 - abar)
        w = (snr / snr[self.t_max]).sqrt()
        w = w / w[self.t_min:self.t_max + 1].mean()
        self.register_buffer("snr_weight", w.float())

    def observe_placement(self, observed: bool) -> None:
        """Weigh the partner's placement by 1 (``observed``: 3D joints or an initial estimate place the hands) or by
        ``placement_weight`` (2D keypoints only, which leave the relative depth open)."""
        self.partner_weight[_ANCHOR_FREE.stop:] = 1.0 if observed else self.placement_weight

    def timesteps(self, batch: int, progress: float, generator: torch.Generator | None) -> torch.Tensor:
        """int64 [B] timesteps for this iteration."""
        if self.variant == "sds":
            return torch.randint(self.t_min, self.t_max + 1, (batch,), generator=generator)
        t = round(self.t_max - (self.t_max - self.t_min) * min(max(progress, 0.0), 1.0))
        return torch.full((batch,), int(t), dtype=torch.int64)

    def denoise_targets(self, z: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Denoised estimates [B, 2, 64] of standardised z [B, 2, 64] noised to t [B] with eps [B, 2, 64]: the
        anchor unconditionally, the partner conditioned on the (clean) anchor z[:, 0]. No gradient."""
        with torch.no_grad():
            dev = z.device
            a = self.sqrt_abar.to(dev)[t.to(dev)][:, None, None]
            s = self.sqrt_one_minus.to(dev)[t.to(dev)][:, None, None]
            zt = a * z.detach() + s * eps
            return self._denoise_cascade(zt, t.to(dev), z[:, 0].detach())

    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x)) / self.std.to(x)

    def forward(self, x: torch.Tensor, progress: float = 0.0, generator: torch.Generator | None = None,
                timesteps: torch.Tensor | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Value [B] of pairs x [B, 2, 64]; ``timesteps`` (int64 [B]) and ``noise`` ([B, 2, 64]) replace the draws
        (to compare several candidates of one frame under the same noise)."""
        z = self.standardise(x)
        t = self.timesteps(x.shape[0], progress, generator) if timesteps is None else timesteps
        eps = (torch.randn(z.shape, generator=generator) if noise is None else noise).to(z)
        target = self.denoise_targets(z, t, eps)
        diff = z - target
        value = (diff[:, 0, _ANCHOR_FREE] ** 2).sum(1) + (self.partner_weight.to(z) * diff[:, 1] ** 2).sum(1)
        if self.variant == "dposer":
            value = value * self.snr_weight.to(z.device)[t.to(z.device)].to(z)
        return value

    def elbo_terms(self, x: torch.Tensor, timesteps: torch.Tensor, weights: torch.Tensor, noise: torch.Tensor
                   ) -> torch.Tensor:
        """Per-number ELBO contributions [B, 2, 64] of pairs x [B, 2, 64] (raw units; no gradient): for each number
        of the standardised pair, sum_k weights[k] mean_m (z - z_hat(z_t, timesteps[k]; noise[m]))^2 with the anchor
        denoised unconditionally and the partner conditioned on the (clean) anchor, the two factors of the cascade
        p(z_a) p(z_o | z_a). Summed over the numbers it is the truncated ELBO's estimate of -log p(z) up to a
        constant (from :func:`elbo_grid`'s timesteps [K] and weights [K]); the anchor's constant slots are 0.
        noise: [M, B, 2, 64] draws (share them between candidates of a frame to compare them)."""
        if noise.dim() != 4 or noise.shape[1:] != x.shape:
            raise InputError(f"noise must have shape [M, {', '.join(map(str, x.shape))}], got {list(noise.shape)}")
        z = self.standardise(x.detach())
        B, K = z.shape[0], timesteps.shape[0]
        dev = z.device
        t = timesteps.to(dev).repeat(B)  # [B K], row b*K + k
        a = self.sqrt_abar.to(dev)[t][:, None, None]
        s = self.sqrt_one_minus.to(dev)[t][:, None, None]
        zk = z.repeat_interleave(K, 0)
        w = weights.to(dev, torch.float64).repeat(B).view(B, K, 1, 1)
        out = torch.zeros(B, 2, HAND_DIM, dtype=torch.float64, device=dev)
        with torch.no_grad():
            for eps in noise.to(z):
                zt = a * zk + s * eps.repeat_interleave(K, 0)
                r = (zk - self._denoise_cascade(zt, t, zk[:, 0])).double().view(B, K, 2, HAND_DIM)
                out += (w * r ** 2).sum(1)
        out[:, 0, _ANCHOR_FREE.stop:] = 0.0
        return (out / noise.shape[0]).to(z.dtype)

    def _denoise_cascade(self, zt: torch.Tensor, t: torch.Tensor, anchor_clean: torch.Tensor | None) -> torch.Tensor:
        """x0 estimates [B, 2, 64] of z_t [B, 2, 64] at timesteps t [B]: the anchor unconditionally, the partner
        conditioned on ``anchor_clean`` [B, 64] (default: the anchor's own estimate, as in cascaded sampling)."""
        off = torch.zeros(zt.shape[0], dtype=torch.bool, device=zt.device)
        anchor = self.net(zt[:, 0], t, torch.zeros_like(zt[:, 0]), off)
        cond = anchor if anchor_clean is None else anchor_clean
        return torch.stack([anchor, self.net(zt[:, 1], t, cond, ~off)], dim=1)

    def guided_projection(self, x: torch.Tensor, data_energy, t_start: float, steps: int, step_size: float,
                          inner: int, generator: torch.Generator | None = None, invert: bool = False) -> torch.Tensor:
        """ScoreHMR-style refinement of canonical pairs x [B, 2, 64] (raw units) -> [B, 2, 64].

        The standardised estimate is taken to ``t_start`` (a fraction of T), then brought back by ``steps``
        deterministic DDIM steps of the frozen cascade; at every step the x0 estimate is moved ``inner`` times by
        ``step_size`` standardised units down the normalised gradient of ``data_energy`` (a callable: raw canonical
        pairs [B, 2, 64] -> [B], differentiable) before the update, so the result is a sample of the prior near the
        estimate that keeps explaining the observations. The anchor's constant slots are kept. How the estimate
        reaches ``t_start``: by the forward process (fresh noise from ``generator``), or with ``invert`` by DDIM
        inversion over the same timesteps (deterministic: the reverse steps without guidance would come back to
        near the estimate, as in ScoreHMR). The inversion's noise estimate (z - sqrt(abar) x0) / sqrt(1 - abar) is
        well conditioned for a v-predicting model (it equals sqrt(1 - abar) z + sqrt(abar) v); for an
        x0-predicting one it divides the denoiser's error by sqrt(1 - abar), which is small at the first steps.
        """
        z0 = self.standardise(x.detach())
        T = self.sqrt_abar.shape[0]
        ts = torch.linspace(0, t_start * (T - 1), steps + 1).round().long().tolist()
        dev = z0.device
        a, s = self.sqrt_abar.to(dev), self.sqrt_one_minus.to(dev)
        fixed = z0[:, 0, _ANCHOR_FREE.stop:]
        mean, std = self.mean.to(z0), self.std.to(z0)

        def denoise(z: torch.Tensor, t: int) -> torch.Tensor:
            with torch.no_grad():
                x0 = self._denoise_cascade(z, torch.full((z.shape[0],), t, dtype=torch.int64, device=dev), None)
                x0[:, 0, _ANCHOR_FREE.stop:] = fixed
            return x0

        def move(z: torch.Tensor, x0: torch.Tensor, t: int, t_to: int) -> torch.Tensor:
            # the deterministic DDIM step from t to t_to (either direction) with the noise x0 implies at t
            return a[t_to] * x0 + s[t_to] * ((z - a[t] * x0) / s[t])

        if invert:
            z = z0
            for i in range(steps):
                z = move(z, denoise(z, ts[i]), ts[i], ts[i + 1])
        else:
            eps = torch.randn(z0.shape, generator=generator).to(z0)
            z = a[ts[-1]] * z0 + s[ts[-1]] * eps
        x0 = z0  # steps = 0: the estimate itself
        for i in range(steps, 0, -1):
            t, t_prev = ts[i], ts[i - 1]
            x0 = denoise(z, t)
            for _ in range(inner):
                x0 = x0.detach().requires_grad_()
                (g,) = torch.autograd.grad(data_energy(x0 * std + mean).sum(), x0)
                g[:, 0, _ANCHOR_FREE.stop:] = 0.0
                x0 = x0 - step_size * g / g.flatten(1).norm(dim=1).clamp(min=1e-12)[:, None, None]
            x0 = x0.detach()
            if i > 1:
                z = move(z, x0, t, t_prev)
        return x0 * std + mean
