"""`interhandgen train`: train the shared two-stage denoiser on a two-hand data set."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from interhandgen.cli._args import positive_int

DEFAULT_OBJECT_FREE_SHARE = 0.5


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
    p.add_argument("--object-free-data", default=None,
                   help="object models only: a two-hand TwoHandSet .npz whose 'train' pairs are trained beside the "
                        "hand-object set as object-free rows (the null object token), so that one network also "
                        "learns the two-hand distribution (docs/objects_model.md)")
    p.add_argument("--object-free-share", type=float, default=None,
                   help="with --object-free-data: the share of the training rows that are object-free "
                        f"(0 < share < 1; default {DEFAULT_OBJECT_FREE_SHARE})")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Imports inside the commands keep `interhandgen --help` from loading torch (startup time, not cycles).
    from interhandgen.exceptions import InputError, MissingFileError
    from interhandgen.io_guard import Out, check_outputs
    from interhandgen.run_hygiene import remove_orphan_temps
    from interhandgen.run_lock import RunLock
    from interhandgen.training import dist_info, exit_distributed, init_distributed_from_env

    check_outputs({"--out" if args.out else "--resume": Out(args.resume or args.out, folder=True)},
                  {"--data": args.data, "--config": args.config, "--object-free-data": args.object_free_data})
    if args.object_free_share is not None and args.object_free_data is None:
        raise InputError("--object-free-share needs --object-free-data (the two-hand set whose pairs it mixes in)")
    if args.object_free_share is None:
        args.object_free_share = DEFAULT_OBJECT_FREE_SHARE
    if not 0.0 < args.object_free_share < 1.0:
        raise InputError(f"--object-free-share must lie strictly between 0 and 1, got {args.object_free_share}")
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
    elif args.object_free_data is not None:
        raise InputError(f"--object-free-data is for object models; model kind {setup.model_config.get('kind')!r} "
                         "trains on two-hand pairs only (give them as --data)")
    else:
        train_x = load_training_arrays(data, split="train", mirror_augment=setup.mirror_augment, models=models)
        val_x = load_training_arrays(data, split="validation", models=models)
    # an object model's statistics are those of its object-frame pairs: fitted before the object-free rows (in the
    # two-hand frame, which would only add their constant anchor slots) join them
    std = Standardizer.fit(train_x)
    provenance = {"command": " ".join(["interhandgen", *sys.argv[1:]]), "data_file": str(args.data)}
    if args.object_free_data is not None:
        free_x = _object_free_rows(args, data, train_x.shape[0], setup.mirror_augment, setup.train_config.seed)
        object_kw["train_points"] = torch.cat([train_p, train_p.new_zeros(free_x.shape[0], *train_p.shape[1:])])
        object_kw["train_has_object"] = torch.arange(train_x.shape[0] + free_x.shape[0]) < train_x.shape[0]
        train_x = torch.cat([train_x, free_x])
        provenance.update(object_free_data_file=str(args.object_free_data), object_free_rows=int(free_x.shape[0]))
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
        provenance=provenance,
        **object_kw,
    )
    if rank == 0:
        print(f"{result.status} at step {result.step} (epoch {result.epoch}); run folder {out}")
    return 0 if result.status == "finished" else 130


def _object_free_rows(args: argparse.Namespace, data, num_object_rows: int, mirror_augment: bool, seed: int):
    """The object-free rows [M, 2, 64] (two-hand canonical frame) for ``--object-free-data``: M such that they are
    ``--object-free-share`` of all training rows, drawn without replacement from the file's 'train' split (and its
    mirrored pairs) by a permutation fixed by the training seed."""
    import torch

    from interhandgen.data.canonical import load_training_arrays
    from interhandgen.data.format import TwoHandSet
    from interhandgen.exceptions import InputError, ModelMismatchError

    free = TwoHandSet.load(args.object_free_data)
    if free.object_library is not None:
        raise InputError(f"--object-free-data {args.object_free_data}: a hand-object set; give a two-hand set (its "
                         "pairs are trained without their object)")
    if free.hand_model != data.hand_model:
        raise ModelMismatchError(f"--object-free-data {args.object_free_data}: hand model {free.hand_model.kind!r}, "
                                 f"but --data {args.data} uses {data.hand_model.kind!r}")
    share = args.object_free_share
    want = int(round(num_object_rows * share / (1.0 - share)))
    x = load_training_arrays(free, split="train", mirror_augment=mirror_augment)
    if want < 1 or want > x.shape[0]:
        raise InputError(f"--object-free-data {args.object_free_data}: --object-free-share {share} needs {want} "
                         f"object-free rows beside the {num_object_rows} object rows, the file's 'train' split gives "
                         f"{x.shape[0]}{' (with its mirrored pairs)' if mirror_augment else ''}")
    order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
    return x[order[:want]]
