"""Experiment files and run folders: what a new or resumed training run starts from."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
import yaml

from interhandgen.exceptions import InputError, OutputExistsError
from interhandgen.safe_files import read_yaml
from interhandgen.training.checkpoint import load_checkpoint
from interhandgen.training.config import TrainConfig


def load_experiment(path: str | Path) -> tuple[dict, TrainConfig]:
    """(model section, TrainConfig) of an experiment YAML."""
    path = Path(path)
    doc = read_yaml(path, "config") or {}
    if not isinstance(doc, dict) or "model" not in doc or not isinstance(doc["model"], dict):
        raise InputError(f"{path}: expected a mapping with a 'model' section (a mapping) and optionally 'train'")
    train = doc.get("train")
    if train is not None and not isinstance(train, dict):
        raise InputError(f"{path}: the 'train' section must be a mapping, got {type(train).__name__}")
    return dict(doc["model"]), TrainConfig.from_dict(train, source=str(path))


@dataclasses.dataclass
class RunSetup:
    """What a run starts from: its configs, whether the training split is mirror-augmented, and (on resume) the
    standardisation statistics stored with the run ([2, 64] each; None for a new run)."""

    model_config: dict[str, Any]
    train_config: TrainConfig
    mirror_augment: bool
    stats: tuple[torch.Tensor, torch.Tensor] | None = None
    step: int = 0  # the optimizer step a resumed run continues from (0 for a new run)


def setup_run(out: str | Path, *, resume: bool, config: str | Path | None = None, epochs: int | None = None,
              mirror_augment: bool = True) -> RunSetup:
    """The configs of a new run (from the experiment YAML ``config``) or of the run in ``out`` to resume (from its
    checkpoint and config.yaml; its statistics and mirror augmentation are part of the run). ``epochs`` overrides
    ``train.epochs``."""
    out = Path(out)
    if resume:
        ckpt = load_checkpoint(out)
        model_cfg, train_cfg = ckpt["model_config"], TrainConfig.from_dict(ckpt["train_config"])
        saved = (read_yaml(out / "config.yaml") or {}) if (out / "config.yaml").is_file() else {}
        if not isinstance(saved, dict):
            raise InputError(f"{out / 'config.yaml'}: expected a mapping")
        setup = RunSetup(model_cfg, train_cfg, bool(saved.get("mirror_augment", mirror_augment)),
                         (ckpt["stats"]["mean"], ckpt["stats"]["std"]), int(ckpt["step"]))
    else:
        if (out / "checkpoint.pt").exists():
            raise OutputExistsError(f"{out} already holds a run: pass --resume {out} to continue it, or a new --out")
        if config is None:
            raise InputError("--config is required for a new run (see configs/small.yaml)")
        model_cfg, train_cfg = load_experiment(config)
        setup = RunSetup(model_cfg, train_cfg, mirror_augment)
    if epochs is not None:
        setup.train_config = dataclasses.replace(setup.train_config, epochs=epochs)
        setup.train_config.validate("--epochs")
    return setup


def write_run_config(out: str | Path, setup: RunSetup, data: str | Path) -> None:
    """``out/config.yaml``: the configs, data file and augmentation of a new run (read back on resume)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump({"model": setup.model_config,
                                                      "train": setup.train_config.to_dict(),
                                                      "data": str(data), "mirror_augment": setup.mirror_augment}))
