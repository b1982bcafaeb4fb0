"""The model registry: every model kind with its network builder, training objective and sampler.

``model_config["kind"]``:
- ``"shared"`` (default): the InterHandGen denoiser, ONE network for both stages;
- ``"separate"``: the same architecture twice, one network per stage ("w/o shared network");
- ``"joint"``: one diffusion over both hands jointly ("w/o decomposition");
- ``"vae"``: a two-hand VAE prior;
- ``"shared_object"``: the shared denoiser with an object token in both stages
  (:class:`interhandgen.models.object_encoder.ObjectConditionedDenoiser`; ``object_encoder:`` configures it,
  ``object_drop_prob`` and ``rotate_z`` its objective, :func:`interhandgen.models.object_loss.object_diffusion_loss`);
- ``"joint_object"``: the joint-diffusion baseline with the object's token
  (:class:`interhandgen.models.object_encoder.JointObjectDenoiser`, :func:`interhandgen.models.object_loss.
  joint_object_loss`).
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
from interhandgen.models.object_encoder import build_joint_object_denoiser, build_object_denoiser
from interhandgen.models.object_loss import (DEFAULT_OBJECT_DROP_PROB, HandObjectGeometry, joint_object_loss,
                                             object_diffusion_loss, uses_object_geometry)

#: What a kind's sampler is (implemented in :mod:`interhandgen.generation`): the cascade (anchor, then the
#: conditioned partner), one reverse diffusion over both hands, or one decoder pass.
SAMPLERS = ("cascaded", "joint", "decoder")

# Keys of a model config that configure the training objective, not the network.
_OBJECTIVE_KEYS = ("kind", "kl_weight", "object_drop_prob", "rotate_z")


@dataclasses.dataclass(frozen=True)
class ModelKind:
    """One registered kind: ``build(params) -> nn.Module`` from the network keys of the model config,
    ``loss(net, batch, schedule, train_cfg, generator, model_config) -> (total, part 1, part 2)``, the sampler."""

    name: str
    build: Callable[[dict[str, Any]], nn.Module]
    loss: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
    sampler: str
    conditioning: tuple[str, ...] = ("hand",)  # the condition slots (model files record them)

    @property
    def uses_object(self) -> bool:
        return "object" in self.conditioning

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


def _object_loss(net, batch, schedule, cfg, generator, model_config, geometry=None, *, points=None, stats=None,
                 has_object=None):
    if geometry is not None and not isinstance(geometry, HandObjectGeometry):
        # check_objective refuses geometry_weight / contact_weight for this kind before training starts
        raise AssertionError("the shared_object objective takes a HandObjectGeometry, not the two-hand terms")
    if points is None or stats is None:
        raise InputError("a 'shared_object' model trains on pairs with objects: the trainer must pass the objects' "
                         "points and the standardisation statistics (interhandgen train does for a set with an "
                         "object library)")
    return object_diffusion_loss(net, batch, schedule, cfg, generator, points=points, stats=stats,
                                 object_drop_prob=float(model_config.get("object_drop_prob", DEFAULT_OBJECT_DROP_PROB)),
                                 rotate_z=bool(model_config.get("rotate_z", True)), geometry=geometry,
                                 has_object=has_object)


def _joint_object_loss(net, batch, schedule, cfg, generator, model_config, geometry=None, *, points=None,
                       stats=None, has_object=None):
    if geometry is not None:
        raise AssertionError("check_objective refuses the geometric terms for kind joint_object")
    if points is None or stats is None:
        raise InputError("a 'joint_object' model trains on pairs with objects: the trainer must pass the objects' "
                         "points and the standardisation statistics")
    return joint_object_loss(net, batch, schedule, cfg, generator, points=points, stats=stats,
                             object_drop_prob=float(model_config.get("object_drop_prob", DEFAULT_OBJECT_DROP_PROB)),
                             rotate_z=bool(model_config.get("rotate_z", True)), has_object=has_object)


REGISTRY: dict[str, ModelKind] = {
    "shared": ModelKind("shared", _shared, _cascaded_loss, "cascaded"),
    "separate": ModelKind("separate", _separate, _cascaded_loss, "cascaded"),
    "joint": ModelKind("joint", lambda p: JointDenoiser(**p), _joint_loss, "joint"),
    "vae": ModelKind("vae", lambda p: TwoHandVAE(**p), _vae_loss, "decoder"),
    "shared_object": ModelKind("shared_object", build_object_denoiser, _object_loss, "cascaded", ("hand", "object")),
    "joint_object": ModelKind("joint_object", build_joint_object_denoiser, _joint_object_loss, "joint",
                              ("hand", "object")),
}
KINDS = tuple(REGISTRY)
CASCADED_KINDS = tuple(k for k, v in REGISTRY.items() if v.cascaded)
# Kinds whose loss implements train.geometry_weight / contact_weight (the two-hand terms), train.loss_weighting, and
# train.object_penetration_weight / object_contact_weight (the hand-object terms).
OBJECTIVE_OPTION_KINDS = ("shared", "separate")
LOSS_WEIGHTING_KINDS = ("shared", "separate", "shared_object", "joint", "joint_object")
OBJECT_GEOMETRY_KINDS = ("shared_object",)


def model_kind(model_config: dict[str, Any]) -> str:
    kind = model_config.get("kind", "shared")
    if kind not in REGISTRY:
        raise InputError(f"model.kind must be one of {KINDS}, got {kind!r}")
    return kind


def registered(model_config: dict[str, Any]) -> ModelKind:
    """The registry entry of a model config's kind."""
    return REGISTRY[model_kind(model_config)]


def build_model(model_config: dict[str, Any], schedule=None) -> nn.Module:
    """The (untrained) network of a model config. ``schedule``: the noise schedule
    (:class:`interhandgen.diffusion.Schedule`), needed by networks that predict v (``prediction: v``)."""
    entry = registered(model_config)
    params = {k: v for k, v in model_config.items() if k not in _OBJECTIVE_KEYS}
    if entry.cascaded:
        net = entry.build(params)  # DenoiserConfig.from_dict names the offending key itself
    else:
        try:
            net = entry.build(params)
        except TypeError as exc:  # an unknown or missing keyword of the network's constructor
            raise InputError(f"model config for kind {entry.name!r}: {exc}") from None
    v_nets = [m for m in net.modules() if getattr(m, "predicts_v", False)]
    if v_nets and schedule is None:
        raise InputError("model.prediction 'v' needs the noise schedule: build_model(model_config, schedule)")
    for m in v_nets:
        m.set_schedule(schedule)
    return net


def uses_geometry(cfg) -> bool:
    """Whether a training config asks for the geometric terms of the objective."""
    return getattr(cfg, "geometry_weight", 0.0) > 0 or getattr(cfg, "contact_weight", 0.0) > 0


def check_objective(model_config: dict[str, Any], cfg) -> None:
    """Refuse objective options the model config's kind does not implement (they would be silently ignored)."""
    kind = model_kind(model_config)
    if uses_geometry(cfg) and kind not in OBJECTIVE_OPTION_KINDS:
        raise InputError(f"train.geometry_weight / contact_weight are options of the kinds {OBJECTIVE_OPTION_KINDS}, "
                         f"not of kind {kind!r}")
    if getattr(cfg, "loss_weighting", "uniform") != "uniform" and kind not in LOSS_WEIGHTING_KINDS:
        raise InputError(f"train.loss_weighting is an option of the kinds {LOSS_WEIGHTING_KINDS}, not of kind {kind!r}")
    if uses_object_geometry(cfg) and kind not in OBJECT_GEOMETRY_KINDS:
        raise InputError(f"train.object_penetration_weight / object_contact_weight are options of the kinds "
                         f"{OBJECT_GEOMETRY_KINDS}, not of kind {kind!r}")


def objective_loss(model_config: dict[str, Any], net: nn.Module, batch: torch.Tensor, schedule, cfg,
                   generator: torch.Generator, geometry: PartnerGeometry | None = None, **extra):
    """The training loss of the model config's kind: (total, part 1, part 2). ``geometry``: the
    :class:`PartnerGeometry` the geometric terms of the cascaded kinds need (see
    :func:`interhandgen.training.objective_geometry`). ``extra``: what a kind's objective needs beyond the pairs
    (an object model: ``points`` [b, P, 6] and ``stats``); not passed to the others."""
    return registered(model_config).loss(net, batch, schedule, cfg, generator, model_config, geometry, **extra)
