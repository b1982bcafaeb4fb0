"""One sample of an object model per placement (object, pose) of a set's split, for benchmarks/object_protocol.py.

    python tools/sample_object_placements.py --reference obj160.npz --out model80.npz
"""

from __future__ import annotations

import argparse

from interhandgen.data.format import TwoHandSet
from interhandgen.generation.cascade import SamplerSettings
from interhandgen.generation.object_api import ObjectInterHandGen, ObjectScene


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference", required=True, help="TwoHandSet .npz with an object library")
    ap.add_argument("--split", default="test")
    ap.add_argument("--model", default=None, help="object model (default: the bundled one)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    ref = TwoHandSet.load(a.reference).select_split(a.split)
    gen = ObjectInterHandGen.load(a.model)
    two = gen.sample(len(ref), ObjectScene.of(ref), seed=a.seed, settings=SamplerSettings(resample_rounds=0),
                     progress=False)
    print("wrote", two.save(a.out), len(two), "pairs")


if __name__ == "__main__":
    main()
