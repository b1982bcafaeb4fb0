"""The object sampler's time with its inside/outside search as of a git commit against the working tree's, in ONE
process, alternating (machines here are shared and their speed drifts; a ratio within one run is what compares).

The search (``interhandgen.generation.object_sampling._deciding_samples``) of ``--commit`` is read with ``git show``
and swapped in for the "before" runs; everything else is the working tree's. Each repeat samples ``--num`` pairs
around the placements of a reference set (sample i: placement i mod S) once with each search, default settings,
and the benchmark fails unless both give the same samples, every array of the set alike (a search change that is
meant to be a pure speed-up must not change a decision). Wall and CPU seconds per run, the ratio after / before
per repeat, and torch's CPU capability go to the JSON.

    python benchmarks/object_search_ab.py --reference obj_s1005.npz --commit 3cc90d6 --num 1000 --threads 2 \\
        --out benchmarks/results/object_search_ab_avx2.json
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

import interhandgen.generation.object_sampling as object_sampling
from interhandgen._atomic import atomic_write_bytes
from interhandgen.data.format import TwoHandSet
from interhandgen.generation.object_api import ObjectInterHandGen, ObjectScene, object_sampler_defaults
from interhandgen.generation.object_sampling import ObjectSettings

ROOT = Path(__file__).resolve().parents[1]
MODULE = "src/interhandgen/generation/object_sampling.py"


def search_of_commit(commit: str):
    """``_deciding_samples`` as defined at ``commit``, evaluated in the working tree's module namespace (so that it
    sees the same constants and helpers)."""
    source = subprocess.run(["git", "show", f"{commit}:{MODULE}"], cwd=ROOT, check=True, capture_output=True,
                            text=True).stdout
    start = source.index("@torch.no_grad()\ndef _deciding_samples")
    end = source.index("\n\ndef ", start + 1)
    namespace = dict(vars(object_sampling))
    exec(compile(source[start:end], f"{commit}:{MODULE}", "exec"), namespace)
    return namespace["_deciding_samples"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference", required=True, help="TwoHandSet .npz with an object library (the placements)")
    ap.add_argument("--commit", required=True, help="git commit whose search is the 'before'")
    ap.add_argument("--model", default=None, help="object model (default: the bundled one)")
    ap.add_argument("--num", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    searches = {"before": search_of_commit(a.commit), "after": object_sampling._deciding_samples}
    scene = ObjectScene.of(TwoHandSet.load(a.reference))
    gen = ObjectInterHandGen.load(a.model)
    runs, first = [], None
    try:
        for repeat in range(a.repeats):
            wall = {}
            for label, search in searches.items():
                object_sampling._deciding_samples = search
                w, c = time.perf_counter(), time.process_time()
                pairs = gen.sample(a.num, scene, seed=a.seed, settings=object_sampler_defaults(),
                                   object_settings=ObjectSettings(), progress=False)
                c, w = time.process_time() - c, time.perf_counter() - w
                # every stored array; the metadata (settings, seeds, the checks' record) is the same by construction
                got = {k: v for k, v in pairs.to_arrays().items() if k != "metadata"}
                first = got if first is None else first
                same = first.keys() == got.keys() and all(np.array_equal(first[k], got[k]) for k in first)
                if not same:
                    raise SystemExit(f"repeat {repeat}, {label}: the samples differ from the first run's; the search "
                                     f"of {a.commit} and the working tree's do not decide alike")
                wall[label] = w
                runs.append({"repeat": repeat, "search": label, "wall_seconds": w, "cpu_seconds": c})
                print(f"repeat {repeat} {label}: {w:.1f} s wall, {c:.1f} s CPU", flush=True)
            runs[-1]["wall_ratio_after_to_before"] = wall["after"] / wall["before"]
    finally:
        object_sampling._deciding_samples = searches["after"]
    result = {"command": " ".join(sys.argv), "commit_before": a.commit, "num": a.num, "seed": a.seed,
              "threads": a.threads, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
              "machine": platform.processor() or platform.machine(), "torch": torch.__version__,
              "samples_identical": True, "runs": runs}
    atomic_write_bytes(Path(a.out), (json.dumps(result, indent=1) + "\n").encode())
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
