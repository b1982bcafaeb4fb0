"""The high-level API: load a trained model, sample two-hand interactions, complete a given hand.

    >>> from interhandgen.generation import InterHandGen
    >>> gen = InterHandGen.load()                      # the bundled model (open hand, synthetic data)
    >>> # a MANO-trained model needs its hand model: InterHandGen.load(path, hand_model=HandModelSpec.mano(DIR))
    >>> pairs = gen.sample(16, seed=0)                 # a TwoHandSet in the world frame, metres
    >>> partners = gen.complete(pairs, side="left")    # resample the right hand of each pair

The model always generates the anchor as the LEFT hand; a given right hand is completed by mirroring it into a
left hand, completing, and mirroring the pair back (exact for the open hand, whose sides are mirror images).
"""

from __future__ import annotations

import dataclasses
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from interhandgen.data.canonical import ANCHOR_SIDE, mirror, to_canonical, to_world
from interhandgen.data.format import HandModelSpec, TwoHandSet
from interhandgen.diffusion import Schedule
from interhandgen.exceptions import InputError, MissingFileError, ModelMismatchError
from interhandgen.generation.apg import AntiPenetrationGuidance
from interhandgen.generation.cascade import SamplerSettings, cascaded_sample
from interhandgen.generation.settle import SettleConfig, interpenetrating, settle_contact
from interhandgen.generation.single_stage import check_settings, sample_joint, sample_vae
from interhandgen.generation.subset import SubsetHand
from interhandgen.models import model_kind, registered
from interhandgen.models.artifact import ModelArtifact, build_network, read_model

BUNDLED_MODEL = "small.safetensors"


def bundled_model_path() -> Path:
    path = Path(str(resources.files("interhandgen") / "checkpoints" / BUNDLED_MODEL))
    if not path.is_file():
        raise MissingFileError(
            f"the bundled model {path} is missing from this installation; reinstall interhandgen or pass "
            "--checkpoint PATH (a run folder, checkpoint.pt or model.safetensors written by `interhandgen train`)"
        )
    return path


@dataclasses.dataclass
class LoadedModel:
    """A model ready to sample: its network (eval mode, on its device), config, statistics [2, 64] and header."""

    net: torch.nn.Module
    model_config: dict[str, Any]
    stats_mean: torch.Tensor
    stats_std: torch.Tensor
    train_config: dict[str, Any]
    source: str
    artifact: ModelArtifact | None = None

    @property
    def kind(self) -> str:
        return model_kind(self.model_config)

    def schedule(self) -> Schedule:
        """The noise schedule the model was trained with."""
        return Schedule.from_config(self.artifact.schedule if self.artifact is not None else self.train_config)

    def hand_model(self, given: HandModelSpec | None = None) -> HandModelSpec:
        """The hand model to decode with: ``given`` checked against the recorded one (see
        :meth:`interhandgen.models.ModelArtifact.resolve_hand_model`); None: the recorded one."""
        if self.artifact is None:
            return given or HandModelSpec.open_hand()
        return self.artifact.resolve_hand_model(given)


def load_model(path: str | Path | None = None, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a model from a model file (.safetensors), a training checkpoint (.pt) or a run folder (EMA weights);
    None: the bundled model."""
    art = read_model(bundled_model_path() if path is None else path)
    net = build_network(art, device)
    return LoadedModel(net, art.model_config, art.stats_mean.float().to(device), art.stats_std.float().to(device),
                       art.train_config, art.source, art)


def apg_factory(anchor: SubsetHand, other: SubsetHand, mean: torch.Tensor, std: torch.Tensor,
                settings: SamplerSettings):
    """``make_apg`` for :func:`interhandgen.generation.cascaded_sample`: raw anchors [b, 64] -> the APG hook.

    mean, std: [64] statistics of the conditioned (other) hand.
    """

    def make(anchor_raw: torch.Tensor) -> AntiPenetrationGuidance:
        return AntiPenetrationGuidance.from_anchors(
            anchor_raw, anchor, other, mean, std, weight=settings.apg_weight, num_steps=settings.steps,
            decay=settings.apg_decay, last_steps=settings.apg_last_steps, rho=settings.apg_rho,
            margin=settings.apg_margin, max_step=settings.apg_max_step, contact_weight=settings.contact_weight,
            touch=settings.contact_touch_mm / 1000.0, attract=settings.contact_attract_mm / 1000.0,
            iters=settings.apg_iters, proxy_weight=settings.apg_proxy_weight)

    return make


def settle_factory(anchor: SubsetHand, other: SubsetHand, settings: SamplerSettings):
    """``settle`` for :func:`interhandgen.generation.cascaded_sample` from the sampler settings (raw vectors), or
    None when settling is off."""
    if settings.settle_steps == 0:
        return None
    config = SettleConfig(attract_mm=settings.settle_attract_mm, steps=settings.settle_steps,
                          points=settings.settle_points)

    def settle(anchor_raw: torch.Tensor, other_raw: torch.Tensor) -> torch.Tensor:
        return settle_contact(anchor_raw, other_raw, anchor, other, config)

    return settle


def reject_factory(anchor: SubsetHand, other: SubsetHand, settings: SamplerSettings):
    """``reject`` for :func:`interhandgen.generation.cascaded_sample` (partners still interpenetrating), or None
    when resampling is off."""
    if settings.resample_rounds == 0:
        return None
    return lambda anchor_raw, other_raw: interpenetrating(anchor_raw, other_raw, anchor, other,
                                                          depth_mm=settings.resample_depth_mm)


class InterHandGen:
    """A trained cascaded two-hand prior bound to its hand model."""

    def __init__(self, model: LoadedModel, hand_model: HandModelSpec | None = None,
                 device: str | torch.device = "cpu", require_cascade: bool = True) -> None:
        # require_cascade False: only the machinery (hand layers, schedule, guidance subsets, settling) for a sampler
        # of another kind (the joint object baseline in interhandgen.generation.object_api)
        if require_cascade and not registered(model.model_config).cascaded:
            raise InputError(f"{model.source}: a {model.kind!r} model has no cascade; sample it with "
                             "interhandgen.generation.sample_model")
        self.model = model
        self.device = torch.device(device)
        self.hand_model = model.hand_model(hand_model)
        self.hands = self.hand_model.load(pose_space="pca", device=self.device)
        self.schedule = model.schedule().to(self.device)
        self._subsets: dict[int, tuple[SubsetHand, SubsetHand]] = {}

    @classmethod
    def load(cls, path: str | Path | None = None, device: str | torch.device = "cpu",
             hand_model: HandModelSpec | None = None) -> "InterHandGen":
        return cls(load_model(path, device), hand_model, device)

    def surface_subsets(self, num_points: int) -> tuple[SubsetHand, SubsetHand]:
        """The (anchor, other) hands' surface subsets used by APG, built once per size."""
        if num_points not in self._subsets:
            self._subsets[num_points] = (SubsetHand(self.hands[ANCHOR_SIDE], num_points),
                                         SubsetHand(self.hands["right"], num_points))
        return self._subsets[num_points]

    def _apg_factory(self, settings: SamplerSettings):
        return apg_factory(*self.surface_subsets(settings.apg_points), self.model.stats_mean[1],
                           self.model.stats_std[1], settings)

    def _settle(self, settings: SamplerSettings):
        return settle_factory(*self.surface_subsets(settings.settle_points), settings)

    def _reject(self, settings: SamplerSettings):
        return reject_factory(*self.surface_subsets(settings.settle_points), settings)

    def sample_canonical(self, num: int, seed: int = 0, settings: SamplerSettings | None = None,
                         batch_size: int = 2500, progress: bool = True,
                         anchors: torch.Tensor | None = None, batch_offset: int = 0) -> torch.Tensor:
        """Raw canonical pairs [num, 2, 64] (anchor = left hand first)."""
        settings = settings or SamplerSettings()
        return cascaded_sample(self.model.net, self.schedule, self.model.stats_mean, self.model.stats_std, num,
                               settings, make_apg=self._apg_factory(settings), settle=self._settle(settings), reject=self._reject(settings),
                               anchors=anchors, seed=seed,
                               batch_size=batch_size, device=self.device, progress=progress,
                               batch_offset=batch_offset)

    def sample(self, num: int, seed: int = 0, settings: SamplerSettings | None = None, batch_size: int = 2500,
               progress: bool = True) -> TwoHandSet:
        """``num`` two-hand interactions in the world frame: the left hand at the origin, unrotated."""
        if num < 1:
            raise InputError(f"num must be >= 1, got {num}")
        settings = settings or SamplerSettings()
        x = self.sample_canonical(num, seed, settings, batch_size, progress)
        return self.to_world(x, seed, settings)

    def to_world(self, x: torch.Tensor, seed: int, settings: SamplerSettings,
                 extra: dict[str, Any] | None = None) -> TwoHandSet:
        """World-frame pairs (the left hand at the origin, unrotated) of raw canonical pairs x [N, 2, 64].
        ``extra``: more metadata (e.g. batch size and count, which with the seed and sampler reproduce the file)."""
        return to_world(x, self.hands, anchor=ANCHOR_SIDE, hand_model=self.hand_model,
                        metadata={"generator": "interhandgen", "model": self.model.source, "seed": seed,
                                  "sampler": dataclasses.asdict(settings), **(extra or {})})

    def complete(self, given: TwoHandSet, side: str = "left", seed: int = 0,
                 settings: SamplerSettings | None = None, batch_size: int = 2500,
                 progress: bool = True) -> TwoHandSet:
        """Sample a partner for the ``side`` hand of every pair in ``given`` (the other hand is ignored).

        The given hand keeps its world pose exactly; the partner is placed relative to it.
        """
        if side not in ("left", "right"):
            raise InputError(f"side must be 'left' or 'right', got {side!r}")
        if given.hand_model != self.hand_model:
            raise ModelMismatchError(f"the given hands use hand model {given.hand_model.kind!r}, the generator "
                             f"{self.hand_model.kind!r}; use the same hand model files")
        settings = settings or SamplerSettings()
        src = given if side == ANCHOR_SIDE else mirror(given, self.hands)
        can = to_canonical(src, self.hands, anchor=ANCHOR_SIDE, device=self.device, dtype=torch.float32)
        x = self.sample_canonical(len(src), seed, settings, batch_size, progress, anchors=can.x[:, 0])
        done = to_world(x, self.hands, anchor=ANCHOR_SIDE,
                        anchor_world=(can.anchor_rotation.double(), can.anchor_center.double()),
                        hand_model=self.hand_model, pose_space=given.pose_space,
                        flat_hand_mean=given.flat_hand_mean,
                        metadata={**given.metadata, "completed_side": "right" if side == "left" else "left",
                                  "seed": seed, "sampler": dataclasses.asdict(settings)})
        if side != ANCHOR_SIDE:
            done = mirror(done, self.hands)
        # Hand the given hand back bit-for-bit (the round trip through float32 canonical vectors only rounds it).
        return done._replace(**{side: given.hand(side)})


def sample_model(model: LoadedModel, num: int, seed: int = 0, settings: SamplerSettings | None = None,
                 batch_size: int = 2500, device: str | torch.device = "cpu", progress: bool = True,
                 hand_model: HandModelSpec | None = None) -> TwoHandSet:
    """Sample ``num`` world-frame pairs (the left hand at the origin, unrotated) from a loaded model of any kind,
    through the sampler its kind registers (:data:`interhandgen.models.REGISTRY`).

    Args:
        seed: batch i draws from a generator seeded by (seed, i): same seed and batch size, same output.
        settings: sampler settings; None gives the kind's defaults. Options a kind cannot honour raise.
        hand_model: the hand model to decode with; None: the one the model records (a MANO-trained model needs
            it given). A hand model other than the recorded one raises :class:`ModelMismatchError`.
    Returns:
        A :class:`TwoHandSet` in the standard samples format, with the model kind, source, seed and settings
        recorded in its metadata.
    """
    kind = model.kind
    sampler = registered(model.model_config).sampler
    settings = check_settings(kind, settings)
    device = torch.device(device)
    if sampler == "cascaded":
        gen = InterHandGen(model, hand_model, device)
        x = gen.sample_canonical(num, seed, settings, batch_size, progress)
        spec, hands = gen.hand_model, gen.hands
    else:
        spec = model.hand_model(hand_model)
        hands = spec.load(pose_space="pca", device=device)
        if sampler == "joint":
            x = sample_joint(model.net, model.schedule().to(device), model.stats_mean, model.stats_std, num,
                             settings, seed, batch_size, device, progress)
        else:
            x = sample_vae(model.net, model.stats_mean, model.stats_std, num, seed, batch_size, device)
    meta: dict[str, Any] = {"generator": "interhandgen", "model": model.source, "model_kind": kind, "seed": seed,
                            "sampler": dataclasses.asdict(settings)}
    if sampler == "decoder":
        meta["sampler"] = {"decoder_pass": True}
    return to_world(x, hands, anchor=ANCHOR_SIDE, hand_model=spec, metadata=meta)


def sample_checkpoint(path: str | Path, num: int, seed: int = 0, settings: SamplerSettings | None = None,
                      batch_size: int = 2500, device: str | torch.device = "cpu", progress: bool = True,
                      hand_model: HandModelSpec | None = None) -> TwoHandSet:
    """:func:`sample_model` of the model at ``path`` (a run folder, checkpoint.pt or model.safetensors)."""
    return sample_model(load_model(path, device), num, seed, settings, batch_size, device, progress, hand_model)
