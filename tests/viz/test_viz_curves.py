import csv

import numpy as np
import pytest
from PIL import Image

from interhandgen.training.trainer import CSV_FIELDS
from interhandgen.viz import plot_training_curve, read_training_log


def _write_log(path, rows):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(CSV_FIELDS)
        for r in rows:
            w.writerow([r.get(k, "") for k in CSV_FIELDS])


def test_log_is_grouped_by_kind_with_exact_values(tmp_path):
    path = tmp_path / "log.csv"
    rows = [{"kind": "train", "step": s, "epoch": 0, "loss": 1.0 / (s + 1), "loss_anchor": 0.5 / (s + 1)}
            for s in range(5)]
    rows.append({"kind": "val", "step": 4, "epoch": 0, "loss": 0.3})
    _write_log(path, rows)
    log = read_training_log(path)
    assert log["train"]["step"] == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(log["train"]["loss"], [1.0 / (s + 1) for s in range(5)])
    assert np.isnan(log["val"]["loss_anchor"][0])  # empty cell -> NaN, not 0
    assert log["val"]["loss"] == [0.3]


def test_plot_writes_a_png(tmp_path):
    path = tmp_path / "log.csv"
    _write_log(path, [{"kind": "train", "step": s, "epoch": 0, "loss": 2.0 ** -s} for s in range(10)]
               + [{"kind": "val", "step": 9, "epoch": 0, "loss": 0.01}])
    out = plot_training_curve(path, tmp_path / "curve.png", title="t")
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] > 300


def test_bad_logs_name_the_file_and_field(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        read_training_log(tmp_path / "nope.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("step,loss\n1,2\n")
    with pytest.raises(ValueError, match="missing column"):
        read_training_log(bad)
    bad2 = tmp_path / "bad2.csv"
    _write_log(bad2, [{"kind": "train", "step": 0, "epoch": 0, "loss": "abc"}])
    with pytest.raises(ValueError, match=r"line 2: column 'loss'"):
        read_training_log(bad2)
