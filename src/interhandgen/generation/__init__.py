"""Sampling trained models: the high-level :class:`InterHandGen` API, the cascade, anti-penetration guidance
(APG), contact settling, resampling, the single-stage samplers of the baseline kinds, and sharding under torchrun.

Naming: *classifier-free guidance* (CFG) is :mod:`interhandgen.diffusion.cfg`; *anti-penetration guidance* is
:mod:`.apg`; contact settling (:mod:`.settle`) and resampling act on finished samples and are not guidance.
This package never imports :mod:`interhandgen.training`.
"""

from interhandgen.data.canonical import ANCHOR_SIDE
from interhandgen.generation.api import (
    BUNDLED_MODEL,
    InterHandGen,
    LoadedModel,
    bundled_model_path,
    load_model,
    sample_checkpoint,
    sample_model,
)
from interhandgen.generation.apg import AntiPenetrationGuidance, boxes_overlap, surface_penetration_loss
from interhandgen.generation.cascade import CANONICAL_TAIL, SamplerSettings, cascaded_sample, sample_anchor, sample_partner
from interhandgen.generation.settle import SettleConfig, interpenetrating, settle_contact
from interhandgen.generation.sharding import Shards
from interhandgen.generation.single_stage import check_settings, sample_joint, sample_vae
from interhandgen.generation.subset import SubsetHand

__all__ = [
    "ANCHOR_SIDE",
    "AntiPenetrationGuidance",
    "BUNDLED_MODEL",
    "CANONICAL_TAIL",
    "InterHandGen",
    "LoadedModel",
    "SamplerSettings",
    "SettleConfig",
    "Shards",
    "SubsetHand",
    "boxes_overlap",
    "bundled_model_path",
    "cascaded_sample",
    "check_settings",
    "interpenetrating",
    "load_model",
    "sample_anchor",
    "sample_checkpoint",
    "sample_model",
    "sample_joint",
    "sample_partner",
    "sample_vae",
    "settle_contact",
    "surface_penetration_loss",
]
