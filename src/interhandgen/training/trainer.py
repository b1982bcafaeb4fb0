"""Training loop for the one shared denoiser of both stages (anchor, and other hand given the anchor).

Exact resume: everything that influences the next step is in the checkpoint (weights, EMA, optimiser, the
per-rank noise generator and global RNG, the position in the epoch's data order). The data order of an epoch
is a pure function of (seed, epoch), so it needs no state. On CPU, an interrupted-and-resumed run therefore
reproduces the uninterrupted run's losses bit for bit (tests/test_training.py kills a run to check this).
"""

from __future__ import annotations

import csv
import math
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from interhandgen._seeding import derived_seed
from interhandgen.data.format import HandModelSpec
from interhandgen.diffusion import Schedule
from interhandgen.models import (
    CASCADED_KINDS,
    build_model,
    check_objective,
    model_kind,
    objective_loss,
    registered,
)
from interhandgen.models.artifact import export_model, hand_model_record
from interhandgen.training.checkpoint import CHECKPOINT_FORMAT, atomic_torch_save, data_fingerprint, load_checkpoint
from interhandgen.training.config import TrainConfig
from interhandgen.training.distributed import dist_info
from interhandgen.training.ema import EMA
from interhandgen.training.objective import objective_geometry
from interhandgen.exceptions import InputError

CSV_FIELDS = ["kind", "step", "epoch", "loss", "loss_anchor", "loss_other", "lr", "grad_norm", "seconds"]


@dataclass
class TrainResult:
    status: str  # "finished" | "interrupted"
    step: int
    epoch: int
    out_dir: Path


# --------------------------------------------------------------------------- pieces of the loop
def lr_factor(step: int, total_steps: int, warmup_steps: int, min_ratio: float) -> float:
    """Linear warm-up, then cosine decay to ``min_ratio``."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def epoch_order(num_samples: int, seed: int, epoch: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(derived_seed(seed, epoch))
    return torch.randperm(num_samples, generator=g)


class _StopFlag:
    """Turns SIGINT/SIGTERM into a request to stop at the next step boundary (after a checkpoint)."""

    def __init__(self) -> None:
        self.requested: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "_StopFlag":
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:  # noqa: ARG002
        if self.requested is not None:  # second signal: give up immediately
            raise KeyboardInterrupt
        self.requested = signum

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


class _CsvLog:
    def __init__(self, path: Path, keep_rows: int | None, rank: int) -> None:
        self.path, self.rank = path, rank
        self.rows = 0
        if rank != 0:
            return
        if keep_rows is None or not path.exists():
            with open(path, "w", newline="") as fh:
                csv.writer(fh).writerow(CSV_FIELDS)
        else:
            # Drop what was logged after the checkpoint: the resumed run logs those steps again.
            with open(path, newline="") as fh:
                lines = fh.readlines()
            with open(path, "w", newline="") as fh:
                fh.writelines(lines[: keep_rows + 1])
            self.rows = keep_rows

    def write(self, row: dict[str, Any]) -> None:
        if self.rank != 0:
            return
        with open(self.path, "a", newline="") as fh:
            csv.writer(fh).writerow([row.get(k, "") for k in CSV_FIELDS])
            fh.flush()
        self.rows += 1


def _make_tb_writer(out_dir: Path, purge_step: int | None, rank: int):
    if rank != 0:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        print("interhandgen train: tensorboard is not installed; logging to CSV only "
              "(pip install 'interhandgen[train]' for TensorBoard logs)", file=sys.stderr)
        return None
    return SummaryWriter(str(out_dir / "tb"), purge_step=purge_step)


def _gather_rng_states(gen: torch.Generator) -> list[dict[str, torch.Tensor]]:
    mine = {"noise": gen.get_state(), "torch": torch.get_rng_state()}
    rank, world = dist_info()
    if world == 1:
        return [mine]
    out: list[Any] = [None] * world
    dist.all_gather_object(out, mine)
    return out


def _any_rank(flag: bool, device: torch.device) -> bool:
    rank, world = dist_info()
    if world == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


# --------------------------------------------------------------------------- the loop
def train(
    model_config: dict[str, Any],
    train_config: TrainConfig,
    train_x: torch.Tensor,
    val_x: torch.Tensor | None,
    stats_mean: torch.Tensor,
    stats_std: torch.Tensor,
    out_dir: str | os.PathLike,
    *,
    resume: bool = False,
    device: str | torch.device = "cpu",
    progress: bool = True,
    on_epoch_end: Callable[[nn.Module, int, int, Path], None] | None = None,
    max_steps: int | None = None,
    hand_model: HandModelSpec | None = None,
    provenance: dict[str, Any] | None = None,
    train_points: torch.Tensor | None = None,
    val_points: torch.Tensor | None = None,
    objects_record: dict[str, Any] | None = None,
    train_has_object: torch.Tensor | None = None,
) -> TrainResult:
    """Train the denoiser on standardised canonical pairs.

    Args:
        model_config: the ``model:`` section (a dict for :class:`interhandgen.models.DenoiserConfig`).
        train_x, val_x: [N, 2, 64] standardised canonical vectors, anchor first.
        stats_mean, stats_std: [2, 64] statistics used for the standardisation (stored with the model).
        out_dir: run folder (checkpoint.pt, log.csv, tb/, samples/, model.safetensors).
        resume: continue from ``out_dir/checkpoint.pt`` exactly where it stopped.
        on_epoch_end: called on rank 0 every ``sample_every_epochs`` epochs with (EMA network, epoch, step, out_dir),
            e.g. to render a PNG of samples.
        max_steps: stop (with a checkpoint, status "interrupted") after this many global steps; for tests.
        hand_model: the hand model of the training data, recorded in the checkpoint and the model file (None:
            not recorded; the sampler then decodes with the hand model its caller gives).
        provenance: extra provenance for the model file (e.g. ``command``, ``commit``, ``data_file``).
        train_points, val_points: for a model kind conditioned on an object (``shared_object``): the objects'
            surface points and normals [N, P, 6] in the object frame, row-aligned with train_x / val_x
            (:func:`interhandgen.objects.frame.object_frame_training_arrays`).
        objects_record: what the model file records about the training objects (``objects`` header field).
        train_has_object: [N] bool for an object model (None: all True): False marks an object-free pair (the
            two-hand canonical frame, its train_points row ignored) trained as a row whose object was dropped, so
            that one network learns the object-free distribution from two-hand data too (docs/objects_model.md).
    """
    kind = model_kind(model_config)
    if on_epoch_end is not None and kind not in CASCADED_KINDS:
        # The epoch callback receives the network and may run the cascaded sampler, which a joint or VAE model
        # cannot serve; say so instead of failing after the first epochs.
        if dist_info()[0] == 0:
            print(f"interhandgen train: no sample previews for model kind {kind!r} (the epoch callback expects a "
                  "cascaded model); sample it with interhandgen.generation.sample_model", file=sys.stderr)
        on_epoch_end = None
    cfg = train_config
    check_objective(model_config, cfg)
    out_dir = Path(out_dir)
    device = torch.device(device)
    rank, world = dist_info()
    for name, x in (("train_x", train_x), ("val_x", val_x)):
        if x is None:
            continue
        if x.dim() != 3 or tuple(x.shape[1:]) != (2, 64):
            raise InputError(f"{name} must have shape [N, 2, 64], got {list(x.shape)}")
        if not torch.isfinite(x).all():
            raise InputError(f"{name} contains NaN or inf")
    uses_object = registered(model_config).uses_object
    if uses_object != (train_points is not None) or (val_x is not None and uses_object != (val_points is not None)):
        raise InputError(f"model kind {kind!r} {'needs' if uses_object else 'takes no'} object points "
                         "(train_points, val_points)")
    if uses_object:
        if world > 1:
            raise InputError("object-conditioned models train in one process (no DDP)")
        for name, pts, x in (("train_points", train_points, train_x), ("val_points", val_points, val_x)):
            if pts is not None and (pts.dim() != 3 or pts.shape[0] != x.shape[0] or pts.shape[2] != 6):
                raise InputError(f"{name} must have shape [{x.shape[0]}, P, 6], got {list(pts.shape)}")
        if train_has_object is not None and (train_has_object.dtype != torch.bool
                                             or tuple(train_has_object.shape) != (train_x.shape[0],)):
            raise InputError(f"train_has_object must be a bool tensor of shape [{train_x.shape[0]}], got "
                             f"{train_has_object.dtype} {list(train_has_object.shape)}")
    elif train_has_object is not None:
        raise InputError(f"train_has_object is for object-conditioned model kinds, not {kind!r}")
    if cfg.batch_size % world:
        raise InputError(f"train.batch_size ({cfg.batch_size}) must be divisible by the number of processes ({world})")
    N = train_x.shape[0]
    steps_per_epoch = N // cfg.batch_size
    if steps_per_epoch < 1:
        raise InputError(f"the training split has {N} samples, fewer than one batch of {cfg.batch_size}")
    total_steps = steps_per_epoch * cfg.epochs

    schedule, net = initial_network(model_config, cfg.to_dict(), device, rank)
    ema = EMA(net, cfg.ema_decay)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed * 7919 + rank)
    step, epoch, next_batch, log_rows = 0, 0, 0, None
    fingerprint = data_fingerprint(train_x)
    if train_has_object is not None:  # which rows are object-free is part of the data a resume must match
        fingerprint["has_object_sha256"] = data_fingerprint(train_has_object)["sha256"]

    ckpt_path = out_dir / "checkpoint.pt"
    if resume:
        ckpt = load_checkpoint(ckpt_path)
        if ckpt["model_config"] != model_config:
            raise InputError(f"{ckpt_path}: the checkpoint's model config differs from the requested one; "
                             f"checkpoint: {ckpt['model_config']}, requested: {model_config}")
        if ckpt["data"] != fingerprint:
            mixed = "has_object_sha256" in ckpt["data"] or "has_object_sha256" in fingerprint
            free = ("; object-free rows (train_has_object) are part of the data: resume with the same "
                    "--object-free-data and --object-free-share" if mixed else "")
            raise InputError(f"{ckpt_path}: the checkpoint was trained on different data "
                             f"(shape {ckpt['data']['shape']}, sha256 {ckpt['data']['sha256'][:12]}...) than given "
                             f"(shape {fingerprint['shape']}, sha256 {fingerprint['sha256'][:12]}...){free}")
        if len(ckpt["rng"]) != world:
            raise InputError(f"{ckpt_path}: saved by {len(ckpt['rng'])} process(es); resume with the same number "
                             f"(now {world}) to continue exactly")
        try:
            net.load_state_dict(ckpt["model"])
            ema.load_state_dict(ckpt["ema"])
            opt.load_state_dict(ckpt["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise InputError(f"{ckpt_path}: incompatible with this model: {exc}") from None
        gen.set_state(ckpt["rng"][rank]["noise"])
        torch.set_rng_state(ckpt["rng"][rank]["torch"])
        step, epoch, next_batch, log_rows = ckpt["step"], ckpt["epoch"], ckpt["next_batch"], ckpt["log_rows"]
        stats_mean, stats_std = ckpt["stats"]["mean"], ckpt["stats"]["std"]
    elif rank == 0 and ckpt_path.exists():
        raise FileExistsError(f"{ckpt_path} exists: pass --resume to continue that run, or choose a new --out")

    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
    geometry = objective_geometry(cfg, hand_model, stats_mean, stats_std, device)
    ddp_net = nn.parallel.DistributedDataParallel(net) if world > 1 else net
    log = _CsvLog(out_dir / "log.csv", log_rows, rank)
    tb = _make_tb_writer(out_dir, step if resume else None, rank)
    train_x = train_x.to(device)
    if uses_object:
        train_points = train_points.to(device)
        if train_has_object is not None:
            train_has_object = train_has_object.to(device)

    def save_checkpoint(ep: int, nb: int) -> None:
        rng = _gather_rng_states(gen)
        if rank != 0:
            return
        atomic_torch_save(
            {
                "format": CHECKPOINT_FORMAT, "step": step, "epoch": ep, "next_batch": nb,
                "model": net.state_dict(), "ema": ema.state_dict(), "optimizer": opt.state_dict(), "rng": rng,
                "model_config": model_config, "train_config": cfg.to_dict(),
                "stats": {"mean": stats_mean.cpu(), "std": stats_std.cpu()}, "data": fingerprint,
                "log_rows": log.rows, "hand_model": hand_model_record(hand_model),
                **({"objects": objects_record} if objects_record is not None else {}),
            },
            ckpt_path,
        )

    bar = tqdm(total=total_steps, initial=step, desc="train", unit="step", disable=not progress or rank != 0,
               dynamic_ncols=True)
    t_start = time.time()
    status = "finished"
    with _StopFlag() as stop:
        while epoch < cfg.epochs:
            order = epoch_order(N, cfg.seed, epoch)
            net.train()
            for k in range(next_batch, steps_per_epoch):
                if _any_rank(stop.requested is not None or (max_steps is not None and step >= max_steps), device):
                    save_checkpoint(epoch, k)
                    status = "interrupted"
                    break
                idx = order[k * cfg.batch_size:(k + 1) * cfg.batch_size][rank::world].to(device)
                for g in opt.param_groups:
                    g["lr"] = cfg.lr * lr_factor(step, total_steps, cfg.warmup_steps, cfg.min_lr_ratio)
                extra = {} if not uses_object else {"points": train_points[idx], "stats": (stats_mean, stats_std)}
                if train_has_object is not None:
                    extra["has_object"] = train_has_object[idx]
                loss, la, lo = objective_loss(model_config, ddp_net, train_x[idx], schedule, cfg, gen,
                                              geometry, **extra)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"training loss became {loss.item()} at step {step}")
                opt.step()
                ema.update(net, step if cfg.ema_warmup else None)
                step += 1
                bar.update(1)
                if step % cfg.log_every == 0 or step == 1:
                    row = {"kind": "train", "step": step, "epoch": epoch, "loss": f"{loss.item():.6g}",
                           "loss_anchor": f"{la.item():.6g}", "loss_other": f"{lo.item():.6g}",
                           "lr": f"{opt.param_groups[0]['lr']:.6g}", "grad_norm": f"{float(grad_norm):.6g}",
                           "seconds": f"{time.time() - t_start:.1f}"}
                    log.write(row)
                    bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{opt.param_groups[0]['lr']:.2e}")
                    if tb is not None:
                        for key in ("loss", "loss_anchor", "loss_other", "lr", "grad_norm"):
                            tb.add_scalar(f"train/{key}", float(row[key]), step)
                if step % cfg.checkpoint_every == 0:
                    save_checkpoint(epoch, k + 1)
            if status == "interrupted":
                break
            if val_x is not None and rank == 0:
                with torch.random.fork_rng(devices=[]):  # validation must not perturb the training RNG stream
                    vl = validation_loss(ema, model_config, val_x, schedule, cfg, device, val_points,
                                         (stats_mean, stats_std))
                log.write({"kind": "val", "step": step, "epoch": epoch, "loss": f"{vl:.6g}",
                           "seconds": f"{time.time() - t_start:.1f}"})
                if tb is not None:
                    tb.add_scalar("val/loss", vl, step)
                bar.write(f"epoch {epoch + 1}/{cfg.epochs}: validation loss (EMA) {vl:.4f}")
            epoch += 1
            next_batch = 0
            # sample_every_epochs 0: no previews (the modulo would divide by zero)
            if (on_epoch_end is not None and rank == 0 and cfg.sample_every_epochs > 0
                    and (epoch % cfg.sample_every_epochs == 0 or epoch == cfg.epochs)):
                with torch.random.fork_rng(devices=[]):
                    on_epoch_end(ema_module(ema, model_config, device, schedule), epoch, step, out_dir)
            save_checkpoint(epoch, 0)
    bar.close()
    if tb is not None:
        tb.close()
    if status == "finished" and rank == 0:
        export_model(ema.state_dict(), model_config, stats_mean, stats_std, out_dir / "model.safetensors",
                     provenance={**(provenance or {}), "steps": step, "epochs": cfg.epochs,
                                 "train_config": cfg.to_dict(), "data": fingerprint},
                     hand_model=hand_model, conditioning=registered(model_config).conditioning,
                     objects=objects_record)
    if stop.requested is not None and rank == 0:
        print(f"interhandgen train: stopped by signal {stop.requested} at step {step}; checkpoint written to "
              f"{ckpt_path}; continue with --resume {out_dir}", file=sys.stderr)
    return TrainResult(status=status, step=step, epoch=epoch, out_dir=out_dir)


def initial_network(model_config: dict[str, Any], train_config: dict[str, Any], device: str | torch.device = "cpu",
                    rank: int = 0) -> tuple[Schedule, nn.Module]:
    """The schedule and the network with the initial weights that training starts from: the global RNG seeded with
    ``train.seed + rank``, then the model built (the RNG stream goes on into training from there). Also what the
    EMA of a run without warm-up keeps a share of (tools/ema_init_share.py)."""
    torch.manual_seed(int(train_config["seed"]) + rank)
    schedule = Schedule.from_config(train_config).to(device)
    return schedule, build_model(model_config, schedule).to(device)


def ema_module(ema: EMA, model_config: dict[str, Any], device: torch.device, schedule=None) -> nn.Module:
    m = build_model(model_config, schedule).to(device)
    m.load_state_dict(ema.state_dict())
    return m.eval()


@torch.no_grad()
def validation_loss(ema: EMA, model_config, val_x, schedule, cfg: TrainConfig, device, val_points=None,
                    stats=None) -> float:
    """Mean diffusion loss of the EMA weights on the validation split, with FIXED noise and timesteps (and, for an
    object model, its objects' points [N, P, 6] and the statistics).

    Always the plain parameter loss (uniform timestep weights, no geometric term), so that runs with different
    objective options report comparable validation losses."""
    model = ema_module(ema, model_config, device, schedule)
    gen = torch.Generator().manual_seed(12345)
    vcfg = TrainConfig(**{**cfg.__dict__, "cond_drop_prob": None, "loss_weighting": "uniform",
                          "geometry_weight": 0.0, "contact_weight": 0.0,
                          "object_penetration_weight": 0.0, "object_contact_weight": 0.0})
    total, count = 0.0, 0
    for i in range(0, val_x.shape[0], 1024):
        chunk = val_x[i:i + 1024].to(device)
        extra = {} if val_points is None else {"points": val_points[i:i + 1024].to(device), "stats": stats}
        loss, _, _ = objective_loss(model_config, model, chunk, schedule, vcfg, gen, **extra)
        total += loss.item() * chunk.shape[0]
        count += chunk.shape[0]
    return total / count
