"""Spread of an object model's network-alone samples (no guidance, no post-processing), per standardised coordinate:
over all samples and within a placement (the std over the draws of one object placement), for a list of sampler
temperatures; the reference set's own spread beside them (one pair per placement, so over all pairs only).

Sample i gets placement i mod S (S placements of ``--reference``); ``--num`` must be a multiple of S. The
coordinates are the pose, shape and rotation numbers of both hands (the anchor's translation places it in the object
frame and is included; the partner's is relative to the anchor), standardised by the model's own statistics, so the
training data has about 1 in every coordinate.

    python benchmarks/object_spread.py --reference obj_s1005.npz --num 800 --temperatures 1,0.3 --out spread.json
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import sys
from pathlib import Path

import torch

from interhandgen._atomic import atomic_write_bytes
from interhandgen.data.format import TwoHandSet
from interhandgen.exceptions import InputError
from interhandgen.generation.object_api import ObjectInterHandGen, ObjectScene, object_sampler_defaults
from interhandgen.objects.frame import to_object_frame

_spec = importlib.util.spec_from_file_location("object_sampling_bench", Path(__file__).with_name("object_sampling.py"))
_sampling = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_sampling)
# the network alone: no guidance, no post-processing stage (object_sampling.py's variant "none"); the hand-hand APG
# and the contact settling are switched off below too
NETWORK_ALONE = _sampling.VARIANTS["none"]


def spread(z: torch.Tensor, placements: int) -> dict[str, float]:
    """z [N, 2, 64] standardised samples, sample i of placement i mod ``placements``."""
    out = {"all": float(z.std(0).mean())}
    if z.shape[0] > placements:
        out["within_placement"] = float(z.reshape(-1, placements, *z.shape[1:]).std(0).mean())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference", required=True, help="TwoHandSet .npz with objects (its placements are used)")
    ap.add_argument("--model", default=None, help="object model (default: the bundled one)")
    ap.add_argument("--num", type=int, default=800)
    ap.add_argument("--temperatures", default="1")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    ref = TwoHandSet.load(a.reference)
    scene = ObjectScene.of(ref)
    if a.num < 2 * len(ref) or a.num % len(ref):
        raise InputError(f"--num must be a multiple of the reference's {len(ref)} placements, at least twice it; "
                         f"got {a.num}")
    gen = ObjectInterHandGen.load(a.model)
    mean, std = gen.model.stats_mean.cpu(), gen.model.stats_std.cpu()
    data = (to_object_frame(ref, points=False).x.float() - mean) / std
    result = {"command": " ".join(sys.argv), "model": gen.model.source, "reference": a.reference, "num": a.num,
              "placements": len(ref), "seed": a.seed, "data": spread(data, len(ref)), "temperatures": {}}
    for t in (float(x) for x in a.temperatures.split(",")):
        settings = dataclasses.replace(object_sampler_defaults(), apg_weight=0.0, settle_steps=0, temperature=t)
        two = gen.sample(a.num, scene, seed=a.seed, settings=settings, object_settings=NETWORK_ALONE, progress=False)
        # back into the object frame the data is measured in (the sampler's own frame, up to rounding)
        x = to_object_frame(two, points=False).x.float()
        result["temperatures"][f"{t:g}"] = spread((x - mean) / std, len(ref))
        print(f"temperature {t:g}: {result['temperatures'][f'{t:g}']}", flush=True)
    print(f"data: {result['data']}")
    atomic_write_bytes(a.out, (json.dumps(result, indent=2) + "\n").encode())
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
