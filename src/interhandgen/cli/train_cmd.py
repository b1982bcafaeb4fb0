"""`interhandgen train`: train the shared two-stage denoiser on a two-hand data set."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train the cascaded two-hand diffusion model",
        description=(
            "Train ONE denoiser for both stages (anchor unconditionally, other hand given the anchor) on the "
            "canonical pairs of a TwoHandSet .npz (its 'train' split; 'validation' for the per-epoch validation "
            "loss). Checkpoints are written atomically every train.checkpoint_every steps and on Ctrl-C/SIGTERM; "
            "--resume RUN continues exactly where it stopped. Under `torchrun --nproc_per_node=N` it trains with "
            "DDP (gloo on CPU, nccl on GPU), sharding the data."
        ),
    )
    p.add_argument("--config", default=None,
                   help="experiment YAML with 'model' and 'train' sections (e.g. configs/small.yaml); "
                        "not needed with --resume")
    p.add_argument("--data", required=True, help="TwoHandSet .npz with 'train' and 'validation' splits")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", help="new run folder")
    where.add_argument("--resume", help="run folder to continue")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default %(default)s)")
    p.add_argument("--epochs", type=int, default=None, help="override train.epochs")
    p.add_argument("--no-mirror-augment", action="store_true",
                   help="do not add the mirrored pairs (sides swapped) to the training split")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def load_experiment(path: str | Path) -> tuple[dict, Any]:
    """(model section, TrainConfig) of an experiment YAML."""
    import yaml

    from interhandgen.training import TrainConfig

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    doc = yaml.safe_load(path.read_text()) or {}
    if not isinstance(doc, dict) or "model" not in doc:
        raise ValueError(f"{path}: expected a mapping with a 'model' section (and optionally 'train')")
    return dict(doc["model"]), TrainConfig.from_dict(doc.get("train"), source=str(path))


def run(args: argparse.Namespace) -> int:
    import dataclasses

    import torch
    import yaml

    from interhandgen.data.canonical import Standardizer, load_training_arrays
    from interhandgen.data.format import TwoHandSet
    from interhandgen.training import TrainConfig, load_checkpoint, train
    from interhandgen.training.trainer import dist_info, init_distributed_from_env

    distributed = init_distributed_from_env(args.device)
    rank, _ = dist_info()
    out = Path(args.resume or args.out)
    if args.resume:
        ckpt = load_checkpoint(out)
        model_cfg, train_cfg = ckpt["model_config"], TrainConfig.from_dict(ckpt["train_config"])
        saved = yaml.safe_load((out / "config.yaml").read_text()) if (out / "config.yaml").is_file() else {}
        augment = bool(saved.get("mirror_augment", not args.no_mirror_augment))
    else:
        if (out / "checkpoint.pt").exists():
            raise FileExistsError(f"{out} already holds a run: pass --resume {out} to continue it, or a new --out")
        if args.config is None:
            raise ValueError("--config is required for a new run (see configs/small.yaml)")
        model_cfg, train_cfg = load_experiment(args.config)
        augment = not args.no_mirror_augment
    if args.epochs is not None:
        train_cfg = dataclasses.replace(train_cfg, epochs=args.epochs)
        train_cfg.validate("--epochs")

    data = TwoHandSet.load(args.data)
    models = data.hand_models()
    train_x = load_training_arrays(data, split="train", mirror_augment=augment, models=models)
    val_x = load_training_arrays(data, split="validation", models=models)
    std = Standardizer.fit(train_x)
    if args.resume:  # the statistics are part of the run
        std = Standardizer(ckpt["stats"]["mean"], ckpt["stats"]["std"], torch.zeros(2, 64, dtype=torch.bool))
    if rank == 0 and not args.resume:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump({"model": model_cfg, "train": train_cfg.to_dict(),
                                                          "data": str(args.data), "mirror_augment": augment}))
    result = train(
        model_cfg, train_cfg,
        std.transform(train_x).float(), std.transform(val_x).float(),
        std.mean.float(), std.std.float(), out,
        resume=bool(args.resume), device=args.device, progress=not args.no_progress,
        on_epoch_end=_sample_png_callback(data.hand_model, train_cfg, std.mean.float(), std.std.float()),
    )
    if rank == 0:
        print(f"{result.status} at step {result.step} (epoch {result.epoch}); run folder {out}")
    code = 0 if result.status == "finished" else 130
    if distributed:
        from interhandgen.training.trainer import exit_distributed

        exit_distributed(code)  # does not return
    return code


def _sample_png_callback(hand_model, train_cfg, mean, std):
    """Render a few samples of the EMA model into RUN/samples/epoch_XXXX.png."""

    def callback(net, epoch: int, step: int, out_dir: Path) -> None:
        from interhandgen.data.canonical import to_world
        from interhandgen.pipeline import ANCHOR_SIDE, schedule_from_train_config
        from interhandgen.sampling import SamplerSettings, cascaded_sample
        from interhandgen.viz import render

        sched = schedule_from_train_config(train_cfg.to_dict())
        x = cascaded_sample(net, sched, mean, std, 8, SamplerSettings(apg_weight=0.0), seed=0, progress=False)
        hands = hand_model.load(pose_space="pca")
        two = to_world(x, hands, anchor=ANCHOR_SIDE, hand_model=hand_model)
        (out_dir / "samples").mkdir(exist_ok=True)
        render(two, out_path=out_dir / "samples" / f"epoch_{epoch:04d}.png")

    return callback
