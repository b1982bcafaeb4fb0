"""Wiring of the training objective's geometric terms to the training data's hand models.

The terms themselves are part of the objective (:mod:`interhandgen.models.losses_geometry`); they need the
hand surfaces as differentiable functions of the canonical vectors, which the vertex-subset layer
(:class:`interhandgen.generation.SubsetHand`, one layer above the models) provides.
"""

from __future__ import annotations

import torch

from interhandgen.data.canonical import ANCHOR_SIDE
from interhandgen.data.format import HandModelSpec
from interhandgen.exceptions import InputError
from interhandgen.generation import SubsetHand
from interhandgen.models import PartnerGeometry, uses_geometry

__all__ = ["objective_geometry"]

# Anchor points the partner's signed distances are measured against (about 8 mm apart on the open hand).
ANCHOR_POINTS = 384


def objective_geometry(cfg, hand_model: HandModelSpec | None, stats_mean: torch.Tensor, stats_std: torch.Tensor,
                       device: torch.device | str = "cpu") -> PartnerGeometry | None:
    """The :class:`PartnerGeometry` a training config needs (None when it uses no geometric term).

    Args:
        cfg: :class:`interhandgen.training.TrainConfig` (``geometry_weight``, ``contact_weight``,
            ``geometry_points``, ``contact_band_mm``).
        hand_model: the training data's hand model (both sides are loaded in PCA pose space).
        stats_mean, stats_std: [2, 64] standardisation statistics of the training pairs.
    """
    if not uses_geometry(cfg):
        return None
    if hand_model is None:
        raise InputError("train.geometry_weight / contact_weight need the training data's hand model "
                         "(train(..., hand_model=...))")
    layers = hand_model.load("pca", False, device=device)
    other = "right" if ANCHOR_SIDE == "left" else "left"
    return PartnerGeometry(SubsetHand(layers[ANCHOR_SIDE], ANCHOR_POINTS).to(device),
                           SubsetHand(layers[other], cfg.geometry_points).to(device),
                           stats_mean.to(device), stats_std.to(device), contact_band=cfg.contact_band_mm / 1000.0)
