"""Write an evaluation result as metrics.json, a Markdown table and plots."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from interhandgen._atomic import atomic_write_bytes
from interhandgen.evaluation.report_additions import additions_markdown
from interhandgen.viz import render


def public(result: dict[str, Any]) -> dict[str, Any]:
    """The result without raw arrays (keys starting with '_'), JSON-ready."""
    if isinstance(result, dict):
        return {k: public(v) for k, v in result.items() if not str(k).startswith("_")}
    if isinstance(result, (list, tuple)):
        return [public(v) for v in result]
    if isinstance(result, (np.floating, np.integer)):
        return result.item()
    return result


def _atomic_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def markdown_table(result: dict[str, Any], title: str = "Evaluation") -> str:
    d, g = result["distribution"], result["geometry"]
    ci = lambda m: f"{m['mean']:.4g} ± {(m['ci_high'] - m['ci_low']) / 2:.2g}"  # noqa: E731
    rows = [
        ("FHID (lower is better)", ci(d["fhid"])),
        (f"KHID x100, degree {result['settings']['kid_degree']} (lower is better)",
         f"{100 * d['khid']['mean']:.4g} ± {100 * (d['khid']['ci_high'] - d['khid']['ci_low']) / 2:.2g}"),
        ("Diversity (reference: {:.4g})".format(d["diversity_reference"]["mean"]), ci(d["diversity"])),
        ("Precision (higher is better)", ci(d["precision"])),
        ("Recall (higher is better)", ci(d["recall"])),
    ]
    if "penetration_volume_cm3" in g:
        rows += [
            ("Penetration volume, cm^3 (mean / median / p95)",
             "{mean:.3g} / {median:.3g} / {p95:.3g}".format(**g["penetration_volume_cm3"])),
            _depth_row(g["penetration_depth_mm"]),
        ]
    rows += [
        ("Minimum distance, mm (median)", f"{g['min_distance_mm']['median']:.3g}"),
        (f"Contact rate (< {g['thresholds_mm']['contact']:g} mm)", f"{g['contact_rate']:.3f}"),
        (f"Proximity ratio (< {g['thresholds_mm']['proximity']:g} mm)", f"{g['proximity_ratio']:.3f}"),
    ]
    lines = [f"# {title}", "",
             f"{result['num_samples']} generated vs {result['num_reference']} reference pairs; "
             f"distribution metrics: mean ± half-width of the 95% t interval over {result['settings']['replications']} "
             f"seeded subsets.", "", "| metric | value |", "|---|---|"]
    lines += [f"| {a} | {b} |" for a, b in rows]
    if result.get("additions"):
        lines += ["", *additions_markdown(result["additions"])]
    lines += ["", "Timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in result["timings"].items()), ""]
    return "\n".join(lines)


def _depth_row(depth: dict[str, Any]) -> tuple[str, str]:
    if "p95" in depth:
        return "Penetration depth, mm (mean / p95)", "{mean:.3g} / {p95:.3g}".format(**depth)
    sub = depth["penetrating_pairs_summary"]
    return (f"Penetration depth, mm (mean, estimated from {depth['estimated_from_pairs']} penetrating pairs / "
            "p95 of those)", f"{depth['mean']:.3g} / {sub['p95']:.3g}")


def write_report(result: dict[str, Any], out_dir: str | os.PathLike, samples=None, title: str = "Evaluation") -> Path:
    """metrics.json, report.md, and PNG plots (feature PCA, histograms, best/median/worst samples)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _atomic_text(out / "metrics.json", json.dumps(public(result), indent=2, sort_keys=True))
    _atomic_text(out / "report.md", markdown_table(result, title))
    _plots(result, out)
    if samples is not None and "penetration_volume_cm3" in result["geometry"].get("_arrays", {}):
        _extremes(result, samples, out)
    return out


def _plots(result: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    feats = result.get("_features")
    if feats is not None:
        f, r = (np.asarray(feats[k], dtype=np.float64) for k in ("samples", "reference"))
        mu = r.mean(0)
        _, _, vt = np.linalg.svd(r - mu, full_matrices=False)
        pf, pr = (f - mu) @ vt[:2].T, (r - mu) @ vt[:2].T
        fig, ax = plt.subplots(figsize=(5, 5))
        ax.scatter(pr[:, 0], pr[:, 1], s=2, alpha=0.4, label="reference")
        ax.scatter(pf[:, 0], pf[:, 1], s=2, alpha=0.4, label="generated")
        ax.set_title("Feature space, first two principal components of the reference")
        ax.legend(markerscale=5)
        fig.tight_layout()
        fig.savefig(out / "features_pca.png", dpi=120)
        plt.close(fig)
    arrays = result["geometry"].get("_arrays", {})
    if arrays:
        fig, axes = plt.subplots(1, len(arrays), figsize=(4.5 * len(arrays), 3.5))
        for ax, (name, values) in zip(np.atleast_1d(axes), arrays.items()):
            ax.hist(np.asarray(values), bins=50)
            ax.set_title(name.replace("_", " "))
            ax.set_ylabel("pairs")
        fig.tight_layout()
        fig.savefig(out / "geometry_histograms.png", dpi=120)
        plt.close(fig)


def _extremes(result: dict[str, Any], samples, out: Path) -> None:

    vol = np.asarray(result["geometry"]["_arrays"]["penetration_volume_cm3"])
    order = np.argsort(vol, kind="stable")
    n = len(order)
    pick = list(order[:4]) + list(order[n // 2 - 2:n // 2 + 2]) + list(order[-4:])
    titles = [f"{lab} {vol[i]:.2f} cm3" for lab, i in zip(["best"] * 4 + ["median"] * 4 + ["worst"] * 4, pick)]
    render(samples[np.asarray(pick)], out_path=out / "best_median_worst.png", titles=titles, cols=4)
