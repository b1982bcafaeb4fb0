"""Networks, the model registry (kind -> network, objective, sampler) and the saved-model format."""

from interhandgen.models.artifact import ModelArtifact, export_model, read_model_file
from interhandgen.models.baselines import JointDenoiser, ResidualMLP, SeparateStageDenoisers, TwoHandVAE
from interhandgen.models.config import NULL_CONDITIONS, DenoiserConfig
from interhandgen.models.denoiser import Denoiser, TokenMLP, build_denoiser, count_parameters, timestep_embedding
from interhandgen.models.losses import diffusion_loss, draw_timesteps, joint_loss, vae_loss
from interhandgen.models.losses_geometry import LOSS_WEIGHTINGS, PartnerGeometry, timestep_weights
from interhandgen.models.object_loss import HandObjectGeometry, uses_object_geometry
from interhandgen.models.reference import (
    import_reference_checkpoint,
    infer_reference_config,
    reference_shapes,
    to_reference_state_dict,
)
from interhandgen.models.registry import (
    CASCADED_KINDS,
    KINDS,
    REGISTRY,
    SAMPLERS,
    ModelKind,
    build_model,
    check_objective,
    model_kind,
    objective_loss,
    registered,
    uses_geometry,
)

__all__ = [
    "CASCADED_KINDS",
    "DenoiserConfig",
    "Denoiser",
    "JointDenoiser",
    "KINDS",
    "LOSS_WEIGHTINGS",
    "PartnerGeometry",
    "HandObjectGeometry",
    "ModelArtifact",
    "ModelKind",
    "NULL_CONDITIONS",
    "REGISTRY",
    "ResidualMLP",
    "SAMPLERS",
    "SeparateStageDenoisers",
    "TokenMLP",
    "TwoHandVAE",
    "build_denoiser",
    "build_model",
    "check_objective",
    "count_parameters",
    "diffusion_loss",
    "draw_timesteps",
    "export_model",
    "import_reference_checkpoint",
    "infer_reference_config",
    "joint_loss",
    "model_kind",
    "objective_loss",
    "read_model_file",
    "reference_shapes",
    "registered",
    "timestep_embedding",
    "timestep_weights",
    "to_reference_state_dict",
    "uses_geometry",
    "uses_object_geometry",
    "vae_loss",
]
