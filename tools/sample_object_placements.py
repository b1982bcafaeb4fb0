"""One sample of an object model per placement (object, pose) of a set's split, for benchmarks/object_protocol.py.

    python tools/sample_object_placements.py --reference obj160.npz --out model80.npz
    python tools/sample_object_placements.py --reference obj80.npz --split "" --num 1000 --out s1000.npz  # i mod 80
    python tools/sample_object_placements.py --reference obj160.npz --physics-rounds 16 --out settled80.npz
"""

from __future__ import annotations

import argparse
import dataclasses

from interhandgen.data.format import TwoHandSet
from interhandgen.generation.object_api import ObjectInterHandGen, ObjectScene, object_sampler_defaults
from interhandgen.generation.object_sampling import ObjectSettings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference", required=True, help="TwoHandSet .npz with an object library")
    ap.add_argument("--split", default="test", help='the split whose placements are used ("" for all pairs)')
    ap.add_argument("--num", type=int, default=None, help="samples (default: one per placement; sample i gets "
                    "placement i mod their number)")
    ap.add_argument("--model", default=None, help="object model (default: the bundled one)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-guidance", action="store_true",
                    help="no in-loop guidance (hand-hand APG and hand-object guidance off; the post-processing stays): "
                         "what a joint_object model takes, and the cascade's equal-post-processing row")
    ap.add_argument("--physics-rounds", type=int, default=0,
                    help="MuJoCo settling rounds (ObjectSettings.physics_rounds; default 0: off, as the sampler)")
    ap.add_argument("--temperature", type=float, default=None,
                    help="SamplerSettings.temperature: scale of every Gaussian draw of the reverse process (default: "
                         "the object sampler's, OBJECT_TEMPERATURE)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    ref = TwoHandSet.load(a.reference)
    ref = ref.select_split(a.split) if a.split else ref
    gen = ObjectInterHandGen.load(a.model)
    settings, osets = object_sampler_defaults(), ObjectSettings(physics_rounds=a.physics_rounds)
    if a.temperature is not None:
        settings = dataclasses.replace(settings, temperature=a.temperature)
    if a.no_guidance:
        settings = dataclasses.replace(settings, apg_weight=0.0)
        osets = dataclasses.replace(osets, object_guidance_weight=0.0)
    two = gen.sample(a.num or len(ref), ObjectScene.of(ref), seed=a.seed, settings=settings, object_settings=osets,
                     progress=False)
    print("wrote", two.save(a.out), len(two), "pairs")


if __name__ == "__main__":
    main()
