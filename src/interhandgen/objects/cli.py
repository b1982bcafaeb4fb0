"""The object parts of `interhandgen data synth --objects` and `interhandgen data stats` (thin over the API)."""

from __future__ import annotations

import argparse

import numpy as np
import torch

from interhandgen.exceptions import InputError
from interhandgen.objects.dataset import generate_object_set
from interhandgen.objects.metrics import (hand_object_metrics, object_stability, object_world_vertices,
                                          summarise_hand_object)
from interhandgen.viz.render import LEFT_COLOUR, OBJECT_COLOUR, RIGHT_COLOUR, render_scenes

__all__ = ["run_object_synth", "object_statistics", "print_object_statistics", "render_with_objects"]


def run_object_synth(args: argparse.Namespace, splits: tuple) -> int:
    if args.device != "cpu":
        raise InputError("--objects generates on the CPU only; leave --device at 'cpu'")
    unused = [flag for flag, given in (("--workers", args.workers is not None), ("--batch-size", args.batch_size != 256))
              if given]
    if unused:
        raise InputError(f"{', '.join(unused)} do(es) not apply to --objects (chunks of one object, one process)")
    categories = None
    if args.categories:
        categories = [c.strip() for c in args.categories.split(",") if c.strip()]
    result = generate_object_set(args.num, args.seed, args.out, categories=categories, splits=splits,
                                 progress=not args.no_progress, resume=not args.no_resume,
                                 physics_filter=not getattr(args, "no_physics_filter", False))
    print(f"wrote {len(result)} hand-object pairs on {len(result.object_library)} objects to {args.out}")
    return 0


def object_statistics(two_hands, models, max_pairs: int, seed: int, progress: bool = False) -> dict:
    """Hand-object contact, penetration and (with MuJoCo installed) stability on up to ``max_pairs`` random pairs."""
    n = len(two_hands)
    idx = np.arange(n) if max_pairs >= n else np.sort(np.random.default_rng(seed).choice(n, max_pairs, replace=False))
    sub = two_hands[idx]
    metrics = hand_object_metrics(sub, models, progress=progress)
    stability = None
    try:
        import mujoco  # noqa: F401
    except ImportError:
        physics_note = "mujoco not installed (pip install 'interhandgen[physics]'): stability not measured"
    else:
        physics_note = None
        stability = object_stability(sub, models=models, progress=progress)
    summary = summarise_hand_object(metrics, stability)
    summary["objects_in_library"] = len(two_hands.object_library)
    if physics_note:
        summary["physics"] = physics_note
    if "category" in sub.labels:
        ids, names = sub.labels["category"]
        per = {}
        for c, name in enumerate(names):
            m = ids == c
            if m.any():
                per[name] = summarise_hand_object({k: v[m] for k, v in metrics.items()},
                                                  None if stability is None else {k: v[m] for k, v in stability.items()})
        summary["per_category"] = per
    return summary


def print_object_statistics(s: dict) -> None:
    print(f"hand-object figures on {s['pairs']} pairs ({s['objects_in_library']} objects in the library):")
    head = f"  {'group':<20s} {'n':>5s} {'both cont.':>10s} {'vol L cm3':>9s} {'vol R cm3':>9s} {'depth mm':>8s} {'held':>6s} {'disp cm':>8s}"
    print(head)
    groups = {"all": s, **s.get("per_category", {})}
    for name, g in groups.items():
        phys = g.get("physics")
        held = f"{phys['held_fraction']:.3f}" if isinstance(phys, dict) else "-"
        disp = ("-" if not isinstance(phys, dict) or phys["mean_displacement_cm"] is None
                else f"{phys['mean_displacement_cm']:.2f}")
        depth = max(g["left"]["penetration_depth_mm"]["mean"], g["right"]["penetration_depth_mm"]["mean"])
        print(f"  {name:<20s} {g['pairs']:>5d} {g['both_contact_rate']:>10.3f} "
              f"{g['left']['penetration_volume_cm3']['mean']:>9.3f} {g['right']['penetration_volume_cm3']['mean']:>9.3f} "
              f"{depth:>8.2f} {held:>6s} {disp:>8s}")
    if isinstance(s.get("physics"), str):
        print(f"  {s['physics']}")


def render_with_objects(two_hands, models, out_path, cols: int = 4, titles="default", views=("front", "top"),
                        view_size: int = 192, **kwargs):
    """PNG grid of pairs with their objects (left blue, right orange, object green), one picture per view each.
    ``titles``: one string per pair, None for none, "default": its category and object family; ``kwargs`` go to
    the renderer."""
    lib = two_hands.object_library
    verts = {s: v.cpu().numpy() for s, v in two_hands.vertices(models, dtype=torch.float32).items()}
    scenes, default_titles = [], []
    names = two_hands.category_names
    for i in range(len(two_hands)):
        k = int(two_hands.object_id[i])
        obj = object_world_vertices(lib.vertices[k], two_hands.object_pose[i:i + 1])[0]
        scenes.append([(verts["left"][i], models["left"].faces_np, LEFT_COLOUR),
                       (verts["right"][i], models["right"].faces_np, RIGHT_COLOUR),
                       (obj, lib.faces[k], OBJECT_COLOUR)])
        default_titles.append(f"{names[two_hands.category[i]] if names else ''} {lib.families[k]}")
    titles = default_titles if isinstance(titles, str) and titles == "default" else titles
    return render_scenes(scenes, titles=titles, cols=cols, out_path=out_path,
                         view_size=view_size, views=tuple(views), **kwargs)
