"""The entry points: build a prior from a model file and fit observations with it."""

from __future__ import annotations

from pathlib import Path

import torch

from interhandgen.data.format import HandModelSpec
from interhandgen.exceptions import InputError, ModelMismatchError
from interhandgen.fitting._model import load_prior_model
from interhandgen.fitting.fit import Fitter, FitResult, FitSettings
from interhandgen.fitting.observations import Observations
from interhandgen.fitting.priors import PRIORS, DiffusionPrior, GaussianPrior, NoPrior, VAEPrior

# Prior weights per prior (FitSettings.prior_weight when not given), chosen on the validation split
# (docs/fitting.md, "Tuning").
DEFAULT_PRIOR_WEIGHTS = {"interhandgen": 20.0, "vae": 20.0, "gaussian": 20.0, "none": 0.0}
# Weight at the end of stage 2 (FitSettings.prior_weight_end; None: constant).
DEFAULT_PRIOR_WEIGHTS_END: dict[str, float | None] = {"interhandgen": 1.0, "vae": 1.0, "gaussian": 1.0, "none": None}
# Further FitSettings fields per prior: the interhandgen prior runs its ScoreHMR-style guided projection at 0.3 of
# stage 2 (validation split, docs/fitting.md, "Guided projection with the v model").
DEFAULT_PRIOR_FIELDS: dict[str, dict] = {"interhandgen": {"guided_at": 0.3, "guided_t": 0.1, "guided_inner": 10}}
DEFAULT_VARIANT = "dposer"
# Weight of the partner's relative rotation and translation numbers in the two-hand priors' terms when only 2D
# keypoints are observed (the fit uses 1 where 3D joints or an initial estimate place the hands: with 3D joints a
# weight of 5 made task b worse), chosen on the validation split (docs/fitting.md, "Weighting the relative placement").
DEFAULT_PLACEMENT_WEIGHTS = {"interhandgen": 5.0, "vae": 5.0}
DEFAULT_T_RANGE = (0.02, 0.3)  # fractions of T between which the interhandgen prior noises the estimate


def make_prior(name: str, checkpoint: str | Path | None = None, device: str | torch.device = "cpu",
               variant: str = DEFAULT_VARIANT, hand_model: HandModelSpec | None = None,
               t_range: tuple[float, float] = DEFAULT_T_RANGE, placement_weight: float | None = None
               ) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """(prior module, stats mean [2, 64], stats std [2, 64]).

    ``placement_weight`` (``interhandgen`` and ``vae``; None: DEFAULT_PLACEMENT_WEIGHTS) weighs the partner's
    relative rotation and translation numbers in the prior's term.

    ``interhandgen``: a cascaded model file (kind shared/separate; default the bundled model). ``vae``: a model file
    of kind vae (required). ``gaussian`` and ``none`` use the statistics of ``checkpoint`` (default the bundled
    model): the Gaussian's mean and scales, and the mean placement of an unobserved hand. Every prior needs a model
    file of the fitted ``hand_model`` (ModelMismatchError otherwise), except ``none`` without a ``checkpoint``:
    it takes only the bundled model's mean relative placement, with the fitted model's own mean pose and shape.
    """
    if name not in PRIORS:
        raise InputError(f"prior must be one of {PRIORS}, got {name!r}")
    if name == "vae" and checkpoint is None:
        raise InputError("the vae prior needs --checkpoint: a model file trained with a kind: vae config "
                         "(configs/baselines/vae.yaml; docs/fitting.md gives the command)")
    model = load_prior_model(checkpoint, device)
    mean, std = model.stats_mean, model.stats_std
    if model.artifact is not None:  # the fitted hands must use the hand model the prior was trained with
        try:
            model.artifact.resolve_hand_model(hand_model)
        except ModelMismatchError as exc:
            if name != "none" or checkpoint is not None:
                raise ModelMismatchError(f"{exc}. The {name!r} prior's statistics are in that hand model's pose space: "
                                         "fit with it, or pass --checkpoint / checkpoint= a model file trained on "
                                         "pairs of the fitted hand model") from None
            # `none` uses the statistics only to place a hand never observed: the other hand's mean relative
            # placement (the hand models are MANO-compatible) in the fitted model's own mean pose and shape (0)
            mean = mean.clone()
            mean[:, :55] = 0.0
    kind = model.kind
    if placement_weight is not None and name not in DEFAULT_PLACEMENT_WEIGHTS:
        raise InputError(f"placement_weight weighs a two-hand prior's relative placement (interhandgen, vae); the "
                         f"{name!r} prior has none")
    placement = DEFAULT_PLACEMENT_WEIGHTS.get(name, 1.0) if placement_weight is None else placement_weight
    if name == "interhandgen":
        if kind not in ("shared", "separate"):
            raise ModelMismatchError(f"{model.source}: the interhandgen prior needs a cascaded model (kind shared or "
                                     f"separate), this file holds kind {kind!r}")
        schedule = model.schedule()
        return (DiffusionPrior(model.net, mean, std, schedule, variant=variant, t_range=t_range,
                               placement_weight=placement), mean, std)
    if name == "vae":
        if kind != "vae":
            raise ModelMismatchError(f"{model.source}: the vae prior needs a model file of kind 'vae', got {kind!r}")
        return VAEPrior(model.net, mean, std, placement_weight=placement), mean, std
    if name == "gaussian":
        return GaussianPrior(mean, std), mean, std
    return NoPrior(), mean, std


def default_settings(prior: str, **fields) -> FitSettings:
    """FitSettings with the tuned prior weight schedule of ``prior`` (DEFAULT_PRIOR_WEIGHTS[_END]) and its further
    defaults (DEFAULT_PRIOR_FIELDS); ``fields`` override any field (None values are ignored; ``guided=False``
    turns the interhandgen prior's guided projection off)."""
    if prior not in PRIORS:
        raise InputError(f"prior must be one of {PRIORS}, got {prior!r}")
    guided = fields.pop("guided", None)
    base = {"prior_weight": DEFAULT_PRIOR_WEIGHTS[prior], "prior_weight_end": DEFAULT_PRIOR_WEIGHTS_END[prior],
            **DEFAULT_PRIOR_FIELDS.get(prior, {})}
    base.update({k: v for k, v in fields.items() if v is not None})
    if guided is False:
        base["guided_at"] = None
    elif guided is True and base.get("guided_at") is None:
        raise InputError(f"guided=True: the guided projection belongs to the interhandgen prior, not {prior!r} "
                         "(or give guided_at)")
    return FitSettings(**base)


def fit(observations: Observations, prior: str = "interhandgen", checkpoint: str | Path | None = None,
        settings: FitSettings | None = None, hand_model: HandModelSpec | None = None,
        device: str | torch.device = "cpu", variant: str = DEFAULT_VARIANT, progress: bool = True,
        placement_weight: float | None = None) -> FitResult:
    """Fit both hands to ``observations`` with the named prior (see :mod:`interhandgen.fitting.fit`).

    ``settings`` defaults to :func:`default_settings` of the prior; ``placement_weight``: :func:`make_prior`.
    """
    module, mean, std = make_prior(prior, checkpoint, device, variant, hand_model, placement_weight=placement_weight)
    if settings is None:
        settings = default_settings(prior)
    return Fitter(module, mean, std, hand_model, settings, device).fit(observations, progress=progress)
