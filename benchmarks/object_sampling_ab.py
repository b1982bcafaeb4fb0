"""The object sampler's time at a git commit against the working tree, alternating in one run (machines here are
shared and their speed drifts; a ratio within one run is what compares).

The package of ``--commit`` is unpacked (``git archive``) into a temporary folder; each repeat runs the sampler once
with it and once with the working tree's ``src``, each in a fresh process (``python -c`` with that ``src`` first on
the path; imports and model loading are not timed), in alternating order (before/after, then after/before, ...).
Each run samples ``--num`` pairs around the placements of a reference set (sample i: placement i mod S), default
settings, seed ``--seed``; the benchmark fails unless both give the same samples, every array of the set alike
(the metadata too, but for the model file's path; a change meant as a pure speed-up must not change a decision). Wall and CPU seconds per run, the ratio after / before
per repeat, and torch's CPU capability go to the JSON.

    python benchmarks/object_sampling_ab.py --reference obj_s1005.npz --commit 57bd56e --num 1000 --threads 2 \\
        --repeats 2 --out benchmarks/results/object_sampling_ab_avx2.json
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import torch

from interhandgen._atomic import atomic_write_bytes
from interhandgen.data.format import TwoHandSet

ROOT = Path(__file__).resolve().parents[1]

# Run in a fresh interpreter with the chosen src first on the path: sample, save, print the timing as JSON.
WORKER = """
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
import torch
torch.set_num_threads(int(sys.argv[5]))
import interhandgen
assert os.path.realpath(interhandgen.__file__).startswith(os.path.realpath(sys.argv[1])), interhandgen.__file__
from interhandgen.data.format import TwoHandSet
from interhandgen.generation.object_api import ObjectInterHandGen, ObjectScene, object_sampler_defaults
from interhandgen.generation.object_sampling import ObjectSettings
scene = ObjectScene.of(TwoHandSet.load(sys.argv[2]))
gen = ObjectInterHandGen.load(None if sys.argv[6] == "-" else sys.argv[6])
t, c = time.perf_counter(), time.process_time()
pairs = gen.sample(int(sys.argv[3]), scene, seed=int(sys.argv[4]), settings=object_sampler_defaults(),
                   object_settings=ObjectSettings(), progress=False)
wall, cpu = time.perf_counter() - t, time.process_time() - c
pairs.save(sys.argv[7])
print(json.dumps({"wall_s": wall, "cpu_s": cpu}))
"""


def unpack(commit: str, folder: Path) -> Path:
    """The ``src`` tree of ``commit`` written under ``folder``; returns its ``src`` path."""
    archive = subprocess.run(["git", "archive", "--format=tar", commit, "src"], cwd=ROOT, check=True,
                             capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    return folder / "src"


def run(src: Path, args, out: Path) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    done = subprocess.run([sys.executable, "-c", WORKER, str(src), args.reference, str(args.num), str(args.seed),
                           str(args.threads), args.model or "-", str(out)], env=env, check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _comparable(pairs: TwoHandSet) -> dict[str, np.ndarray]:
    """Every array of the set, the metadata without the model's path (each tree loads its own copy)."""
    arrays = pairs.to_arrays()
    meta = dict(pairs.metadata)
    meta.pop("model", None)
    arrays["metadata"] = np.array(json.dumps(meta, sort_keys=True))
    return arrays


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference", required=True, help="TwoHandSet .npz with an object library (the placements)")
    ap.add_argument("--commit", required=True, help="git commit whose package is the 'before'")
    ap.add_argument("--model", default=None, help="object model (default: the bundled one of each tree)")
    ap.add_argument("--num", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    if a.num < 1 or a.repeats < 1 or a.threads < 1:
        raise SystemExit("--num, --repeats and --threads must be >= 1")
    if not Path(a.reference).is_file():
        raise SystemExit(f"--reference {a.reference}: no such file")
    commit = subprocess.run(["git", "rev-parse", a.commit], cwd=ROOT, check=True, capture_output=True,
                            text=True).stdout.strip()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        trees = {"before": unpack(commit, tmp / "before"), "after": ROOT / "src"}
        for r in range(a.repeats):
            order = ("before", "after") if r % 2 == 0 else ("after", "before")
            row = {"repeat": r}
            for which in order:
                row[which] = run(trees[which], a, tmp / f"{which}.npz")
                print(f"repeat {r} {which}: {row[which]['wall_s']:.1f} s wall, {row[which]['cpu_s']:.1f} s CPU",
                      flush=True)
            before, after = (_comparable(TwoHandSet.load(tmp / f"{w}.npz")) for w in ("before", "after"))
            different = sorted(k for k in before if not np.array_equal(before[k], after[k]))
            if different or set(before) != set(after):
                raise SystemExit(f"the two trees gave different samples (arrays {different}): not a pure speed-up")
            row["after_over_before_wall"] = row["after"]["wall_s"] / row["before"]["wall_s"]
            runs.append(row)
            print(f"repeat {r}: after / before {row['after_over_before_wall']:.3f} (samples identical)", flush=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "src"], cwd=ROOT, capture_output=True,
                                text=True).stdout.strip())
    record = {"reference": a.reference, "num": a.num, "seed": a.seed, "threads": a.threads, "model": a.model,
              "before_commit": commit, "after": f"working tree at {head}" + (" (src modified)" if dirty else ""),
              "samples_identical": True, "machine": platform.machine(), "processor": platform.processor(),
              "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
              "cpu_count": os.cpu_count(), "runs": runs}
    atomic_write_bytes(Path(a.out), (json.dumps(record, indent=2) + "\n").encode())
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
