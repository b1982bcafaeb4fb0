"""Training curves from a run's ``log.csv`` (written by :func:`interhandgen.training.train`)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from interhandgen._atomic import atomic_write_bytes
from interhandgen.exceptions import InputError, MissingFileError

#: Columns a training log must have to be plotted.
REQUIRED_COLUMNS = ("kind", "step", "epoch", "loss")


def read_training_log(path: str | Path) -> dict[str, dict[str, list[float]]]:
    """Rows of ``log.csv`` grouped by ``kind`` ("train", "val"): {kind: {column: [floats]}}.

    Empty cells become NaN. Raises ``FileNotFoundError`` / ``ValueError`` naming the file when it is missing,
    lacks a required column, or holds a non-numeric value.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"training log not found: {path}")
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(f"{path}: missing column(s) {missing}; expected a log.csv written by interhandgen train")
        out: dict[str, dict[str, list[float]]] = {}
        for line, row in enumerate(reader, start=2):
            group = out.setdefault(row["kind"], {})
            for key, value in row.items():
                if key == "kind":
                    continue
                try:
                    number = float(value) if value not in ("", None) else math.nan
                except ValueError as exc:
                    raise InputError(f"{path}, line {line}: column {key!r} is not a number: {value!r}") from exc
                group.setdefault(key, []).append(number)
    if "train" not in out:
        raise InputError(f"{path}: no 'train' rows to plot")
    return out


def plot_training_curve(log_path: str | Path, out_path: str | Path, title: str | None = None) -> Path:
    """PNG of the training loss (per logged step, both stages' terms when logged) and the per-epoch validation
    loss against the optimisation step, log-scaled; written atomically. Returns ``out_path``."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    log = read_training_log(log_path)
    train = log["train"]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    ax.plot(train["step"], train["loss"], lw=1.0, color="0.3", label="train loss (both stages)")
    for key, colour, label in (("loss_anchor", "tab:blue", "train: anchor stage"),
                               ("loss_other", "tab:orange", "train: conditional stage")):
        values = train.get(key, [])
        if values and not all(math.isnan(v) for v in values):
            ax.plot(train["step"], values, lw=0.8, color=colour, alpha=0.8, label=label)
    if "val" in log:
        ax.plot(log["val"]["step"], log["val"]["loss"], "o-", color="tab:green", ms=3, label="validation loss (EMA)")
    ax.set_yscale("log")
    ax.set_xlabel("optimisation step")
    ax.set_ylabel("x0 MSE (standardised units)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    out_path = Path(out_path)
    atomic_write_bytes(out_path, buf.getvalue())
    return out_path
