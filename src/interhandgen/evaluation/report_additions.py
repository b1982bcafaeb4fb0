"""Markdown tables of the protocol additions (density/coverage, C2ST, category frequencies), samples beside floor."""

from __future__ import annotations

from typing import Any

C2ST_VIEWS = {
    "evaluator": "evaluator features",
    "joints": "joint features (both hands' 21 joints + relative placement, left-hand frame)",
    "placement": "relative placement only (6D rotation + translation)",
}


def _ci(m: dict[str, Any] | None, scale: float = 1.0, fmt: str = ".3f") -> str:
    if m is None:
        return "n/a (no floor draw)"
    half = (m["ci_high"] - m["ci_low"]) / 2
    return f"{scale * m['mean']:{fmt}} ± {scale * half:.2g}"


def additions_markdown(add: dict[str, Any]) -> list[str]:
    """Lines of Markdown for ``result["additions"]`` (see :func:`additional_metrics`)."""
    lines: list[str] = []
    floor_n = add.get("num_floor")
    head = ["| metric | samples | data floor |", "|---|---|---|"]
    if "density_coverage" in add:
        dc = add["density_coverage"]
        floor = dc["floor"] or {"density": None, "coverage": None}
        lines += [f"## Density and coverage (Naeem et al. 2020), k = {dc['k']}, subsets of precision/recall", "",
                  *head,
                  f"| Density (1 = same as data) | {_ci(dc['samples']['density'])} | {_ci(floor['density'])} |",
                  f"| Coverage (higher is better) | {_ci(dc['samples']['coverage'])} | {_ci(floor['coverage'])} |", ""]
    if "c2st" in add:
        c = add["c2st"]
        s = c["settings"]
        lines += ["## Classifier two-sample test (0.5 = indistinguishable, 1.0 = separable)", "",
                  f"MLP ({s['hidden']}-{s['hidden']}, {s['epochs']} epochs), {s['folds']}-fold held-out scores; "
                  f"mean ± half-width of the 95% t interval over folds. Floor: a second reference draw "
                  f"({floor_n} pairs) against the reference.", "",
                  "| features | accuracy | AUC | floor accuracy | floor AUC |", "|---|---|---|---|---|"]
        for view, label in C2ST_VIEWS.items():
            if view not in c["samples"]:
                continue
            smp = c["samples"][view]
            fl = (c["floor"] or {}).get(view)
            lines.append(f"| {label} (n = {smp['n_per_class']} per class, d = {smp['dim']}) | {_ci(smp['accuracy'])} "
                         f"| {_ci(smp['auc'])} | {_ci(fl and fl['accuracy'])} | {_ci(fl and fl['auc'])} |")
        lines.append("")
    if "categories" in add:
        cat = add["categories"]
        has_floor = "floor" in cat
        lines += [f"## Category frequencies (label of the nearest reference pair, {cat['feature_space']})", "",
                  f"Total variation to the reference: samples {cat['tv_samples']:.3f}"
                  + (f", data floor {cat['tv_floor']:.3f}" if has_floor else " (no floor draw)") + ".", "",
                  "| category | reference | samples | samples / reference |" + (" floor |" if has_floor else ""),
                  "|---|---|---|---|" + ("---|" if has_floor else "")]
        for i, name in enumerate(cat["names"]):
            ratio = cat["ratio_samples"][i]
            row = (f"| {name} | {cat['reference'][i]:.3f} | {cat['samples'][i]:.3f} | "
                   f"{'n/a' if ratio is None else f'{ratio:.2f}'} |")
            lines.append(row + (f" {cat['floor'][i]:.3f} |" if has_floor else ""))
        lines.append("")
    return lines
