"""Cascaded two-hand sampling: the anchor hand first, then the other hand conditioned on it.

Works on standardised canonical 64-vectors (see docs/data.md); :mod:`interhandgen.generation.api` turns the result into
world-frame hand parameters. Stage 1 calls the shared denoiser with the null condition; stage 2 conditions on the
sampled anchor, with classifier-free guidance on a chosen set of dimensions (the reference: the last 9 numbers,
rotation and translation, scale 0.1) and optional anti-penetration guidance on the predicted x0.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from interhandgen._seeding import derived_seed
from interhandgen.data.canonical import HAND_DIM, IDENTITY_ROT6D, RIGID_SLICE
from interhandgen.diffusion import SOLVERS, Schedule, classifier_free_guidance, conditional, ddim_sample, unconditional
from interhandgen.diffusion.samplers import check_temperature
from interhandgen.exceptions import InputError

# The anchor's canonical rotation/translation slots: identity 6D rotation, zero translation.
CANONICAL_TAIL = torch.tensor([*IDENTITY_ROT6D, 0.0, 0.0, 0.0])


#: The object sampler's default temperature (:func:`interhandgen.generation.object_api.object_sampler_defaults`): with
#: the bundled object model (720 steps) 0.3 raised the MuJoCo held fraction of 1,000 samples 0.32 -> 0.74 / 0.76
#: (sampling seeds 0 / 1) for a higher FHID (89 -> 121, the floor's 75) and lower recall (0.55 -> 0.39);
#: docs/results_object.md, "What the fewer steps did: the initial weights in the average".
OBJECT_TEMPERATURE = 0.3


@dataclasses.dataclass
class SamplerSettings:
    """All sampler options and their defaults (the ONE place for them: the CLI and the benchmarks read these).

    APG fields (see :mod:`interhandgen.generation.apg`): ``apg_weight`` is the first-order fraction of the
    penetration penalty removed by the last step (0 disables APG), ``apg_decay`` its factor per step back,
    ``apg_last_steps`` how many final steps are guided, ``apg_points`` the surface subset size per hand,
    ``apg_margin`` the bounding-box prefilter (metres), ``apg_max_step`` the trust region (standardised units).
    """

    # 20 DDIM steps: on the bundled model as good as 42 (docs/results.md) in half the denoiser time, which pays
    # for contact settling (10,000 pairs with APG and settling: 148 s vs 183 s on the 2-core CPU).
    steps: int = 20
    # DDIM steps of stage 1 (the anchor) alone; None: ``steps``. Stage 1 costs one forward of B rows per step and
    # no guidance, so it can take more steps than the guided partner stage. 50: with 20 the sampled anchors are
    # under-dispersed and most of the FHID gap is the anchor stage's; on the bundled model (5,000 pairs, network +
    # APG) FHID 7.46 -> 3.48 (seed 1; 129 steps: 3.91, and 6.92 -> 3.45 with seed 0), category TV 0.089 -> 0.074,
    # C2ST 0.631 -> 0.619, for 1.6x the network-stage CPU (docs/prior_experiments.md). Since 2026-12-06 25 steps
    # of the second-order solver (anchor_solver below), which match or beat 50 DDIM steps on the v model at half
    # their cost (docs/prior_experiments.md, "A second-order anchor stage"). The object sampler keeps None (not
    # measured there).
    anchor_steps: int | None = 25
    # 1.0 (stochastic DDIM; the reference uses 0): on 10,000 bundled-model pairs (seed 0, with settling at 20 mm) FHID
    # 7.6 +- 1.7 vs 18.2 +- 8.1 with eta 0, recall 0.93 vs 0.81, precision 0.94 vs 0.93 (docs/results.md).
    eta: float = 1.0
    # Scale of every Gaussian draw of the reverse process, the initial noise included (diffusion.samplers.ddim_sample;
    # both stages). 1: the model's own distribution; below 1 the samples gather nearer the modes. The object
    # sampler's default is OBJECT_TEMPERATURE above.
    temperature: float = 1.0
    # 0: the conditional prediction alone. The reference uses 0.1; on the bundled model 0.1 pushed the hands apart
    # (proximity ratio 0.838 -> 0.782, contact rate after settling 0.811 -> 0.759 on 1,000 pairs; precision 0.929
    # vs 0.921), see docs/diffusion.md. --cfg-scale 0.1 reproduces the reference setting.
    cfg_scale: float = 0.0
    cfg_dims: tuple[int, int] = (RIGID_SLICE.start, RIGID_SLICE.stop)  # [start, stop) of the guided dimensions
    apg_weight: float = 1.5
    apg_decay: float = 0.9
    apg_rho: float = 0.05
    apg_last_steps: int | None = 3
    apg_points: int = 192
    apg_margin: float = 0.005
    apg_max_step: float = 1.0
    # Contact (attraction) guidance: the APG hook's loss gains contact_weight x (gap - touch)^2 for pairs whose
    # surface subsets are closer than contact_attract_mm but farther than contact_touch_mm (generation.apg);
    # 0 disables it. apg_iters: Polyak steps per guided reverse step. apg_keep_noise: the reverse update keeps
    # the noise implied by the unguided prediction (the guidance moves x_{t-1} by sqrt(abar_{t-1}) times its x0
    # step) instead of re-deriving it from the guided x0 (which cancels part of the step).
    contact_weight: float = 0.0
    contact_attract_mm: float = 20.0
    contact_touch_mm: float = 1.0
    apg_iters: int = 1
    apg_keep_noise: bool = False
    # Weight of the inscribed-sphere overlap term in the guidance (deep overlaps the nearest-point test misses;
    # settling's proxy term on x0); 0 disables it.
    apg_proxy_weight: float = 0.0
    same_noise: bool = True  # the reference starts stage 2 from the anchor's initial noise
    update: str = "ddim"  # or "reference"
    # The anchor stage's solver (diffusion.samplers.SOLVERS): "ddim", or "dpmpp2m", DPM-Solver++(2M), the
    # second-order form of the DDIM step (its SDE form at eta 1, its ODE form at eta 0; other eta and the reference
    # update need "ddim"). The guided partner stage keeps DDIM steps.
    anchor_solver: str = "dpmpp2m"
    # Contact settling after the last step (interhandgen.generation.settle): pairs closer than settle_attract_mm
    # are moved rigidly into touch without penetration; 0 steps disables it.
    settle_steps: int = 80
    # 20 mm (15 mm before commit eb693ea, 2026-12-03): in the data 99.8% of the pairs touch (< 2 mm) or lie farther than 15 mm apart,
    # and under 0.7% of all pairs are no-contact pairs within 20 mm; with eta 1 the model leaves 3.6% of its pairs
    # 15-20 mm apart, so 15 mm gave contact rate 0.868 vs the test split's 0.915 and 20 mm gives 0.909 / 0.905
    # (seeds 0 / 1, 10,000 pairs; docs/diffusion.md, radius sweep).
    settle_attract_mm: float = 20.0
    settle_points: int = 768
    # Resampling: partners still interpenetrating deeper than resample_depth_mm after settling (or whose inscribed
    # spheres overlap) are drawn again from fresh noise, up to resample_rounds times (each round judges only the
    # partners drawn in the previous one); 0 disables it. Three rounds: on 10,000 bundled-model pairs the mean
    # penetration volume fell from 0.0131 (one round) to 0.0018 cm^3 (the test split: 0.0107), because 10 pairs
    # whose second draw also interpenetrated held 83% of it; contact rate 0.879 both; 70 s vs 67 s
    # (docs/diffusion.md).
    resample_rounds: int = 3
    resample_depth_mm: float = 1.0

    @property
    def stage1_steps(self) -> int:
        """DDIM steps of the anchor stage: ``anchor_steps``, or ``steps`` when it is None."""
        return self.steps if self.anchor_steps is None else self.anchor_steps

    def anchor_steps_for(self, num_timesteps: int) -> int:
        """The anchor stage's DDIM steps for a schedule of ``num_timesteps``: :attr:`stage1_steps`, except that the
        DEFAULT ``anchor_steps`` on a schedule shorter than it runs every step of that schedule (a model trained
        with T < 50). Any other value larger than T raises in the sampler, as ``steps`` does."""
        if self.anchor_steps == SamplerSettings.anchor_steps and self.anchor_steps > num_timesteps:
            return num_timesteps
        return self.stage1_steps

    def validate(self) -> None:
        if self.steps < 1:
            raise InputError(f"steps must be >= 1, got {self.steps}")
        if self.anchor_steps is not None and self.anchor_steps < 1:
            raise InputError(f"anchor_steps must be >= 1 or None (the same as steps), got {self.anchor_steps}")
        if self.anchor_solver not in SOLVERS:
            raise InputError(f"anchor_solver must be one of {SOLVERS}, got {self.anchor_solver!r}")
        if self.anchor_solver == "dpmpp2m" and (self.eta not in (0.0, 1.0) or self.update != "ddim"):
            raise InputError(f"anchor_solver 'dpmpp2m' exists for eta 0 or 1 and update 'ddim', got eta = {self.eta}, "
                             f"update = {self.update!r}; set anchor_solver='ddim'")
        check_temperature(self.temperature)
        if not self.cfg_scale >= 0:  # also NaN
            raise InputError(f"cfg_scale must be >= 0, got {self.cfg_scale}")
        if not 0 <= self.apg_weight <= 2:
            raise InputError(f"apg_weight must lie in [0, 2] (0 disables APG), got {self.apg_weight}")
        if not 0 < self.apg_decay <= 1:
            raise InputError(f"apg_decay must lie in (0, 1], got {self.apg_decay}")
        if self.apg_last_steps is not None and self.apg_last_steps < 1:
            raise InputError(f"apg_last_steps must be >= 1 or None (all steps), got {self.apg_last_steps}")
        if self.apg_points < 1:
            raise InputError(f"apg_points must be >= 1, got {self.apg_points}")
        if self.apg_margin < 0 or self.apg_max_step <= 0 or self.apg_rho <= 0:
            raise InputError(f"apg_margin must be >= 0, apg_max_step and apg_rho > 0; got {self.apg_margin}, "
                             f"{self.apg_max_step}, {self.apg_rho}")
        if not self.contact_weight >= 0 or not 0 <= self.contact_touch_mm < self.contact_attract_mm:
            raise InputError(f"contact_weight must be >= 0 and 0 <= contact_touch_mm < contact_attract_mm, got "
                             f"{self.contact_weight}, {self.contact_touch_mm}, {self.contact_attract_mm}")
        if not self.apg_proxy_weight >= 0:
            raise InputError(f"apg_proxy_weight must be >= 0, got {self.apg_proxy_weight}")
        if self.apg_iters < 1:
            raise InputError(f"apg_iters must be >= 1, got {self.apg_iters}")
        if self.settle_steps < 0:
            raise InputError(f"settle_steps must be >= 0 (0 disables contact settling), got {self.settle_steps}")
        if self.resample_rounds < 0 or not self.resample_depth_mm > 0:
            raise InputError(f"resample_rounds must be >= 0 and resample_depth_mm > 0, got {self.resample_rounds}, "
                             f"{self.resample_depth_mm}")
        if not self.settle_attract_mm > 0 or self.settle_points < 1:
            raise InputError(f"settle_attract_mm must be > 0 and settle_points >= 1, got {self.settle_attract_mm}, "
                             f"{self.settle_points}")
        if not (0 <= self.cfg_dims[0] < self.cfg_dims[1] <= HAND_DIM):
            raise InputError(f"cfg_dims must be a [start, stop) range within 0..{HAND_DIM}, got {self.cfg_dims}")


def _partner(net, a_std, a_raw, noise, schedule, settings, mean, std, make_apg, settle, gen) -> torch.Tensor:
    """Raw partner vectors [b, 64] for the anchors: the guided conditional stage, then settling."""
    hook = make_apg(a_raw) if (make_apg is not None and settings.apg_weight > 0) else None
    o_std = sample_partner(net, a_std, noise, schedule, settings, x0_guidance=hook, generator=gen)
    o_raw = o_std * std[1] + mean[1]
    if settle is not None and settings.settle_steps > 0:
        with torch.enable_grad():
            o_raw = settle(a_raw, o_raw)
    return o_raw


@torch.no_grad()
def sample_anchor(net: nn.Module, noise: torch.Tensor, schedule: Schedule, settings: SamplerSettings,
                  stats_mean: torch.Tensor, stats_std: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Stage 1: standardised anchor vectors [B, 64], with the canonical rotation/translation imposed."""
    x = ddim_sample(unconditional(net), noise, schedule, settings.anchor_steps_for(schedule.num_timesteps),
                    eta=settings.eta, generator=generator, temperature=settings.temperature,
                    update=settings.update, solver=settings.anchor_solver)
    tail = (CANONICAL_TAIL.to(x) - stats_mean[RIGID_SLICE]) / stats_std[RIGID_SLICE]
    x = x.clone()
    x[:, RIGID_SLICE] = tail
    return x


@torch.no_grad()
def sample_partner(net: nn.Module, anchor_std: torch.Tensor, noise: torch.Tensor, schedule: Schedule,
                   settings: SamplerSettings, x0_guidance: Callable | None = None,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Stage 2: standardised vectors [B, 64] of the other hand given standardised anchors [B, 64].

    With ``cfg_scale`` 0 the guided prediction equals the conditional one: the unconditional forward is skipped.
    """
    if settings.cfg_scale == 0:
        denoise = conditional(net)
    else:
        denoise = classifier_free_guidance(net, settings.cfg_scale, settings.cfg_dims)
    return ddim_sample(denoise, noise, schedule, settings.steps, eta=settings.eta, cond=anchor_std,
                       temperature=settings.temperature,
                       generator=generator, update=settings.update, x0_guidance=x0_guidance,
                       guidance_keeps_noise=settings.apg_keep_noise)


def cascaded_sample(
    net: nn.Module,
    schedule: Schedule,
    stats_mean: torch.Tensor,
    stats_std: torch.Tensor,
    num: int,
    settings: SamplerSettings,
    *,
    make_apg: Callable[[torch.Tensor], Callable] | None = None,
    settle: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    reject: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    anchors: torch.Tensor | None = None,
    seed: int = 0,
    batch_size: int = 2500,
    device: str | torch.device = "cpu",
    progress: bool = True,
    batch_offset: int = 0,
) -> torch.Tensor:
    """Sample ``num`` pairs; returns RAW (de-standardised) canonical vectors [num, 2, 64], anchor first.

    Args:
        stats_mean, stats_std: [2, 64] standardisation statistics (anchor row, other row).
        make_apg: given the raw anchor vectors of a batch [b, 64], returns the x0-guidance hook for stage 2
            (or None); used for anti-penetration guidance.
        settle: ``settle(anchor_raw [b, 64], other_raw [b, 64]) -> other_raw`` applied to every batch's result
            when ``settings.settle_steps > 0`` (contact settling, :func:`interhandgen.generation.settle_contact`).
        reject: ``reject(anchor_raw, other_raw) -> bool [b]``; with ``settings.resample_rounds > 0`` the rejected
            partners are sampled again (fresh noise from the batch's generator, same guidance and settling).
        anchors: optional RAW anchor vectors [num, 64] to complete (stage 1 is skipped).
        seed: batch i uses a generator seeded from (seed, batch_offset + i): the same (seed, batch_size) gives
            identical output, also when the batches are shared among processes (batch_offset).
    """
    settings.validate()
    device = torch.device(device)
    mean, std = stats_mean.to(device), stats_std.to(device)
    net = net.to(device).eval()
    out = torch.empty(num, 2, HAND_DIM, device=device)
    bar = tqdm(total=num, desc="sample", unit="pair", disable=not progress)
    for bi, start in enumerate(range(0, num, batch_size)):
        b = min(batch_size, num - start)
        gen = torch.Generator().manual_seed(derived_seed(seed, batch_offset + bi))
        z = torch.randn(b, HAND_DIM, generator=gen).to(device)
        if anchors is None:
            a_std = sample_anchor(net, z, schedule, settings, mean[0], std[0], generator=gen)
        else:
            a_std = (anchors[start:start + b].to(device) - mean[0]) / std[0]
        a_raw = a_std * std[0] + mean[0]
        z2 = z if settings.same_noise else torch.randn(b, HAND_DIM, generator=gen).to(device)
        o_raw = _partner(net, a_std, a_raw, z2, schedule, settings, mean, std, make_apg, settle, gen)
        if reject is not None and settings.resample_rounds > 0:
            # Only the partners drawn in the previous round are judged again: the others have not changed.
            judge = torch.arange(b, device=device)
            for _ in range(settings.resample_rounds):
                bad = judge[torch.nonzero(reject(a_raw[judge], o_raw[judge])).squeeze(1)]
                if bad.numel() == 0:
                    break
                judge = bad
                fresh = torch.randn(bad.numel(), HAND_DIM, generator=gen).to(device)
                o_raw = o_raw.clone()
                o_raw[bad] = _partner(net, a_std[bad], a_raw[bad], fresh, schedule, settings, mean, std, make_apg,
                                      settle, gen)
        out[start:start + b, 0] = a_raw
        out[start:start + b, 1] = o_raw
        bar.update(b)
    bar.close()
    if not torch.isfinite(out).all():
        raise FloatingPointError("sampling produced NaN or inf; check the checkpoint and guidance weights")
    return out
