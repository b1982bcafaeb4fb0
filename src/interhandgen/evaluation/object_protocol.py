"""The hand-object part of the evaluation protocol (sets with an object library; docs/evaluation.md).

Per set (the generated samples, and the data floor: a reference draw disjoint from the reference), exact and per
hand: hand-object penetration volume (cm^3) and depth (mm), contact ratio per hand and of both hands
(:func:`interhandgen.objects.metrics.hand_object_metrics`), and the MuJoCo stability test (mean displacement in
cm, fraction held below 2 cm; :func:`interhandgen.objects.metrics.object_stability`), optionally on a seeded
subset. A set without an object library, or physics without MuJoCo, raises: no figure is filled in.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

from interhandgen.exceptions import InputError
from interhandgen.objects.metrics import (hand_object_metrics, object_stability, require_objects,
                                          summarise_hand_object)

__all__ = ["ObjectSettings", "object_set_metrics", "object_markdown"]


@dataclasses.dataclass
class ObjectSettings:
    physics: bool = True  # the MuJoCo stability test (the slow part: ~0.5-1 s per pair)
    physics_pairs: int | None = None  # at most this many pairs (seeded subset) in the physics test; None: all
    seed: int = 0


def object_set_metrics(two_hands, models, settings: ObjectSettings, progress: bool = False,
                       timings: dict[str, float] | None = None, name: str = "set") -> dict[str, Any]:
    """Hand-object figures of one set: :func:`summarise_hand_object` plus ``physics`` (or the reason it was not
    run, as a string) and the pairs the physics test used."""
    timings = {} if timings is None else timings
    require_objects(two_hands, name)
    t0 = time.perf_counter()
    metrics = hand_object_metrics(two_hands, models, progress=progress)
    timings[f"hand_object_{name}_s"] = time.perf_counter() - t0
    stability = None
    if settings.physics:
        n = len(two_hands)
        cap = settings.physics_pairs
        if cap is not None and cap < 1:
            raise InputError(f"physics_pairs must be None or >= 1, got {cap}")
        idx = np.arange(n) if cap is None or cap >= n else \
            np.sort(np.random.default_rng(settings.seed).choice(n, cap, replace=False))
        t0 = time.perf_counter()
        stability = object_stability(two_hands[idx], models=models, progress=progress)
        timings[f"physics_{name}_s"] = time.perf_counter() - t0
    out = summarise_hand_object(metrics, stability)
    if stability is None:
        out["physics"] = "not run (--no-physics)"
    out["_arrays"] = {k: v for k, v in metrics.items()}
    return out


def _cell(d: dict | None, *keys, fmt="{:.3f}") -> str:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return "n/a"
        d = d[k]
    return "n/a" if d is None else fmt.format(d)


def object_markdown(result: dict[str, Any]) -> str:
    """Markdown tables of the object protocol: rows 'samples' and 'data floor' for the hand-object figures, the
    hand-hand penetration and the distribution metrics (FHID/KHID/precision/recall/diversity)."""
    obj = result["objects"]
    rows = (("samples", obj["samples"], result["distribution"], result["geometry"]),
            ("data floor", obj.get("floor"), obj.get("distribution_floor"), obj.get("geometry_floor")))
    lines = ["| set | contact L | contact R | contact both | HO pen. vol. L / R cm^3 | HO pen. per hand (95 % CI) | "
             "HO depth L / R mm | held (< 2 cm) | mean displ. cm | HH pen. vol. cm^3 | HH depth mm |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, o, _, g in rows:
        vol = f"{_cell(o, 'left', 'penetration_volume_cm3', 'mean')} / {_cell(o, 'right', 'penetration_volume_cm3', 'mean')}"
        ci = o.get("penetration_volume_cm3_per_hand_ci95") if isinstance(o, dict) else None
        per_hand = (f"{_cell(o, 'penetration_volume_cm3_per_hand_mean')} ({ci[0]:.3f}-{ci[1]:.3f})" if ci is not None
                    else "n/a")
        dep = (f"{_cell(o, 'left', 'penetration_depth_mm', 'mean', fmt='{:.2f}')} / "
               f"{_cell(o, 'right', 'penetration_depth_mm', 'mean', fmt='{:.2f}')}")
        phys = o.get("physics") if isinstance(o, dict) else None
        held = _cell(phys, "held_fraction") if isinstance(phys, dict) else (phys or "n/a")
        disp = _cell(phys, "mean_displacement_cm", fmt="{:.2f}") if isinstance(phys, dict) else "n/a"
        lines.append(f"| {name} | {_cell(o, 'left', 'contact_rate')} | {_cell(o, 'right', 'contact_rate')} | "
                     f"{_cell(o, 'both_contact_rate')} | {vol} | {per_hand} | {dep} | {held} | {disp} | "
                     f"{_cell(g, 'penetration_volume_cm3', 'mean')} | {_cell(g, 'penetration_depth_mm', 'mean', fmt='{:.2f}')} |")
    lines += ["", "| set | FHID | KHID | precision | recall | diversity |", "|---|---|---|---|---|---|"]
    for name, _, d, _ in rows:
        def ci(key, fmt="{:.3g}"):
            if not isinstance(d, dict) or key not in d:
                return "n/a"
            return (fmt + " ± " + fmt).format(d[key]["mean"], (d[key]["ci_high"] - d[key]["ci_low"]) / 2)
        lines.append(f"| {name} | {ci('fhid')} | {ci('khid')} | {ci('precision')} | {ci('recall')} | "
                     f"{ci('diversity')} |")
    ref_div = result["distribution"].get("diversity_reference")
    if ref_div is not None:
        half = (ref_div["ci_high"] - ref_div["ci_low"]) / 2
        lines.append(f"| reference | - | - | - | - | {ref_div['mean']:.3g} ± {half:.3g} |")
    return "\n".join(lines)
