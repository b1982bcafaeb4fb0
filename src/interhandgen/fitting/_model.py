"""The one module of :mod:`interhandgen.fitting` that imports the model-file loaders, the model registry and the
sampling-time guidance machinery (surface subsets, the surface penetration penalty).

Keeping these imports in one place keeps a move of the generation / model packages a one-file edit.
"""

from __future__ import annotations

from pathlib import Path

import torch

from interhandgen.baselines import model_kind
from interhandgen.baselines.networks import TwoHandVAE
from interhandgen.guidance import SubsetHand, canonical_vertices, surface_penetration_loss
from interhandgen.pipeline import LoadedModel, bundled_model_path, load_model, schedule_from_train_config

__all__ = ["LoadedModel", "load_prior_model", "model_kind", "schedule_from_train_config", "bundled_model_path",
           "write_model_file", "TwoHandVAE",
           "SubsetHand", "canonical_vertices", "surface_penetration_loss"]


def load_prior_model(path: str | Path | None, device: str | torch.device) -> LoadedModel:
    """A trained model file (run folder, checkpoint.pt or model.safetensors; None: the bundled model), frozen."""
    model = load_model(path, device)
    for p in model.net.parameters():
        p.requires_grad_(False)
    return model


def write_model_file(state_dict, model_config, stats_mean, stats_std, path) -> str:
    """Write a model file (safetensors) that :func:`load_prior_model` reads; returns its SHA-256."""
    from interhandgen.training.checkpoint import export_model

    return export_model(state_dict, model_config, stats_mean, stats_std, path)
