"""Guidance for the reverse diffusion: anti-penetration guidance, contact settling, sampled hand surfaces,
canonical decoding."""

from interhandgen.guidance.apg import (
    AntiPenetrationGuidance,
    boxes_overlap,
    canonical_vertices,
    mutual_nearest,
    surface_penetration_loss,
)
from interhandgen.guidance.settle import SettleConfig, interpenetrating, settle_contact
from interhandgen.guidance.subset import SubsetHand, farthest_point_indices

__all__ = [
    "AntiPenetrationGuidance",
    "SettleConfig",
    "SubsetHand",
    "boxes_overlap",
    "canonical_vertices",
    "farthest_point_indices",
    "interpenetrating",
    "mutual_nearest",
    "settle_contact",
    "surface_penetration_loss",
]
