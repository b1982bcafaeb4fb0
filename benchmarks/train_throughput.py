"""Training throughput (pairs/s): the `small` and `paper` configs in-process, and the `interhandgen train` CLI
as one process vs two DDP processes (torchrun, gloo on CPU), all in ONE run.

Part 1, in-process: for each config, a freshly built network (``interhandgen.models.build_model``) is trained
for a few steps on a random standardised batch of the config's batch size, each step exactly as the trainer
does it: ``objective_loss`` (both stages in one forward pass), backward, gradient clipping, AdamW step, EMA
update. One warm-up step, then the median of the timed steps. Reports pairs/s per config and small/paper.

Part 2, the CLI: ``interhandgen train`` on a small synthetic set (generated with ``interhandgen data synth`` into
--workdir unless it is already there), as a plain process and under ``torchrun --nproc_per_node=2``,
both with ``--threads`` (default 1) and OMP_NUM_THREADS to match. The config is configs/small.yaml with two
logging changes only (written beside the runs): ``log_every: 1`` so that every step has a time stamp in
log.csv, and ``sample_every_epochs`` = the epoch count so the sample PNG is rendered once, after the last row.
From log.csv's ``seconds`` column (time since the loop started: start-up excluded) it reports
  * step pairs/s: the training steps of epochs 2.. only (within each epoch, first to last step row);
  * epoch pairs/s: end of epoch 1 to end of the last epoch (steps + validation loss + checkpoint writes);
and the DDP/single ratio of both, of the medians and of the best runs over --repeats alternating runs of each
kind (the other jobs' load drifts; a DDP run gains only while both cores are free). torchrun gets a wrapper
script with no arguments: its own parser would otherwise grab CLI options that prefix-match its options.

    python benchmarks/train_throughput.py --out benchmarks/results/train_throughput.json

Times on a CPU shared with other jobs are pessimistic and noisy; compare the ratios, which come from one run.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import torch
import yaml

from interhandgen._atomic import atomic_write_bytes
from interhandgen.diffusion import Schedule
from interhandgen.models import build_model, objective_loss
from interhandgen.training import EMA, load_experiment

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- part 1: in-process steps
def time_train_steps(config_path: Path, batch_size: int | None, warmup: int, steps: int, device: str,
                     seed: int = 0) -> dict:
    """Seconds per training step of a config's network, timed as the trainer runs a step."""
    model_cfg, cfg = load_experiment(config_path)
    batch_size = int(batch_size or cfg.batch_size)
    torch.manual_seed(seed)
    net = build_model(model_cfg).to(device).train()
    ema = EMA(net, cfg.ema_decay)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    schedule = Schedule.from_config(cfg.to_dict()).to(device)
    gen = torch.Generator().manual_seed(seed)
    # Standardised canonical pairs [B, 2, 64] (anchor first): unit-variance data, as the trainer sees it.
    batch = torch.randn(batch_size, 2, 64, generator=gen).to(device)

    def step() -> float:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss, _, _ = objective_loss(model_cfg, net, batch, schedule, cfg, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
        opt.step()
        ema.update(net)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{config_path}: loss became {loss.item()}")
        return time.perf_counter() - t0

    warm = [step() for _ in range(warmup)]
    timed = [step() for _ in range(steps)]
    median = statistics.median(timed)
    return {
        "config": str(config_path.relative_to(REPO) if config_path.is_relative_to(REPO) else config_path),
        "parameters": sum(p.numel() for p in net.parameters()),
        "batch_size": batch_size, "rows_per_forward": 2 * batch_size if cfg.cond_drop_prob is None else batch_size,
        "warmup_seconds": [round(s, 4) for s in warm], "step_seconds": [round(s, 4) for s in timed],
        "median_step_seconds": round(median, 4), "pairs_per_second": round(batch_size / median, 2),
    }


# --------------------------------------------------------------------------- part 2: the CLI, 1 vs 2 processes
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def ensure_data(path: Path, num: int) -> dict:
    if path.is_file():
        return {"path": str(path), "generated": False}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "interhandgen", "data", "synth", "--num", str(num), "--seed", "0",
                    "--out", str(path), "--no-progress"], check=True)
    return {"path": str(path), "generated": True, "generation_seconds": round(time.perf_counter() - t0, 1)}


def write_bench_config(src: Path, dst: Path, epochs: int) -> dict:
    doc = yaml.safe_load(src.read_text())
    doc["train"]["log_every"] = 1
    doc["train"]["sample_every_epochs"] = epochs
    dst.write_text(yaml.safe_dump(doc))
    return doc["train"]


def read_log(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def throughput_from_log(rows: list[dict], batch_size: int) -> dict:
    """Pairs/s of a run from its log.csv (log_every = 1), skipping the first epoch (warm-up)."""
    train = [r for r in rows if r["kind"] == "train"]
    val = [r for r in rows if r["kind"] == "val"]
    epochs = sorted({int(r["epoch"]) for r in train})
    if len(epochs) < 2 or len(val) != len(epochs):
        raise ValueError(f"log.csv holds {len(epochs)} epochs of steps and {len(val)} validation rows; "
                         "need at least 2 complete epochs")
    step_seconds, step_count = 0.0, 0
    for e in epochs[1:]:
        rows_e = [r for r in train if int(r["epoch"]) == e]
        step_seconds += float(rows_e[-1]["seconds"]) - float(rows_e[0]["seconds"])
        step_count += len(rows_e) - 1
    steps_per_epoch = len([r for r in train if int(r["epoch"]) == epochs[1]])
    epoch_span = float(val[-1]["seconds"]) - float(val[0]["seconds"])
    epoch_steps = steps_per_epoch * (len(epochs) - 1)
    return {
        "epochs": len(epochs), "steps_per_epoch": steps_per_epoch, "global_batch_size": batch_size,
        "steps_timed": step_count, "steps_seconds": round(step_seconds, 1),
        "step_pairs_per_second": round(step_count * batch_size / step_seconds, 1) if step_seconds > 0 else None,
        "epochs_timed": len(epochs) - 1, "epochs_seconds": round(epoch_span, 1),
        "epoch_pairs_per_second": round(epoch_steps * batch_size / epoch_span, 1) if epoch_span > 0 else None,
        "loop_seconds_total": float(val[-1]["seconds"]),
    }


def run_cli(workdir: Path, name: str, config: Path, data: Path, epochs: int, threads: int, nproc: int,
            port: int) -> tuple[Path, float]:
    out = workdir / name
    if out.exists():
        raise FileExistsError(f"{out} exists from an earlier run: remove it or pass another --workdir")
    argv = ["train", "--config", str(config), "--data", str(data), "--out", str(out), "--epochs", str(epochs),
            "--threads", str(threads), "--no-progress"]
    wrapper = workdir / f"{name}_launch.py"
    wrapper.write_text(textwrap.dedent(f"""
        import sys
        from interhandgen.cli import main
        sys.exit(main({argv!r}))
    """))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, str(wrapper)] if nproc == 1 else [
        sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", f"--master_port={port}",
        str(wrapper)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return out, wall


# --------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process (default %(default)s)")
    ap.add_argument("--device", default="cpu", help="device of part 1 (the CLI runs use CPU)")
    ap.add_argument("--small-steps", type=int, default=20, help="timed steps of the small config")
    ap.add_argument("--paper-steps", type=int, default=3, help="timed steps of the paper config")
    ap.add_argument("--paper-batch", type=int, default=256, help="batch of the paper config (its own: 256)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--workdir", default="/tmp/trainbench", help="scratch folder for the data set and the runs")
    ap.add_argument("--data", default=None, help="TwoHandSet .npz (default: WORKDIR/synth2000.npz, generated)")
    ap.add_argument("--num", type=int, default=2000, help="size of the generated synthetic set")
    ap.add_argument("--epochs", type=int, default=10, help="epochs of each CLI run (the first is not timed)")
    ap.add_argument("--nproc", type=int, default=2, help="processes of the DDP run")
    ap.add_argument("--repeats", type=int, default=3, help="CLI runs of each kind, alternating (median reported)")
    ap.add_argument("--port", type=int, default=29531)
    ap.add_argument("--out", default="benchmarks/results/train_throughput.json")
    args = ap.parse_args()
    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    if args.repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {args.repeats}")
    if args.epochs < 2:
        raise ValueError(f"--epochs must be >= 2 (the first epoch is not timed), got {args.epochs}")
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    t_all = time.perf_counter()

    # Part 1
    steps = {}
    for name, n_steps, batch in (("small", args.small_steps, None), ("paper", args.paper_steps, args.paper_batch)):
        steps[name] = time_train_steps(REPO / "configs" / f"{name}.yaml", batch, args.warmup, n_steps, args.device)
        print(f"{name}: {steps[name]['parameters']:,} parameters, batch {steps[name]['batch_size']}: "
              f"{steps[name]['median_step_seconds']:.3f} s/step = {steps[name]['pairs_per_second']:.1f} pairs/s",
              flush=True)
    ratio = steps["small"]["pairs_per_second"] / steps["paper"]["pairs_per_second"]
    print(f"small / paper pairs/s: {ratio:.1f}x", flush=True)

    # Part 2
    workdir = Path(args.workdir) / f"run_{time.strftime('%Y%m%d_%H%M%S')}"
    workdir.mkdir(parents=True)
    data = Path(args.data) if args.data else Path(args.workdir) / f"synth{args.num}.npz"
    data_info = ensure_data(data, args.num)
    config = workdir / "small_bench.yaml"
    train_cfg = write_bench_config(REPO / "configs" / "small.yaml", config, args.epochs)
    runs: dict[str, list[dict]] = {"single": [], "ddp": []}
    # Alternating repeats (single, ddp, single, ddp, ...): the other jobs' load drifts, so each kind sees a
    # similar share of it; the ratio is of the medians.
    for rep in range(args.repeats):
        for name, nproc in (("single", 1), ("ddp", args.nproc)):
            load = os.getloadavg()[0]
            run_dir, wall = run_cli(workdir, f"{name}_{rep}", config, data, args.epochs, args.threads, nproc,
                                    args.port)
            r = {"processes": nproc, "threads_per_process": args.threads, "load_average_1min_at_start": round(load, 2),
                 "wall_seconds": round(wall, 1),
                 **throughput_from_log(read_log(run_dir / "log.csv"), int(train_cfg["batch_size"]))}
            runs[name].append(r)
            print(f"CLI {name} #{rep} ({nproc} process(es), load {load:.2f}): steps {r['step_pairs_per_second']} "
                  f"pairs/s, epochs {r['epoch_pairs_per_second']} pairs/s, wall {wall:.1f} s", flush=True)
    keys = ("step_pairs_per_second", "epoch_pairs_per_second")
    cli = {name: {"processes": rs[0]["processes"], "threads_per_process": args.threads,
                  **{f"median_{k}": round(statistics.median(r[k] for r in rs), 1) for k in keys},
                  **{f"best_{k}": max(r[k] for r in rs) for k in keys}, "runs": rs}
           for name, rs in runs.items()}
    # Median: what a loaded machine gives; best: closest to an idle machine (a DDP run needs BOTH cores free).
    ddp_ratio = {**{k: round(cli["ddp"][f"median_{k}"] / cli["single"][f"median_{k}"], 3) for k in keys},
                 **{f"best_{k}": round(cli["ddp"][f"best_{k}"] / cli["single"][f"best_{k}"], 3) for k in keys}}
    print(f"median pairs/s single: steps {cli['single']['median_step_pairs_per_second']}, epochs "
          f"{cli['single']['median_epoch_pairs_per_second']}; ddp: steps {cli['ddp']['median_step_pairs_per_second']}, "
          f"epochs {cli['ddp']['median_epoch_pairs_per_second']}", flush=True)
    print(f"DDP / single (medians): steps {ddp_ratio['step_pairs_per_second']}x, "
          f"epochs {ddp_ratio['epoch_pairs_per_second']}x; best runs: steps "
          f"{ddp_ratio['best_step_pairs_per_second']}x, epochs {ddp_ratio['best_epoch_pairs_per_second']}x", flush=True)

    load_after = os.getloadavg()
    result = {
        "note": ("taken on a CPU shared with other jobs (see load_average_*): absolute times are pessimistic and "
                 "noisy; the ratios come from one run"),
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "in_process": {**steps, "small_over_paper_pairs_per_second": round(ratio, 2),
                       "step": "objective_loss (both stages, one forward) + backward + clip + AdamW + EMA"},
        "cli": {**cli, "ddp_over_single": ddp_ratio, "data": data_info, "config": "configs/small.yaml with "
                "log_every: 1 and sample_every_epochs: epochs", "epochs": args.epochs,
                "first_epoch_excluded": True, "repeats_alternating": args.repeats},
        "torch_threads": torch.get_num_threads(), "threads_argument": args.threads,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "machine": {"processor": cpu_model(), "cpu_count": os.cpu_count(),
                    "platform": platform.platform(), "torch": torch.__version__,
                    "python": platform.python_version()},
        "device": args.device, "total_seconds": round(time.perf_counter() - t_all, 1),
    }
    atomic_write_bytes(args.out, (json.dumps(result, indent=2) + "\n").encode())
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
