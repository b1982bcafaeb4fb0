"""Denoising networks: the shared two-stage x0-denoiser, its config, and the reference-checkpoint importer."""

from interhandgen.models.config import NULL_CONDITIONS, DenoiserConfig
from interhandgen.models.denoiser import Denoiser, TokenMLP, build_denoiser, count_parameters, timestep_embedding
from interhandgen.models.reference import (
    import_reference_checkpoint,
    infer_reference_config,
    reference_shapes,
    to_reference_state_dict,
)

__all__ = [
    "DenoiserConfig",
    "NULL_CONDITIONS",
    "Denoiser",
    "TokenMLP",
    "build_denoiser",
    "count_parameters",
    "timestep_embedding",
    "import_reference_checkpoint",
    "infer_reference_config",
    "reference_shapes",
    "to_reference_state_dict",
]
