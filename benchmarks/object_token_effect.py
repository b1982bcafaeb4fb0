"""What an object model's network takes from its object token: the same noise with and without it.

Samples ``--num`` pairs around the placements of a reference set (sample i: placement i mod S) with the network
alone (every guidance and post-processing stage off), once with the objects' tokens and once with the null object
token for every row (the same seed, so the same noise), and once more with the tokens and another seed. Reports per
hand the mean distance (mm) between the root positions of the same sample with and without the token, beside the
distance between the two seeds' samples (what the noise alone moves), the same for the pose coefficients, and how the
distance from the left hand's root to the object's centre of mass follows the object's size (Pearson correlation
with its largest extent) in the samples with the token, without it, and in the reference data.

    python benchmarks/object_token_effect.py --reference obj_s1005.npz --num 400 \\
        --out benchmarks/results/object_token_effect_bundled.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import numpy as np
import torch

from interhandgen._atomic import atomic_write_bytes
from interhandgen.data.format import TwoHandSet
from interhandgen.generation.object_api import ObjectInterHandGen, ObjectScene, object_sampler_defaults


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def size_correlation(two: TwoHandSet, extents: np.ndarray) -> float:
    """Pearson correlation between the left root's distance to the object's centre and the object's extent."""
    d = np.linalg.norm(np.asarray(two.left.transl) - two.object_pose[:, 4:7], axis=1)
    return float(np.corrcoef(d, extents[np.asarray(two.object_id)])[0, 1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="object model (default: the bundled one)")
    ap.add_argument("--reference", required=True)
    ap.add_argument("--num", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sampling = _load("object_sampling")
    ref = TwoHandSet.load(args.reference)
    scene = ObjectScene.of(ref)
    gen = ObjectInterHandGen.load(args.model)
    alone = sampling.VARIANTS["none"]

    def draw(seed: int) -> TwoHandSet:
        return gen.sample(args.num, scene, seed=seed, settings=object_sampler_defaults(), object_settings=alone,
                          progress=False)

    with_token = draw(args.seed)
    with sampling.null_object_tokens(gen):
        null = draw(args.seed)
    other_seed = draw(args.seed + 1)
    lib = ref.object_library
    extents = np.array([np.ptp(v, axis=0).max() for v in lib.vertices])
    result = {"model": gen.model.source, "reference": args.reference, "num": args.num, "seed": args.seed,
              "hands": {}}
    for side in ("left", "right"):
        t = [np.asarray(s.hand(side).transl) for s in (with_token, null, other_seed)]
        p = [np.asarray(s.hand(side).pose) for s in (with_token, null, other_seed)]
        result["hands"][side] = {
            "root_mm_token_vs_null": float(np.linalg.norm(t[0] - t[1], axis=1).mean() * 1000.0),
            "root_mm_seed_vs_seed": float(np.linalg.norm(t[0] - t[2], axis=1).mean() * 1000.0),
            "pose_l2_token_vs_null": float(np.linalg.norm(p[0] - p[1], axis=1).mean()),
            "pose_l2_seed_vs_seed": float(np.linalg.norm(p[0] - p[2], axis=1).mean()),
        }
    result["size_correlation"] = {"data": size_correlation(ref, extents),
                                  "with_token": size_correlation(with_token, extents),
                                  "null_token": size_correlation(null, extents)}
    print(json.dumps(result, indent=1))
    atomic_write_bytes(args.out, (json.dumps(result, indent=1) + "\n").encode())


if __name__ == "__main__":
    main()
