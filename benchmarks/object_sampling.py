"""Object-conditioned sampling: time of N samples with guidance, and hand-object figures against the data's.

Samples ``--num`` pairs from an object model conditioned on the placements (object, pose) of a reference set's
test split (sample i: placement i mod S), with the default guidance and settling, timed (model loading excluded,
object encoding included); then, on ``--metric-pairs`` of those samples and on the reference split, the exact
hand-object metrics of :mod:`interhandgen.objects.metrics` (penetration volume and depth per hand, contact of
each hand and of both) and optionally the MuJoCo stability test. Variants (``--variants``): ``full`` (guidance +
settling, redraw: the default), ``none`` (the network alone), ``no_settle`` (network + guidance),
``rigid_settle``, ``grasp_settle``, ``grasp_redraw``, ``no_guidance``, ``redraw4``, ``attract100``,
``support_redraw``, ``support_redraw2`` (the redraw with the equilibrium check), ``lift10``, ``lift20``,
``lift10_support`` (the support lift), ``physics1`` ... ``physics16`` (MuJoCo settling with 0-15 redraw rounds; one
stage off or on at a time, see ``VARIANTS``), ``no_object`` (the null object token: hands without the object, measured against the same objects),
``blind`` (the cascade without the object, under the same post-processing: the network gets the null object token
in both stages, every guidance and post-processing stage the object, as in ``full``; ``blind_<variant>``: the same
with that variant's stages, e.g. ``blind_none`` the network alone)
-- all with the same seed in the same run.

    python benchmarks/object_sampling.py --model src/interhandgen/checkpoints/object_small.safetensors \\
        --reference obj.npz --num 1000 --metric-pairs 200 --out benchmarks/results/object_sampling.json
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from interhandgen._atomic import atomic_write_bytes
from interhandgen.data.format import TwoHandSet
from interhandgen.exceptions import InputError
from interhandgen.geometry import penetration_volume
from interhandgen.generation.object_api import ObjectInterHandGen, ObjectScene, object_sampler_defaults
from interhandgen.generation.object_sampling import ObjectSettings
from interhandgen.objects.metrics import hand_object_metrics, object_stability, summarise_hand_object
from interhandgen.objects.physics import PhysicsConfig

_spec = importlib.util.spec_from_file_location("variant_overrides", Path(__file__).with_name("variant_overrides.py"))
overrides_of = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(overrides_of)

TARGET_SECONDS = 60.0

# every post-processing stage off (the stages added since 2026-12-06 included: before commit of 2026-12-07 "none"
# and "no_settle" left the exact push-out, translation search, clearance moves, exact clearance and finger closing on)
_PLAIN = dict(object_settle_steps=0, grasp_steps=0, redraw_rounds=0, exact_push_rounds=0, search_rounds=0,
              clear_rounds=0, exact_clear_rounds=0, close_fingers_deg=0.0)
VARIANTS = {
    "full": ObjectSettings(),  # the default: guidance, rigid object settling, redraw (1 round)
    "none": ObjectSettings(object_guidance_weight=0.0, **_PLAIN),  # the network alone
    "no_settle": ObjectSettings(**_PLAIN),  # network + hand-object guidance
    "rigid_settle": ObjectSettings(redraw_rounds=0),  # + rigid object settling (the default before redraw)
    "grasp_settle": ObjectSettings(grasp_steps=20, redraw_rounds=0),  # + grasp settling instead of redraw
    "grasp_redraw": ObjectSettings(grasp_steps=20),  # + grasp settling + redraw
    "no_guidance": ObjectSettings(object_guidance_weight=0.0),
    "redraw1": ObjectSettings(redraw_rounds=1),
    "redraw2": ObjectSettings(redraw_rounds=2),
    "redraw4": ObjectSettings(redraw_rounds=4),
    "attract100": ObjectSettings(object_attract_mm=100.0),
    # the redraw with its static-equilibrium check (objects.equilibrium), one or two rounds
    "support_redraw": ObjectSettings(redraw_support=True),
    "support_redraw2": ObjectSettings(redraw_support=True, redraw_rounds=2),
    # the support lift after the object settling (hands moved up under surfaces facing down)
    "lift10": ObjectSettings(support_lift_mm=10.0),
    "lift20": ObjectSettings(support_lift_mm=20.0),
    "lift10_support": ObjectSettings(support_lift_mm=10.0, redraw_support=True),
    # MuJoCo settling after the default stages: settle only, or with 1/3/5/9/15 redraw rounds of the pairs not kept
    "physics1": ObjectSettings(physics_rounds=1),
    "physics2": ObjectSettings(physics_rounds=2),
    "physics4": ObjectSettings(physics_rounds=4),
    "physics6": ObjectSettings(physics_rounds=6),
    # the same with the equilibrium check in the cheap redraw (2 rounds): fewer unsupported draws reach MuJoCo
    "physics4_support": ObjectSettings(physics_rounds=4, redraw_support=True, redraw_rounds=2),
    "physics6_support": ObjectSettings(physics_rounds=6, redraw_support=True, redraw_rounds=2),
    "physics10": ObjectSettings(physics_rounds=10),
    "physics16": ObjectSettings(physics_rounds=16),
    # the contact check of the settled pairs by the surface samples' planes only (the stage before 2026-12-05 22:30)
    "physics16_planes": ObjectSettings(physics_rounds=16, physics_exact_contact=False),
    # settled pairs kept only when no hand is deeper than 3 mm by the surface samples' planes (the first version)
    "physics6_depth3": ObjectSettings(physics_rounds=6, physics_depth_mm=3.0),
}


def variant_settings(spec: str) -> tuple[str, ObjectSettings]:
    """A named variant of :data:`VARIANTS` (or ``no_object``), or ``LABEL=KEY=VALUE,...``: ObjectSettings fields over
    the defaults (:func:`variant_overrides.field_overrides`; separate such variants by ';' in --variants)."""
    if "=" not in spec:
        base = spec[len("blind_"):] if spec.startswith("blind_") else spec
        if base not in VARIANTS and spec not in ("no_object", "blind"):
            raise InputError(f"--variants: unknown variant {spec!r} (known: {sorted(VARIANTS)}, no_object, blind, "
                             "blind_<variant>, or LABEL=KEY=VALUE,...)")
        return spec, VARIANTS.get(base, ObjectSettings())
    label, _, rest = spec.partition("=")
    osets = ObjectSettings(**overrides_of.field_overrides(ObjectSettings, rest, f"--variants {spec!r}")[0])
    osets.validate()
    return label, osets


@contextlib.contextmanager
def null_object_tokens(gen):
    """Within it, ``gen`` hands its network the null object token (what object-token dropout trained) for every row,
    while the surface samples that guidance, checks and every post-processing stage use stay the rows' objects."""
    condition = gen.condition

    def blind(*args, **kwargs):
        tokens, surfaces = condition(*args, **kwargs)
        return gen.model.net.null_object.to(tokens).expand_as(tokens).clone(), surfaces

    gen.condition = blind
    try:
        yield
    finally:
        del gen.condition  # back to the class's method


def figures(two: TwoHandSet, physics: bool, physics_config: PhysicsConfig | None = None) -> dict:
    m = hand_object_metrics(two)
    stab = object_stability(two, physics_config) if physics else None
    out = summarise_hand_object(m, stab)
    # hand-hand penetration (exact, manifold3d): the object stages move each hand on its own
    models = two.hand_models()
    v = two.vertices(dtype=torch.float64)
    vol = np.asarray(penetration_volume(v["left"], models["left"].faces_np, v["right"], models["right"].faces_np,
                                        num_workers=1), dtype=np.float64)
    out["hand_hand_penetration_cm3"] = {"mean": float(vol.mean()), "median": float(np.median(vol)),
                                        "max": float(vol.max()), "above_0.1": float((vol > 0.1).mean())}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="object model (default: the bundled one)")
    ap.add_argument("--reference", required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--num", type=int, default=1000)
    ap.add_argument("--metric-pairs", type=int, default=200)
    ap.add_argument("--variants", default="full,no_guidance,no_settle,none,no_object")
    ap.add_argument("--physics", action="store_true", help="MuJoCo stability of the data and --physics-variants")
    ap.add_argument("--physics-variants", default="full")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--physics-friction", type=float, default=None,
                    help="friction of the stability test of data and samples (default: PhysicsConfig's, 1.0); the "
                         "sampler's MuJoCo settling keeps its own (the default) -- a check of how much a figure "
                         "depends on the test's exact settings")
    ap.add_argument("--apg-weight", type=float, default=None,
                    help="hand-hand APG weight of the sampler (default: the sampler's); 0 for a joint_object model, "
                         "which has no in-loop guidance")
    ap.add_argument("--sampler", default="",
                    help="KEY=VALUE,... SamplerSettings fields over the object sampler's defaults for every variant "
                         "(e.g. eta=0), applied after --apg-weight")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    ref = TwoHandSet.load(args.reference)
    if args.split:
        ref = ref.select_split(args.split)
    scene = ObjectScene.of(ref)
    gen = ObjectInterHandGen.load(args.model)
    settings = object_sampler_defaults()
    if args.apg_weight is not None:
        settings = dataclasses.replace(settings, apg_weight=args.apg_weight)
    settings = overrides_of.replaced(settings, args.sampler, "--sampler")
    physics_config = (PhysicsConfig() if args.physics_friction is None
                      else PhysicsConfig(friction=args.physics_friction))
    result = {"model": gen.model.source, "reference": args.reference, "split": args.split, "reference_pairs": len(ref),
              "num": args.num, "metric_pairs": args.metric_pairs, "seed": args.seed,
              "torch_threads": torch.get_num_threads(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
              "machine": platform.machine(), "load_average_start": os.getloadavg(),
              "sampler": dataclasses.asdict(settings),
              "physics_config": dataclasses.asdict(physics_config), "variants": {}}
    result["data"] = figures(ref[: args.metric_pairs], args.physics, physics_config)
    print("data", json.dumps(result["data"]), flush=True)
    for spec in args.variants.split(";" if "=" in args.variants else ","):
        name, osets = variant_settings(spec)
        t0, c0 = time.perf_counter(), time.process_time()
        if name == "no_object":
            hands = gen.sample(args.num, None, seed=args.seed, settings=settings, progress=False)
            # object-free pairs have no place relative to the object: put each at the reference pair's left hand
            two = _around_reference(hands, ref, args.num)
        elif name == "blind" or name.startswith("blind_"):
            with null_object_tokens(gen):
                two = gen.sample(args.num, scene, seed=args.seed, settings=settings, object_settings=osets,
                                 progress=False)
        else:
            two = gen.sample(args.num, scene, seed=args.seed, settings=settings, object_settings=osets,
                             progress=False)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        fig = figures(two[: args.metric_pairs], args.physics and name in args.physics_variants.split(","),
                      physics_config)
        result["variants"][name] = {"seconds": seconds, "cpu_seconds": cpu, "load_average": os.getloadavg(),
                                    "object_settings": dataclasses.asdict(osets), "figures": fig}
        if "physics_settle" in two.metadata:
            result["variants"][name]["physics_settle"] = two.metadata["physics_settle"]
        print(name, f"{seconds:.1f} s", json.dumps(fig), flush=True)
    full = result["variants"].get("full")
    if full is not None:
        d, f = result["data"], full["figures"]
        result["targets"] = {
            # wall seconds on a shared machine; cpu_seconds (process time, one thread) is what a quiet CPU needs
            "seconds_for_num": {"target": TARGET_SECONDS, "measured_wall": full["seconds"],
                                "measured_cpu": full["cpu_seconds"], "met_wall": full["seconds"] <= TARGET_SECONDS,
                                "met_cpu": full["cpu_seconds"] <= TARGET_SECONDS},
            "penetration_volume_vs_data": {"target": "<= 2x", "data": d["penetration_volume_cm3_per_hand_mean"],
                                           "measured": f["penetration_volume_cm3_per_hand_mean"],
                                           "met": f["penetration_volume_cm3_per_hand_mean"]
                                           <= 2 * d["penetration_volume_cm3_per_hand_mean"]},
            "both_contact_rate_vs_data": {"target": "within 5 points", "data": d["both_contact_rate"],
                                          "measured": f["both_contact_rate"],
                                          "met": abs(f["both_contact_rate"] - d["both_contact_rate"]) <= 0.05},
        }
        if "physics" in f and "physics" in d:
            result["targets"]["held_fraction_vs_data"] = {
                "target": "within 10 points", "data": d["physics"]["held_fraction"],
                "measured": f["physics"]["held_fraction"],
                "met": abs(f["physics"]["held_fraction"] - d["physics"]["held_fraction"]) <= 0.10}
    result["load_average_end"] = os.getloadavg()
    atomic_write_bytes(args.out, (json.dumps(result, indent=2) + "\n").encode())
    print("wrote", args.out)


def _around_reference(hands: TwoHandSet, ref: TwoHandSet, num: int) -> TwoHandSet:
    """Object-free samples placed on the reference objects: each sample's pair moved rigidly so that its left
    hand's root takes the reference pair's left-hand root pose (what a two-hand prior without the object can do
    at best when the left hand is given)."""
    from interhandgen.data.canonical import to_canonical, to_world  # noqa: PLC0415

    idx = torch.arange(num) % len(ref)
    r = ref[idx.numpy()]
    can = to_canonical(r, dtype=torch.float64)
    mine = to_canonical(hands, dtype=torch.float64)
    placed = to_world(mine.x, anchor_world=(can.anchor_rotation, can.anchor_center), hand_model=hands.hand_model)
    return placed._replace(object_id=r.labels["object_id"][0], object_names=r.labels["object_id"][1],
                           object_pose=r.object_pose, object_library=r.object_library)


if __name__ == "__main__":
    main()
