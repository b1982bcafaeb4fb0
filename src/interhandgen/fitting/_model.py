"""The one module of :mod:`interhandgen.fitting` that imports the model-file loaders, the model registry and the
sampling-time guidance machinery (surface subsets, the surface penetration penalty).

Keeping these imports in one place keeps a move of the generation / model packages a one-file edit.
"""

from __future__ import annotations

from pathlib import Path

import torch

from interhandgen.data.canonical import canonical_vertices
from interhandgen.generation import LoadedModel, SubsetHand, bundled_model_path, load_model, surface_penetration_loss
from interhandgen.models.artifact import export_model
from interhandgen.models.baselines import TwoHandVAE

__all__ = ["LoadedModel", "load_prior_model", "bundled_model_path",
           "write_model_file", "TwoHandVAE",
           "SubsetHand", "canonical_vertices", "surface_penetration_loss"]


def load_prior_model(path: str | Path | None, device: str | torch.device) -> LoadedModel:
    """A trained model file (run folder, checkpoint.pt or model.safetensors; None: the bundled model), frozen."""
    model = load_model(path, device)
    for p in model.net.parameters():
        p.requires_grad_(False)
    return model


def write_model_file(state_dict, model_config, stats_mean, stats_std, path, hand_model=None) -> str:
    """Write a model file (safetensors) that :func:`load_prior_model` reads; returns its SHA-256."""
    return export_model(state_dict, model_config, stats_mean, stats_std, path, hand_model=hand_model)
