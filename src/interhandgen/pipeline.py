"""The high-level API: load a trained model, sample two-hand interactions, complete a given hand.

    >>> from interhandgen.pipeline import InterHandGen
    >>> gen = InterHandGen.load()                      # the bundled model (open hand, synthetic data)
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

from interhandgen.data.canonical import mirror, to_canonical, to_world
from interhandgen.data.format import HandModelSpec, TwoHandSet
from interhandgen.diffusion import Schedule
from interhandgen.guidance import AntiPenetrationGuidance, SettleConfig, SubsetHand, interpenetrating, settle_contact
from interhandgen.sampling import SamplerSettings, cascaded_sample
from interhandgen.training.checkpoint import load_checkpoint, read_exported_model

BUNDLED_MODEL = "small.safetensors"
ANCHOR_SIDE = "left"


def bundled_model_path() -> Path:
    path = Path(str(resources.files("interhandgen") / "checkpoints" / BUNDLED_MODEL))
    if not path.is_file():
        raise FileNotFoundError(
            f"the bundled model {path} is missing from this installation; reinstall interhandgen or pass "
            "--checkpoint PATH (a run folder, checkpoint.pt or model.safetensors written by `interhandgen train`)"
        )
    return path


@dataclasses.dataclass
class LoadedModel:
    net: torch.nn.Module
    model_config: dict[str, Any]
    stats_mean: torch.Tensor
    stats_std: torch.Tensor
    train_config: dict[str, Any]
    source: str


def load_model(path: str | Path | None = None, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a model from an exported .safetensors, a training checkpoint (.pt) or a run folder (EMA weights)."""
    from interhandgen.baselines import build_model

    path = bundled_model_path() if path is None else Path(path)
    if path.is_dir():
        path = path / "model.safetensors" if (path / "model.safetensors").is_file() else path / "checkpoint.pt"
    if not path.exists():
        raise FileNotFoundError(f"model not found: {path}")
    if path.suffix == ".safetensors":
        state, model_config, mean, std, prov = read_exported_model(path)
        train_config = prov.get("train_config", {})
    else:
        ckpt = load_checkpoint(path)
        state, model_config, train_config = ckpt["ema"], ckpt["model_config"], ckpt["train_config"]
        mean, std = ckpt["stats"]["mean"], ckpt["stats"]["std"]
    from interhandgen.exceptions import InputError

    try:
        net = build_model(model_config)
    except (ValueError, TypeError, KeyError) as exc:  # the config comes from the file
        raise InputError(f"{path}: invalid model config: {exc}") from None
    try:
        net.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path}: weights do not fit the model config stored with them: {exc}") from None
    for name, t in (("stats.mean", mean), ("stats.std", std)):
        if tuple(t.shape) != (2, 64):
            raise ValueError(f"{path}: {name} must have shape [2, 64], got {list(t.shape)}")
    return LoadedModel(net.to(device).eval(), model_config, mean.float().to(device), std.float().to(device),
                       train_config, str(path))


def schedule_from_train_config(cfg: dict[str, Any]) -> Schedule:
    kind = cfg.get("schedule", "linear")
    T = int(cfg.get("num_timesteps", 129))
    if kind == "linear":
        return Schedule.linear(float(cfg.get("beta_start", 1e-4)), float(cfg.get("beta_end", 0.01)), T)
    if kind == "cosine":
        return Schedule.cosine(T)
    raise ValueError(f"unknown schedule {kind!r} in the model's training config")


def apg_factory(anchor: SubsetHand, other: SubsetHand, mean: torch.Tensor, std: torch.Tensor,
                settings: SamplerSettings):
    """``make_apg`` for :func:`interhandgen.sampling.cascaded_sample`: raw anchors [b, 64] -> the APG hook.

    mean, std: [64] statistics of the conditioned (other) hand.
    """

    def make(anchor_raw: torch.Tensor) -> AntiPenetrationGuidance:
        return AntiPenetrationGuidance.from_anchors(
            anchor_raw, anchor, other, mean, std, weight=settings.apg_weight, num_steps=settings.steps,
            decay=settings.apg_decay, last_steps=settings.apg_last_steps, rho=settings.apg_rho,
            margin=settings.apg_margin, max_step=settings.apg_max_step)

    return make


def settle_factory(anchor: SubsetHand, other: SubsetHand, settings: SamplerSettings):
    """``settle`` for :func:`interhandgen.sampling.cascaded_sample` from the sampler settings (raw vectors), or
    None when settling is off."""
    if settings.settle_steps == 0:
        return None
    config = SettleConfig(attract_mm=settings.settle_attract_mm, steps=settings.settle_steps,
                          points=settings.settle_points)

    def settle(anchor_raw: torch.Tensor, other_raw: torch.Tensor) -> torch.Tensor:
        return settle_contact(anchor_raw, other_raw, anchor, other, config)

    return settle


def reject_factory(anchor: SubsetHand, other: SubsetHand, settings: SamplerSettings):
    """``reject`` for :func:`interhandgen.sampling.cascaded_sample` (partners still interpenetrating), or None
    when resampling is off."""
    if settings.resample_rounds == 0:
        return None
    return lambda anchor_raw, other_raw: interpenetrating(anchor_raw, other_raw, anchor, other,
                                                          depth_mm=settings.resample_depth_mm)


class InterHandGen:
    """A trained cascaded two-hand prior bound to its hand model."""

    def __init__(self, model: LoadedModel, hand_model: HandModelSpec | None = None,
                 device: str | torch.device = "cpu") -> None:
        self.model = model
        self.device = torch.device(device)
        self.hand_model = hand_model or HandModelSpec.open_hand()
        self.hands = self.hand_model.load(pose_space="pca", device=self.device)
        self.schedule = schedule_from_train_config(model.train_config).to(self.device)
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
            raise ValueError(f"num must be >= 1, got {num}")
        settings = settings or SamplerSettings()
        x = self.sample_canonical(num, seed, settings, batch_size, progress)
        return to_world(x, self.hands, anchor=ANCHOR_SIDE, hand_model=self.hand_model,
                        metadata={"generator": "interhandgen", "model": self.model.source, "seed": seed,
                                  "sampler": dataclasses.asdict(settings)})

    def complete(self, given: TwoHandSet, side: str = "left", seed: int = 0,
                 settings: SamplerSettings | None = None, batch_size: int = 2500,
                 progress: bool = True) -> TwoHandSet:
        """Sample a partner for the ``side`` hand of every pair in ``given`` (the other hand is ignored).

        The given hand keeps its world pose exactly; the partner is placed relative to it.
        """
        if side not in ("left", "right"):
            raise ValueError(f"side must be 'left' or 'right', got {side!r}")
        if given.hand_model != self.hand_model:
            raise ValueError(f"the given hands use hand model {given.hand_model.kind!r}, the generator "
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
