"""Wall time of the main commands at the default thread setup against ``--threads 1`` and ``--threads 2``.

    python benchmarks/threads.py --out benchmarks/results/threads.json

Every timed run is a fresh ``python -m interhandgen ...`` subprocess (start-up included: it is what a user
waits for), in two load conditions measured in the same invocation:

* ``current``: the machine as it is (the JSON records the load average before and after);
* ``hogs``: with ``--hogs`` (default 2) CPU-bound background processes (``python -c "while True: pass"``) that the
  benchmark starts before and kills after the condition, also when a run fails.

The JSON also holds the CPU seconds of each run (user + system, children included): a load-independent
measure of the work, and of spinning when it grows with the thread count.

Variants per command: ``default`` (no option), ``t1`` (``--threads 1``), ``t2`` (``--threads 2``) and, with
``--legacy``, ``legacy`` = the default thread count with the OpenMP runtime's own spin-then-sleep waiting (what
every command did before the thread policy; ``GOMP_SPINCOUNT=300000`` in the environment, libgomp's default
spin count, makes the policy leave the waiting alone). After one untimed warm-up run per command, the variants of
one command run back to back, in an
order rotated per repeat, so they share the load. Per command and condition the JSON reports the best wall time
of each variant over ``--repeats`` and ``default / min(t1, t2)`` (target: <= 1.3 under two hogs, <= 1.1 quiet).

Inputs (not timed) are made once with ``--threads 1``: a small synthetic set (``data synth``), samples to
complete and evaluate, and a one-epoch training config of the small architecture. The default sizes keep the
whole benchmark under about 10 minutes on the 2-core development machine when it is otherwise quiet; make it
bigger with ``--sample-num``, ``--synth-num``, ``--train-pairs``, ``--eval-num``, ``--repeats``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from interhandgen import threads as _policy

REPO = Path(__file__).resolve().parent.parent
VARIANTS = ("default", "t1", "t2")
LEGACY_ENV = {"GOMP_SPINCOUNT": "300000"}
# Variables of the thread policy: removed from the benchmark's children so that "default" is the default.
POLICY_ENVS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")

TRAIN_YAML = """model:
  data_dim: 64
  hidden_dim: 256
  embed_dim: 128
  num_layers: 7
  skips: [1, 3, 5, 6]
  num_heads: 4
  ff_dim: 512
  num_encoder_layers: 2
  dropout: 0.0
  null_condition: learned
  reference_compat: false
train:
  epochs: 1
  batch_size: {batch}
  lr: 1.0e-3
  warmup_steps: 10
  schedule: cosine
  num_timesteps: 129
  checkpoint_every: 100000
  log_every: 100000
  sample_every_epochs: 1000
  seed: 0
"""


def _env(variant: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in POLICY_ENVS}
    if variant == "legacy":
        env.update(LEGACY_ENV)
    return env


def _argv(variant: str) -> list[str]:
    return {"default": [], "legacy": [], "t1": ["--threads", "1"], "t2": ["--threads", "2"]}[variant]


def _cli(args: list[str], env: dict, cwd: Path, timeout: float | None = None) -> tuple[float, float]:
    """(wall s, CPU s of the process and its children) of one ``python -m interhandgen ARGS`` run."""
    r0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "interhandgen", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)
    wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"interhandgen {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall, (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)


def _commands(work: Path, a: argparse.Namespace) -> dict[str, callable]:
    """name -> function(out_tag) returning the argv of one timed run (outputs go to fresh paths)."""
    return {
        "sample": lambda tag: ["sample", "--num", str(a.sample_num), "--seed", "0", "--out", str(work / f"s_{tag}.npz"),
                               "--no-progress"],
        "complete": lambda tag: ["complete", "--given", str(work / "given.npz"), "--side", "left", "--seed", "0",
                                 "--out", str(work / f"c_{tag}.npz"), "--no-progress"],
        "evaluate": lambda tag: ["evaluate", "--samples", str(work / "given.npz"), "--reference", str(work / "ref.npz"),
                                 "--reference-split", "train", "--out", str(work / f"report_{tag}"),
                                 "--replications", "2", "--subset-size", str(a.eval_num // 2),
                                 "--no-feature-cache", "--no-floor", "--no-progress"],
        "train": lambda tag: ["train", "--config", str(work / "train.yaml"), "--data", str(work / "train.npz"),
                              "--out", str(work / f"run_{tag}"), "--no-progress"],
        "synth": lambda tag: ["data", "synth", "--num", str(a.synth_num), "--seed", "0",
                              "--out", str(work / f"synth_{tag}.npz"), "--no-progress"],
    }


def _prepare(work: Path, a: argparse.Namespace) -> None:
    env = {**_env("default"), "OMP_NUM_THREADS": "1"}
    _cli(["data", "synth", "--num", str(a.train_pairs), "--seed", "1", "--out", str(work / "train.npz"),
          "--no-progress"], env, work)
    _cli(["data", "synth", "--num", str(a.eval_num), "--seed", "2", "--splits", "1,0,0",
          "--out", str(work / "ref.npz"), "--no-progress"], env, work)
    _cli(["sample", "--num", str(a.eval_num), "--seed", "5", "--out", str(work / "given.npz"), "--no-progress"],
         env, work)
    (work / "train.yaml").write_text(TRAIN_YAML.format(batch=a.train_batch))


def _start_hogs(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def _stop_hogs(hogs: list[subprocess.Popen]) -> None:
    for p in hogs:
        p.kill()
    for p in hogs:
        p.wait()


def _measure(work: Path, a: argparse.Namespace, commands: dict, condition: str, variants: list[str],
             out: dict, save) -> dict:
    """Fills ``out`` command by command (``save()`` after each, so an interrupted run keeps what it measured)."""
    for name in a.commands:
        walls, cpus = {v: [] for v in variants}, {v: [] for v in variants}
        waits = []  # what the default's AUTO policy sees (read here, just before the process starts)
        # One untimed run first: the first process after another command was the slowest in trial runs, whatever
        # its thread setting.
        _cli(commands[name](f"{condition}_warm") + _argv("t1"), _env("t1"), work)
        for p in work.glob(f"*{condition}_warm*"):
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        for r in range(a.repeats):
            order = variants[r % len(variants):] + variants[: r % len(variants)]
            for v in order:
                tag = f"{condition}_{v}_{r}"
                if v == "default":
                    others, cpus = _policy.runnable_others(), _policy.available_cpus()
                    waits.append({"runnable_others": others, "choice": _policy.choose_wait(cpus, cpus, others)})
                wall, cpu = _cli(commands[name](tag) + _argv(v), _env(v), work)
                walls[v].append(wall)
                cpus[v].append(cpu)
                for p in work.glob(f"*{tag}*"):  # keep the disk small
                    shutil.rmtree(p) if p.is_dir() else p.unlink()
                print(f"{condition:8s} {name:9s} {v:8s} {wall:7.1f} s wall {cpu:7.1f} s CPU", flush=True)
        best = {v: min(w) for v, w in walls.items()}
        entry = {"wall_s": walls, "cpu_s": cpus, "best_s": best, "default_wait_expected": waits,
                 "default_over_best_of_1_2": best["default"] / min(best["t1"], best["t2"])}
        if "legacy" in best:
            entry["legacy_over_default"] = best["legacy"] / best["default"]
        out[name] = entry
        save()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/results/threads.json")
    ap.add_argument("--commands", nargs="+", default=["sample", "complete", "evaluate", "train", "synth"],
                    choices=["sample", "complete", "evaluate", "train", "synth"])
    ap.add_argument("--conditions", nargs="+", default=["current", "hogs"], choices=["current", "hogs"])
    ap.add_argument("--hogs", type=int, default=2, help="CPU-bound background processes in the 'hogs' condition")
    ap.add_argument("--legacy", action="store_true",
                    help="also time the pre-policy waiting (slow under hogs: minutes per command)")
    ap.add_argument("--repeats", type=int, default=2, help="runs per variant (the order rotates per repeat)")
    ap.add_argument("--sample-num", type=int, default=100, help="pairs per timed `sample`")
    ap.add_argument("--eval-num", type=int, default=100, help="pairs completed and evaluated (and reference pairs)")
    ap.add_argument("--synth-num", type=int, default=24, help="pairs per timed `data synth`")
    ap.add_argument("--train-pairs", type=int, default=200, help="pairs of the training set (one epoch is timed)")
    ap.add_argument("--train-batch", type=int, default=64)
    a = ap.parse_args()
    variants = list(VARIANTS) + (["legacy"] if a.legacy else [])
    t_start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="ihg_threads_"))
    result = {"command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "cpus": os.cpu_count(),
              "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
              "platform": platform.platform(), "python": platform.python_version(),
              "sizes": {k: getattr(a, k) for k in ("sample_num", "eval_num", "synth_num", "train_pairs",
                                                  "train_batch", "repeats", "hogs")},
              "conditions": {}}
    out = Path(a.out)
    sys.path.insert(0, str(REPO / "src"))
    from interhandgen._atomic import atomic_write_bytes

    def save() -> None:
        result["total_s"] = time.perf_counter() - t_start
        atomic_write_bytes(out, json.dumps(result, indent=1).encode())

    result["complete"] = False
    try:
        _prepare(work, a)
        commands = _commands(work, a)
        for condition in a.conditions:
            entry = result["conditions"][condition] = {"loadavg_before": os.getloadavg(), "commands": {}}
            hogs = _start_hogs(a.hogs) if condition == "hogs" else []
            try:
                _measure(work, a, commands, condition, variants, entry["commands"], save)
            finally:
                _stop_hogs(hogs)
            entry["loadavg_after"] = os.getloadavg()
        result["complete"] = True
    finally:
        shutil.rmtree(work, ignore_errors=True)
        save()
    for condition, c in result["conditions"].items():
        for name, e in c["commands"].items():
            print(f"{condition:8s} {name:9s} default / best(1,2) = {e['default_over_best_of_1_2']:.2f}"
                  + (f"   legacy / default = {e['legacy_over_default']:.2f}" if "legacy_over_default" in e else ""))
    print(f"wrote {out} ({result['total_s']:.0f} s)")


if __name__ == "__main__":
    main()
