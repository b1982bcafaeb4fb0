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
from interhandgen.models import HandObjectGeometry, PartnerGeometry, uses_geometry, uses_object_geometry

__all__ = ["objective_geometry"]

# Anchor points the partner's signed distances are measured against (about 8 mm apart on the open hand).
ANCHOR_POINTS = 384


def objective_geometry(cfg, hand_model: HandModelSpec | None, stats_mean: torch.Tensor, stats_std: torch.Tensor,
                       device: torch.device | str = "cpu") -> PartnerGeometry | HandObjectGeometry | None:
    """The :class:`PartnerGeometry` (two-hand terms) or :class:`HandObjectGeometry` (hand-object terms of the object
    kind) a training config needs (None when it uses no geometric term; ``check_objective`` has refused the terms a
    model kind does not implement).

    Args:
        cfg: :class:`interhandgen.training.TrainConfig` (``geometry_weight``, ``contact_weight``,
            ``geometry_points``, ``contact_band_mm``; ``object_penetration_weight``, ``object_contact_weight``,
            ``object_geometry_points``, ``object_contact_band_mm``).
        hand_model: the training data's hand model (both sides are loaded in PCA pose space).
        stats_mean, stats_std: [2, 64] standardisation statistics of the training pairs.
    """
    if uses_geometry(cfg) and uses_object_geometry(cfg):
        raise InputError("train.geometry_weight / contact_weight (two hands) and object_penetration_weight / "
                         "object_contact_weight (hands and object) belong to different model kinds: set one pair")
    if not uses_geometry(cfg) and not uses_object_geometry(cfg):
        return None
    if hand_model is None:
        raise InputError("train.geometry_weight / contact_weight / object_penetration_weight / object_contact_weight "
                         "need the training data's hand model (train(..., hand_model=...))")
    layers = hand_model.load("pca", False, device=device)
    other = "right" if ANCHOR_SIDE == "left" else "left"
    if uses_object_geometry(cfg):
        n = cfg.object_geometry_points
        return HandObjectGeometry(SubsetHand(layers[ANCHOR_SIDE], n).to(device), SubsetHand(layers[other], n).to(device),
                                  stats_mean.to(device), stats_std.to(device),
                                  contact_band=cfg.object_contact_band_mm / 1000.0)
    return PartnerGeometry(SubsetHand(layers[ANCHOR_SIDE], ANCHOR_POINTS).to(device),
                           SubsetHand(layers[other], cfg.geometry_points).to(device),
                           stats_mean.to(device), stats_std.to(device), contact_band=cfg.contact_band_mm / 1000.0)
