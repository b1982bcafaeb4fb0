"""The model registry: every model kind with its network builder, training objective and sampler.

``model_config["kind"]``:
- ``"shared"`` (default): the InterHandGen denoiser, ONE network for both stages;
- ``"separate"``: the same architecture twice, one network per stage ("w/o shared network");
- ``"joint"``: one diffusion over both hands jointly ("w/o decomposition");
- ``"vae"``: a two-hand VAE prior.
The remaining keys configure the network (for shared/separate: :class:`interhandgen.models.DenoiserConfig`).

The trainer takes a kind's builder and loss from here; the sampler is named (``SAMPLERS``) rather than
referenced, because the samplers live in :mod:`interhandgen.generation`, one layer above the models.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import torch
from torch import nn

from interhandgen.exceptions import InputError
from interhandgen.models.baselines import JointDenoiser, SeparateStageDenoisers, TwoHandVAE
from interhandgen.models.config import DenoiserConfig
from interhandgen.models.denoiser import build_denoiser
from interhandgen.models.losses import diffusion_loss, joint_loss, vae_loss
from interhandgen.models.losses_geometry import PartnerGeometry

#: What a kind's sampler is (implemented in :mod:`interhandgen.generation`): the cascade (anchor, then the
#: conditioned partner), one reverse diffusion over both hands, or one decoder pass.
SAMPLERS = ("cascaded", "joint", "decoder")

# Keys of a model config that configure the training objective, not the network.
_OBJECTIVE_KEYS = ("kind", "kl_weight")


@dataclasses.dataclass(frozen=True)
class ModelKind:
    """One registered kind: ``build(params) -> nn.Module`` from the network keys of the model config,
    ``loss(net, batch, schedule, train_cfg, generator, model_config) -> (total, part 1, part 2)``, the sampler."""

    name: str
    build: Callable[[dict[str, Any]], nn.Module]
    loss: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
    sampler: str

    @property
    def cascaded(self) -> bool:
        return self.sampler == "cascaded"


def _shared(params: dict[str, Any]) -> nn.Module:
    return build_denoiser(DenoiserConfig.from_dict(params))


def _separate(params: dict[str, Any]) -> nn.Module:
    return SeparateStageDenoisers(build_denoiser(DenoiserConfig.from_dict(params)),
                                  build_denoiser(DenoiserConfig.from_dict(params)))


def _cascaded_loss(net, batch, schedule, cfg, generator, model_config, geometry=None):
    return diffusion_loss(net, batch, schedule, cfg, generator, geometry)


def _joint_loss(net, batch, schedule, cfg, generator, model_config, geometry=None):
    return joint_loss(net, batch, schedule, cfg, generator)


def _vae_loss(net, batch, schedule, cfg, generator, model_config, geometry=None):
    return vae_loss(net, batch, float(model_config.get("kl_weight", 1e-2)), cfg, generator)


REGISTRY: dict[str, ModelKind] = {
    "shared": ModelKind("shared", _shared, _cascaded_loss, "cascaded"),
    "separate": ModelKind("separate", _separate, _cascaded_loss, "cascaded"),
    "joint": ModelKind("joint", lambda p: JointDenoiser(**p), _joint_loss, "joint"),
    "vae": ModelKind("vae", lambda p: TwoHandVAE(**p), _vae_loss, "decoder"),
}
KINDS = tuple(REGISTRY)
CASCADED_KINDS = tuple(k for k, v in REGISTRY.items() if v.cascaded)


def model_kind(model_config: dict[str, Any]) -> str:
    kind = model_config.get("kind", "shared")
    if kind not in REGISTRY:
        raise InputError(f"model.kind must be one of {KINDS}, got {kind!r}")
    return kind


def registered(model_config: dict[str, Any]) -> ModelKind:
    """The registry entry of a model config's kind."""
    return REGISTRY[model_kind(model_config)]


def build_model(model_config: dict[str, Any]) -> nn.Module:
    """The (untrained) network of a model config."""
    entry = registered(model_config)
    params = {k: v for k, v in model_config.items() if k not in _OBJECTIVE_KEYS}
    if entry.cascaded:
        return entry.build(params)  # DenoiserConfig.from_dict names the offending key itself
    try:
        return entry.build(params)
    except TypeError as exc:  # an unknown or missing keyword of the network's constructor
        raise InputError(f"model config for kind {entry.name!r}: {exc}") from None


def uses_geometry(cfg) -> bool:
    """Whether a training config asks for the geometric terms of the objective."""
    return getattr(cfg, "geometry_weight", 0.0) > 0 or getattr(cfg, "contact_weight", 0.0) > 0


def check_objective(model_config: dict[str, Any], cfg) -> None:
    """Refuse objective options the model config's kind does not implement (they would be silently ignored)."""
    kind = model_kind(model_config)
    if REGISTRY[kind].cascaded:
        return
    if uses_geometry(cfg) or getattr(cfg, "loss_weighting", "uniform") != "uniform":
        raise InputError(f"train.loss_weighting / geometry_weight / contact_weight are options of the cascaded "
                         f"kinds {CASCADED_KINDS}, not of kind {kind!r}")


def objective_loss(model_config: dict[str, Any], net: nn.Module, batch: torch.Tensor, schedule, cfg,
                   generator: torch.Generator, geometry: PartnerGeometry | None = None):
    """The training loss of the model config's kind: (total, part 1, part 2). ``geometry``: the
    :class:`PartnerGeometry` the geometric terms of the cascaded kinds need (see
    :func:`interhandgen.training.objective_geometry`)."""
    return registered(model_config).loss(net, batch, schedule, cfg, generator, model_config, geometry)
