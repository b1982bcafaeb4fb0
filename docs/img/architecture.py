"""Draw docs/img/architecture.png: the package's layers and the direction of its imports (run from the repo root)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402

# Top to bottom, as in the import-linter layers contract of pyproject.toml; dashed boxes are optional extras
# (their third-party packages come with `pip install "interhandgen[viewer]"` / `"interhandgen[physics]"`).
LAYERS = [
    [("cli", "subcommands: parse, call the API, print")],
    [("viewer", "web viewer (viser), standalone HTML export")],
    [("training", "trainer, EMA, distributed, experiment files, previews")],
    [("evaluation", "features, metrics, protocol,\nC2ST, density/coverage, report"),
     ("fitting", "two-hand fitting with the prior:\nobservations, priors, stages")],
    [("generation", "InterHandGen API, cascade, APG, settling,\nresampling, single-stage samplers, sharding")],
    [("models", "registry (kind -> network, loss, sampler),\nnetworks, losses, artifact (model file)")],
    [("objects", "object library, exact SDF, hand-object metrics,\nMuJoCo stability, bimanual grasp set")],
    [("diffusion", "schedules, DDIM, CFG"), ("viz", "rendering, curves, mesh files")],
    [("data", "TwoHandSet (optional object library), canonical\n64-number layout, loaders, statistics, synth")],
    [("geometry", "exact queries, volume, points (FPS, k-nearest,\ngather), batched Adam, sphere proxy")],
    [("hand", "hand layer, open hand, MANO I/O, joints")],
    [("io_guard  limits  safe_files  reproducible  run_lock  run_hygiene",
      "output paths, value limits, strict file readers, reproducible files, run lock and cleanup")],
    [("rotations  _atomic  _seeding", "shared helpers")],
    [("exceptions", "InterHandGenError, InputError, MissingFileError, ModelMismatchError")],
]
OPTIONAL = {"viewer"}


def main(out: str = "docs/img/architecture.png") -> None:
    fig, ax = plt.subplots(figsize=(9.5, 13.4))
    ax.set_xlim(0, 10)
    ax.set_ylim(0, len(LAYERS) + 0.6)
    ax.axis("off")
    for row, layer in enumerate(LAYERS):
        y = len(LAYERS) - row - 0.5
        width = 8.6 / len(layer)
        for col, (name, text) in enumerate(layer):
            x = 0.3 + col * width
            box = FancyBboxPatch((x + 0.05, y - 0.36), width - 0.1, 0.72, boxstyle="round,pad=0.02",
                                 linewidth=1.2, linestyle="--" if name in OPTIONAL else "-",
                                 facecolor="#f3f6fb" if name not in OPTIONAL else "white", edgecolor="#33507a")
            ax.add_patch(box)
            ax.text(x + width / 2, y + 0.17, f"interhandgen.{name}" if " " not in name else name, ha="center",
                    va="center", fontsize=10, weight="bold")
            ax.text(x + width / 2, y - 0.13, text, ha="center", va="center", fontsize=7.5, color="#333333")
    ax.annotate("", xy=(9.65, 0.4), xytext=(9.65, len(LAYERS) - 0.2),
                arrowprops=dict(arrowstyle="-|>", lw=2, color="#b03030"))
    ax.text(9.8, len(LAYERS) / 2, "imports point down only", rotation=90, va="center", ha="center",
            fontsize=9, color="#b03030")
    ax.text(5, len(LAYERS) + 0.3, "interhandgen: layers (top imports bottom; siblings in a row are independent)",
            ha="center", fontsize=11)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main()
