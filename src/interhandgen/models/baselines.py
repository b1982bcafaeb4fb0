"""Baseline networks for the ablations of the paper, under the same data, trainer and protocol.

- :class:`SeparateStageDenoisers` ("w/o shared network"): two denoisers of the same architecture as the shared
  one, one for the unconditional (anchor) stage and one for the conditional stage; same call signature as the
  shared denoiser, so the cascaded trainer and sampler use it unchanged.
- :class:`JointDenoiser` ("w/o decomposition", the parallel baseline): ONE diffusion over both hands at once,
  x = [anchor 64, other 64] (128 numbers), an MLP denoiser predicting x0 (or v).
- :class:`TwoHandVAE`: a two-hand VAE prior in the style of Zuo et al. (ICCV 2023): an MLP encoder to a Gaussian
  latent, an MLP decoder back to both hands' 128 numbers, trained with a reconstruction + beta * KL objective.
"""

from __future__ import annotations

import torch
from torch import nn

from interhandgen.models.config import PREDICTIONS
from interhandgen.models.denoiser import timestep_embedding, v_coefficients, x0_from_v
from interhandgen.exceptions import InputError


class ResidualMLP(nn.Module):
    """in -> width, ``depth`` pre-norm residual blocks (LayerNorm, Linear, SiLU, Linear), -> out."""

    def __init__(self, in_dim: int, out_dim: int, width: int, depth: int) -> None:
        super().__init__()
        self.inp = nn.Linear(in_dim, width)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
            for _ in range(depth)
        )
        self.out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, out_dim))

    def forward(self, x: torch.Tensor, add: torch.Tensor | None = None) -> torch.Tensor:
        h = self.inp(x)
        for block in self.blocks:
            h = h + block(h if add is None else h + add)
        return self.out(h)


class JointDenoiser(nn.Module):
    """Denoiser of both hands jointly: forward(x_t [B, 128], t [B]) -> x0_hat [B, 128].

    ``prediction``: what the last layer predicts, ``"x0"`` or ``"v"`` (converted to x0 with the noise schedule,
    :meth:`set_schedule`, as :class:`interhandgen.models.denoiser.Denoiser` does), so the comparison of kinds can
    use the bundled model's objective."""

    def __init__(self, width: int = 768, depth: int = 6, time_dim: int = 128, prediction: str = "x0") -> None:
        super().__init__()
        if prediction not in PREDICTIONS:
            raise InputError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
        self.time_dim = time_dim
        self.prediction = prediction
        self.time = nn.Sequential(nn.Linear(time_dim, width), nn.SiLU(), nn.Linear(width, width))
        self.mlp = ResidualMLP(128, 128, width, depth)
        self.register_buffer("v_coef", None, persistent=False)  # set_schedule; the model file carries the schedule

    @property
    def predicts_v(self) -> bool:
        return self.prediction == "v"

    def set_schedule(self, schedule) -> None:
        if self.predicts_v:
            self.v_coef = v_coefficients(schedule, self.mlp.inp.weight)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond=None, cond_mask=None) -> torch.Tensor:
        return self.denoise(x_t, t)

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        """x0 [B, 128]; ``extra`` [B, width] is added to the time embedding (a conditioning token), or None."""
        if x_t.dim() != 2 or x_t.shape[1] != 128:
            raise InputError(f"x_t must have shape [B, 128], got {list(x_t.shape)}")
        emb = self.time(timestep_embedding(t, self.time_dim, convention="cos_sin"))
        out = self.mlp(x_t, emb if extra is None else emb + extra)
        return x0_from_v(out, x_t, t, self.v_coef) if self.predicts_v else out


class TwoHandVAE(nn.Module):
    """VAE over both hands' 128 standardised numbers. forward(x) -> (reconstruction, mu, logvar)."""

    def __init__(self, latent_dim: int = 32, width: int = 768, depth: int = 4) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = ResidualMLP(128, 2 * latent_dim, width, depth)
        self.decoder = ResidualMLP(latent_dim, 128, width, depth)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(x).chunk(2, dim=-1)
        return mu, logvar.clamp(-12.0, 8.0)  # keeps exp() finite early in training; documented, not silent

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None):
        mu, logvar = self.encode(x)
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype).to(mu.device)
        z = mu + torch.exp(0.5 * logvar) * eps
        return self.decode(z), mu, logvar


class SeparateStageDenoisers(nn.Module):
    """Two denoisers (same config): ``unconditional`` for cond_mask False rows, ``conditional`` for True rows."""

    def __init__(self, unconditional: nn.Module, conditional: nn.Module) -> None:
        super().__init__()
        self.unconditional = unconditional
        self.conditional = conditional

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, cond_mask: torch.Tensor) -> torch.Tensor:
        out = torch.empty_like(x_t)
        m = cond_mask.bool()
        if m.any():
            out[m] = self.conditional(x_t[m], t[m], cond[m], cond_mask[m])
        if (~m).any():
            out[~m] = self.unconditional(x_t[~m], t[~m], cond[~m], cond_mask[~m])
        return out
