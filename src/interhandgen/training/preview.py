"""Sample previews during training: a PNG of a few samples of the EMA network every few epochs."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import nn

from interhandgen.data.canonical import to_world
from interhandgen.data.format import HandModelSpec
from interhandgen.diffusion import Schedule
from interhandgen.generation import ANCHOR_SIDE, SamplerSettings, cascaded_sample
from interhandgen.training.config import TrainConfig
from interhandgen.viz import render


def sample_preview_callback(hand_model: HandModelSpec, train_cfg: TrainConfig, mean: torch.Tensor,
                            std: torch.Tensor) -> Callable[[nn.Module, int, int, Path], None]:
    """``on_epoch_end`` for :func:`interhandgen.training.train`: render 8 samples of the EMA network (no APG) into
    ``RUN/samples/epoch_XXXX.png``. mean, std: [2, 64] standardisation statistics."""

    def callback(net: nn.Module, epoch: int, step: int, out_dir: Path) -> None:
        sched = Schedule.from_config(train_cfg.to_dict())
        # A schedule shorter than the default DDIM step count is sampled with all of its steps.
        settings = SamplerSettings(apg_weight=0.0, steps=min(SamplerSettings().steps, train_cfg.num_timesteps))
        x = cascaded_sample(net, sched, mean, std, 8, settings, seed=0, progress=False)
        hands = hand_model.load(pose_space="pca")
        two = to_world(x, hands, anchor=ANCHOR_SIDE, hand_model=hand_model)
        (out_dir / "samples").mkdir(exist_ok=True)
        render(two, out_path=out_dir / "samples" / f"epoch_{epoch:04d}.png")

    return callback
