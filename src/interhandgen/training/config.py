"""Training configuration (the ``train:`` section of an experiment YAML)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml
from interhandgen.exceptions import InputError, MissingFileError
from interhandgen.limits import LR_RANGE, limits_enabled
from interhandgen.safe_files import check_config_types


@dataclasses.dataclass
class TrainConfig:
    """Hyper-parameters of :func:`interhandgen.training.train`.

    Steps count optimiser updates with the GLOBAL batch ``batch_size`` (split across DDP ranks).
    """

    epochs: int = 40
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 500
    min_lr_ratio: float = 0.05  # cosine decay from lr to lr * min_lr_ratio
    grad_clip: float = 4.0
    ema_decay: float = 0.999
    # The average's decay at update k is min(ema_decay, (1 + k) / (10 + k)): without it the random initial weights
    # keep a share ema_decay^steps of the exported net (16% after 1,860 steps at 0.999; docs/results.md).
    ema_warmup: bool = True
    # None: every batch trains both stages, as the paper does (anchor with the null condition, loss on its first
    # `anchor_loss_dims` numbers; other hand conditioned on the ground-truth anchor). A probability p instead trains
    # only the conditional stage and replaces the condition by the null token with probability p.
    cond_drop_prob: float | None = None
    anchor_loss_dims: int = 55
    schedule: str = "linear"  # "linear" | "cosine"
    beta_start: float = 1e-4
    beta_end: float = 0.01
    num_timesteps: int = 129
    antithetic_timesteps: bool = True
    # Objective options of the cascaded kinds (interhandgen.models.losses_geometry; docs/prior_experiments.md).
    # The defaults are the plain x0 loss of the bundled model.
    # "uniform" | "min_snr" (per-timestep weight min(SNR_t, gamma), mean 1) | "v" (weight SNR_t + 1: the squared
    # error of v, the objective of a `prediction: v` network)
    loss_weighting: str = "uniform"
    min_snr_gamma: float = 5.0
    geometry_weight: float = 0.0  # partner joints + surface points in the anchor frame, cm^2
    contact_weight: float = 0.0  # signed distance to the anchor surface near contact, cm^2
    geometry_rows: int = 128  # conditioned rows per batch that carry the geometric terms (hand layer cost)
    geometry_points: int = 64  # partner surface points of the geometric terms (besides the 21 joints)
    contact_band_mm: float = 20.0  # partner points within this distance of the anchor enter the contact term
    # Hand-object terms of the object kind (interhandgen.models.object_loss; docs/objects_model.md), on the predicted
    # x0 of rows at SNR_t >= object_geometry_min_snr only. Defaults: off (the bundled object model's objective).
    object_penetration_weight: float = 0.0  # squared depth of hand points below the object's surface, cm^2
    object_contact_weight: float = 0.0  # signed distance of the data's contact points to the surface, cm^2
    object_contact_band_mm: float = 5.0  # hand points of the data within this of the object are its contact points
    object_geometry_points: int = 128  # surface points per hand of the hand-object terms
    object_geometry_min_snr: float = 5.0  # the terms apply where abar_t / (1 - abar_t) >= this (low noise)
    checkpoint_every: int = 500
    log_every: int = 25
    sample_every_epochs: int = 5
    seed: int = 0

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None, source: str = "train config") -> "TrainConfig":
        d = dict(d or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise InputError(f"{source}: unknown key(s) {unknown} in 'train'; known: {sorted(names)}")
        check_config_types(d, {f.name: f.type for f in dataclasses.fields(cls)}, f"{source}: train")
        if "betas" in d:
            d["betas"] = tuple(float(b) for b in d["betas"])
        cfg = cls(**d)
        cfg.validate(source)
        return cfg

    @classmethod
    def from_yaml(cls, path: str | Path) -> "TrainConfig":
        path = Path(path)
        if not path.is_file():
            raise MissingFileError(f"config file not found: {path}")
        doc = yaml.safe_load(path.read_text()) or {}
        if not isinstance(doc, dict):
            raise InputError(f"{path}: expected a mapping with 'model' and 'train' sections")
        return cls.from_dict(doc.get("train"), source=str(path))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    def validate(self, source: str = "train config") -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise InputError(f"{source}: train.{msg}")

        need(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        need(self.batch_size >= 2, f"batch_size must be >= 2, got {self.batch_size}")
        need(self.lr > 0, f"lr must be > 0, got {self.lr}")
        need(not limits_enabled() or LR_RANGE[0] < self.lr <= LR_RANGE[1],
             f"lr must lie in ({LR_RANGE[0]:g}, {LR_RANGE[1]:g}] (a documented limit; --no-limits lifts it), "
             f"got {self.lr}")
        need(0 <= self.ema_decay < 1, f"ema_decay must be in [0, 1), got {self.ema_decay}")
        need(isinstance(self.ema_warmup, bool), f"ema_warmup must be true or false, got {self.ema_warmup!r}")
        need(self.cond_drop_prob is None or 0 <= self.cond_drop_prob <= 1,
             f"cond_drop_prob must be null or in [0, 1], got {self.cond_drop_prob}")
        need(1 <= self.anchor_loss_dims <= 64, f"anchor_loss_dims must be in [1, 64], got {self.anchor_loss_dims}")
        need(self.schedule in ("linear", "cosine"), f"schedule must be 'linear' or 'cosine', got {self.schedule!r}")
        need(self.loss_weighting in ("uniform", "min_snr", "v"),
             f"loss_weighting must be 'uniform', 'min_snr' or 'v', got {self.loss_weighting!r}")
        need(self.min_snr_gamma > 0, f"min_snr_gamma must be > 0, got {self.min_snr_gamma}")
        need(self.geometry_weight >= 0 and self.contact_weight >= 0,
             f"geometry_weight and contact_weight must be >= 0, got {self.geometry_weight}, {self.contact_weight}")
        need(self.geometry_rows >= 1 and self.geometry_points >= 1,
             f"geometry_rows and geometry_points must be >= 1, got {self.geometry_rows}, {self.geometry_points}")
        need(self.contact_band_mm > 0, f"contact_band_mm must be > 0, got {self.contact_band_mm}")
        for name in ("object_penetration_weight", "object_contact_weight"):
            need(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")
        need(self.object_contact_band_mm > 0, f"object_contact_band_mm must be > 0, got {self.object_contact_band_mm}")
        need(self.object_geometry_points >= 1,
             f"object_geometry_points must be >= 1, got {self.object_geometry_points}")
        need(self.object_geometry_min_snr > 0,
             f"object_geometry_min_snr must be > 0, got {self.object_geometry_min_snr}")
        need(self.num_timesteps >= 2, f"num_timesteps must be >= 2, got {self.num_timesteps}")
        need(self.checkpoint_every >= 1, f"checkpoint_every must be >= 1, got {self.checkpoint_every}")
        need(self.grad_clip > 0, f"grad_clip must be > 0, got {self.grad_clip}")
        need(self.log_every >= 1 and self.sample_every_epochs >= 0 and self.warmup_steps >= 0,
             f"log_every must be >= 1, sample_every_epochs and warmup_steps >= 0, got {self.log_every}, "
             f"{self.sample_every_epochs}, {self.warmup_steps}")
