"""benchmarks/fitting.py runs end to end on a tiny synthetic set and writes every metric of every task and prior."""

import json
import math
import subprocess
import sys
from pathlib import Path

from interhandgen.cli import main

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "fitting.py"


def test_fitting_benchmark_writes_every_task_and_prior(tmp_path):
    data = tmp_path / "tiny.npz"
    assert main(["data", "synth", "--num", "8", "--seed", "0", "--out", str(data)]) == 0
    out = tmp_path / "fit.json"
    subprocess.run([sys.executable, str(BENCH), "--data", str(data), "--split", "", "--num", "4", "--batch", "4",
                    "--tasks", "a,b,c,d", "--priors", "interhandgen,gaussian", "--iterations", "4", "--out", str(out)],
                   check=True, capture_output=True, text=True, timeout=600)
    result = json.loads(out.read_text())
    assert result["data_level"]["penetration_volume_cm3"]["mean"] >= 0
    assert set(result["tasks"]) == {"a", "b", "c", "d"}
    for task, rows in result["tasks"].items():
        assert set(rows) == {"interhandgen", "gaussian"}, task
        for prior, row in rows.items():
            for key in ("mpjpe_mm", "mpvpe_mm"):
                for side in ("left", "right", "both"):
                    assert math.isfinite(row[key][side]["mean"]) and row[key][side]["mean"] > 0, (task, prior, key)
            for key in ("mrrpe_mm", "reprojection_px", "penetration_volume_cm3", "contact_rate", "flipped"):
                assert math.isfinite(row[key]["mean"]), (task, prior, key)
            assert row["seconds_per_frame"] > 0 and row["prior_weight"] == 20.0
