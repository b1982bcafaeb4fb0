"""`interhandgen train`: train the shared two-stage denoiser on a two-hand data set."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from interhandgen.cli._args import positive_int


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
    p.add_argument("--epochs", type=positive_int, default=None, help="override train.epochs")
    p.add_argument("--no-mirror-augment", action="store_true",
                   help="do not add the mirrored pairs (sides swapped) to the training split")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Imports inside the commands keep `interhandgen --help` from loading torch (startup time, not cycles).
    from interhandgen.exceptions import MissingFileError
    from interhandgen.io_guard import Out, check_outputs
    from interhandgen.run_hygiene import remove_orphan_temps
    from interhandgen.run_lock import RunLock
    from interhandgen.training import dist_info, exit_distributed, init_distributed_from_env

    check_outputs({"--out" if args.out else "--resume": Out(args.resume or args.out, folder=True)},
                  {"--data": args.data, "--config": args.config})
    if args.resume and not (Path(args.resume) / "checkpoint.pt").is_file():
        raise MissingFileError(f"--resume {args.resume}: no checkpoint.pt in that folder (start a run with --out)")
    distributed = init_distributed_from_env(args.device)
    rank, _ = dist_info()
    out = Path(args.resume or args.out)
    lock = RunLock(out) if rank == 0 else None  # one writer per run folder; DDP ranks share rank 0's lock
    if lock is not None:
        lock.acquire()
    try:
        if lock is not None:
            remove_orphan_temps(out)
        code = _run_locked(args, out, rank)
    finally:
        if lock is not None:
            lock.release()
    if distributed:
        exit_distributed(code)  # does not return
    return code


def _run_locked(args: argparse.Namespace, out: Path, rank: int) -> int:
    import torch

    from interhandgen.data.canonical import Standardizer, load_training_arrays
    from interhandgen.data.format import TwoHandSet
    from interhandgen.exceptions import InputError
    from interhandgen.models import registered
    from interhandgen.objects.frame import family_orientations, object_frame_training_arrays
    from interhandgen.run_hygiene import truncate_event_files
    from interhandgen.training import sample_preview_callback, setup_run, train, write_run_config

    setup = setup_run(out, resume=bool(args.resume), config=args.config, epochs=args.epochs,
                      mirror_augment=not args.no_mirror_augment)
    if args.resume and rank == 0:
        truncate_event_files(out / "tb", setup.step)  # events past the checkpoint would be logged twice
    data = TwoHandSet.load(args.data)
    models = data.hand_models()
    object_kw = {}
    if registered(setup.model_config).uses_object:
        # Object models: the anchor's pose in the object frame, and the objects' surface points (docs/objects_model.md).
        if data.object_library is None:
            raise InputError(f"--data {args.data}: model kind {setup.model_config.get('kind')!r} trains on pairs with "
                             "objects, but the file has no object library (interhandgen data synth --objects)")
        num_points = int((setup.model_config.get("object_encoder") or {}).get("num_points", 256))
        train_x, train_p = object_frame_training_arrays(data, "train", setup.mirror_augment, models, num_points)
        val_x, val_p = object_frame_training_arrays(data, "validation", False, models, num_points)
        object_kw = {"train_points": train_p, "val_points": val_p,
                     "objects_record": {"num_points": num_points,
                                        "orientations": family_orientations(data.select_split("train"))}}
    else:
        train_x = load_training_arrays(data, split="train", mirror_augment=setup.mirror_augment, models=models)
        val_x = load_training_arrays(data, split="validation", models=models)
    std = Standardizer.fit(train_x)
    if setup.stats is not None:  # the statistics are part of the run
        std = Standardizer(setup.stats[0], setup.stats[1], torch.zeros(2, 64, dtype=torch.bool))
    if rank == 0 and not args.resume:
        write_run_config(out, setup, args.data)
    result = train(
        setup.model_config, setup.train_config,
        std.transform(train_x).float(), std.transform(val_x).float(),
        std.mean.float(), std.std.float(), out,
        resume=bool(args.resume), device=args.device, progress=not args.no_progress,
        on_epoch_end=sample_preview_callback(data.hand_model, setup.train_config, std.mean.float(),
                                             std.std.float()),
        hand_model=data.hand_model,
        provenance={"command": " ".join(["interhandgen", *sys.argv[1:]]), "data_file": str(args.data)},
        **object_kw,
    )
    if rank == 0:
        print(f"{result.status} at step {result.step} (epoch {result.epoch}); run folder {out}")
    return 0 if result.status == "finished" else 130
