"""Geometry-aware terms of the training objective and timestep weighting (options of ``train:``).

The x0-prediction loss measures errors in standardised parameter units: a 1 cm error of the partner's
translation, a 10 degree error of its rotation (several cm at the fingertips) and a pose coefficient error all
cost in proportion to their spread over the data, not to what they do to the two surfaces. The terms here
measure the predicted clean partner hand in the anchor's frame through the differentiable hand layer (the
surfaces come from callables the caller builds from the data's hand models, e.g. a vertex subset layer):

- surface-point term: mean squared distance between a fixed, evenly spread subset of the partner's surface
  vertices (which carries its placement, orientation, pose and shape), predicted vs ground truth, in cm^2;
- contact term: for partner surface points lying within ``contact_band`` of the ground-truth anchor's surface,
  the squared difference of their signed distance to that surface (nearest anchor subset point, its outward
  normal's tangent plane: negative inside) predicted vs ground truth, in cm^2. It pulls gaps shut where the data
  touch and pushes penetrating points out where the data do not penetrate.

Both are exactly 0 when the prediction equals the ground truth. Every row's terms are per-sample [B] and are
weighted like the parameter loss (``timestep_weights``). The partner is the right hand, the anchor the left
(:data:`interhandgen.data.canonical.ANCHOR_SIDE`; mirrored pairs keep that assignment).

Timestep weighting (Hang et al., "Efficient Diffusion Training via Min-SNR Weighting Strategy", ICCV 2023): with
x0-prediction, the loss weight equivalent to predicting the noise is SNR_t = abar_t / (1 - abar_t); Min-SNR-gamma
uses min(SNR_t, gamma). Here the weights are divided by their mean over the T timesteps, so the average weight
under uniform timestep draws stays 1 and the learning rate keeps its meaning.
"""

from __future__ import annotations

import torch

from typing import Any, Callable

from interhandgen.diffusion import Schedule
from interhandgen.exceptions import InputError
from interhandgen.geometry.points import gather_rows_deterministic, mutual_nearest

__all__ = ["LOSS_WEIGHTINGS", "timestep_weights", "PartnerGeometry"]

LOSS_WEIGHTINGS = ("uniform", "min_snr", "v")
CM = 0.01  # metres: the geometric terms are reported in cm^2


def timestep_weights(schedule: Schedule, t: torch.Tensor, kind: str, gamma: float = 5.0) -> torch.Tensor:
    """Per-row loss weights [B] for int timesteps t [B] (float64 on t's device).

    ``uniform``: 1. ``min_snr``: min(SNR_t, gamma) / mean_s min(SNR_s, gamma), SNR_t = abar_t / (1 - abar_t).
    ``v``: 1 / (1 - abar_t) = SNR_t + 1, not normalised: the x0 error weighted so is exactly the squared error of
    v = sqrt(abar) eps - sqrt(1 - abar) x0 (the objective of a v-predicting network).
    """
    if kind == "uniform":
        return torch.ones(t.shape[0], dtype=torch.float64, device=t.device)
    if kind == "v":
        return (1.0 / (1.0 - schedule.alphas_cumprod.to(t.device)))[t]
    if kind != "min_snr":
        raise InputError(f"loss_weighting must be one of {LOSS_WEIGHTINGS}, got {kind!r}")
    if not gamma > 0:
        raise InputError(f"min_snr_gamma must be > 0, got {gamma}")
    abar = schedule.alphas_cumprod.to(t.device)
    w = torch.clamp(abar / (1.0 - abar), max=float(gamma))
    return (w / w.mean())[t]


def config_timestep_weights(cfg: Any, schedule: Schedule, t: torch.Tensor) -> torch.Tensor | None:
    """[n] the per-row weights of a training config's ``loss_weighting`` (:func:`timestep_weights` with its
    ``min_snr_gamma``) at timesteps ``t``; None for ``uniform`` (callers then keep the unweighted arithmetic)."""
    weighting = getattr(cfg, "loss_weighting", "uniform")
    if weighting == "uniform":
        return None
    return timestep_weights(schedule, t, weighting, getattr(cfg, "min_snr_gamma", 5.0))


class StandardisedPairs:
    """The standardisation statistics ([2, 64] mean and std, row 0 anchor, row 1 the other hand) and contact band
    shared by the geometric terms on predicted x0 (this module's two-hand terms, the object kind's hand-object terms);
    ``_raw(z, row)`` undoes the standardisation of one row."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, contact_band: float) -> None:
        if tuple(mean.shape) != (2, 64) or tuple(std.shape) != (2, 64):
            raise InputError(f"mean and std must have shape [2, 64], got {list(mean.shape)}, {list(std.shape)}")
        if not contact_band > 0:
            raise InputError(f"contact_band must be > 0 metres, got {contact_band}")
        self.mean, self.std = mean.detach().float(), std.detach().float()
        self.contact_band = float(contact_band)

    def _raw(self, z: torch.Tensor, row: int) -> torch.Tensor:
        return z * self.std[row].to(z) + self.mean[row].to(z)


class PartnerGeometry(StandardisedPairs):
    """Surface points of the partner in the anchor's frame and their signed distances to the anchor's surface,
    from standardised vectors.

    Args:
        anchor_surface, partner_surface: callables ``raw canonical vectors [B, 64] -> (points [B, S, 3], unit
            outward normals [B, S, 3])`` in the canonical two-hand frame, differentiable (e.g.
            :class:`interhandgen.generation.SubsetHand` of the left and right hand layers).
        mean, std: [2, 64] standardisation statistics (row 0 anchor, row 1 partner).
        contact_band: metres; partner points whose ground-truth |signed distance| is below it enter the contact term.
    """

    def __init__(self, anchor_surface: Callable, partner_surface: Callable, mean: torch.Tensor, std: torch.Tensor,
                 contact_band: float = 0.02) -> None:
        super().__init__(mean, std, contact_band)
        self.anchor_surface, self.partner_surface = anchor_surface, partner_surface

    @staticmethod
    def signed_distance(points: torch.Tensor, surface: torch.Tensor, normals: torch.Tensor,
                        idx: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Signed distance [B, P] of points [B, P, 3] to the tangent plane of their nearest surface point
        (surface, normals [B, A, 3]; negative inside), and the nearest indices [B, P] (given or searched)."""
        if idx is None:
            idx, _ = mutual_nearest(points.detach(), surface.detach(), both=False)
        q = gather_rows_deterministic(surface, idx)
        n = gather_rows_deterministic(normals, idx)
        return ((points - q) * n).sum(-1), idx

    def terms(self, pred_other: torch.Tensor, true_other: torch.Tensor, anchor: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """(surface-point term [B], contact term [B]) in cm^2 for standardised vectors [B, 64] (partner predicted,
        partner true, anchor true). Differentiable w.r.t. ``pred_other``; 0 where it equals ``true_other``."""
        for name, z in (("pred_other", pred_other), ("true_other", true_other), ("anchor", anchor)):
            if z.dim() != 2 or z.shape[1] != 64 or z.shape[0] != pred_other.shape[0]:
                raise InputError(f"{name} must have shape [B, 64] with one B, got {list(z.shape)}")
        pts_pred, _ = self.partner_surface(self._raw(pred_other, 1))
        with torch.no_grad():
            pts_true, _ = self.partner_surface(self._raw(true_other, 1))
            a_pts, a_nrm = self.anchor_surface(self._raw(anchor, 0))
            s_true, idx = self.signed_distance(pts_true, a_pts, a_nrm)
        points = ((pts_pred - pts_true) ** 2).sum(-1).mean(1) / CM**2
        # The ground truth's nearest anchor point is kept for the prediction: the term then compares the same two
        # surface patches and is smooth in the prediction.
        s_pred, _ = self.signed_distance(pts_pred, a_pts, a_nrm, idx)
        band = (s_true.abs() < self.contact_band).to(s_pred.dtype)
        contact = (((s_pred - s_true) ** 2) * band).sum(1) / band.sum(1).clamp(min=1.0) / CM**2
        return points, contact
