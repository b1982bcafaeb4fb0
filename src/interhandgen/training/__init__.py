"""Training of the shared two-stage denoiser: config, loop, checkpoints."""

from interhandgen.training.checkpoint import export_model, load_checkpoint, read_exported_model
from interhandgen.training.config import TrainConfig
from interhandgen.training.trainer import TrainResult, diffusion_loss, train

__all__ = ["TrainConfig", "TrainResult", "train", "diffusion_loss", "export_model", "load_checkpoint",
           "read_exported_model"]
