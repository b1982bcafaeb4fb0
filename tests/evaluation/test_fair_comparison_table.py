"""Pure parts of benchmarks/fair_comparison.py: seed aggregation, rows, table, per-kind post-processing."""

from __future__ import annotations


import pytest

from interhandgen.exceptions import InputError


@pytest.fixture(scope="module")
def fc(load_benchmark):
    return load_benchmark("fair_comparison")


def test_aggregate_two_seeds_by_hand(fc):
    agg = fc.aggregate_seeds([{"fhid": 7.0, "precision": 0.94, "only0": 1.0}, {"fhid": 4.0, "precision": 0.90}])
    # mean (7 + 4) / 2 = 5.5, half range (7 - 4) / 2 = 1.5; precision 0.92 and 0.02
    assert agg["fhid"]["mean"] == pytest.approx(5.5)
    assert agg["fhid"]["half_range"] == pytest.approx(1.5)
    assert agg["fhid"]["values"] == [7.0, 4.0]
    assert agg["precision"]["mean"] == pytest.approx(0.92)
    assert agg["precision"]["half_range"] == pytest.approx(0.02)
    assert "only0" not in agg  # a value one seed lacks is left out, not zero-filled


def test_aggregate_three_seeds_and_errors(fc):
    agg = fc.aggregate_seeds([{"x": 1.0}, {"x": 2.0}, {"x": 6.0}])
    assert agg["x"]["mean"] == pytest.approx(3.0)
    assert agg["x"]["half_range"] == pytest.approx(2.5)
    with pytest.raises(ValueError):
        fc.aggregate_seeds([])
    with pytest.raises(ValueError, match="not finite"):
        fc.aggregate_seeds([{"x": 1.0}, {"x": float("nan")}])


def test_format_cell(fc):
    assert fc.format_cell({"mean": 5.5, "half_range": 1.5, "values": [7.0, 4.0]}, "{:.2f}") == "5.50 ± 1.50"
    assert fc.format_cell({"mean": 0.25, "half_range": 0.0, "values": [0.25]}, "{:.3f}") == "0.250"
    assert fc.format_cell(None, "{:.3f}") == ""


def _doc(name, post, seed, values, floor_values=None):
    return {"name": name, "post": post, "seed": seed, "kind": "shared", "values": values,
            "floor_values": floor_values or {}, "eval_seconds": 1.0, "sample_time": {"wall_s": 2.0}}


def test_build_rows_and_markdown(fc):
    docs = {
        "a_default_s1": _doc("a", "default", 1, {"fhid": 3.0, "precision": 0.8}, {"coverage": 0.97}),
        "a_default_s0": _doc("a", "default", 0, {"fhid": 5.0, "precision": 0.9}, {"coverage": 0.97}),
        "a_none_s0": _doc("a", "none", 0, {"fhid": 9.0, "precision": 0.7}),
        "floor": {"name": "floor", "values": {"fhid": 0.5, "precision": 0.96}},
    }
    rows = fc.build_rows(docs, ["cascaded, default=a:default", "cascaded, none=a:none", "data floor=floor"])
    assert [r["label"] for r in rows] == ["cascaded, default", "cascaded, none", "data floor"]
    assert rows[0]["seeds"] == [0, 1]
    assert rows[0]["stats"]["fhid"]["values"] == [5.0, 3.0]  # ordered by seed
    assert rows[0]["stats"]["fhid"]["mean"] == pytest.approx(4.0)
    assert rows[2]["stats"]["coverage"]["mean"] == pytest.approx(0.97)  # the additions' floor from the runs
    cols = [("fhid", "FHID", "{:.1f}", "low"), ("precision", "P", "{:.2f}", "high"), ("coverage", "C", "{:.2f}", "")]
    md = fc.table_markdown(rows, cols).splitlines()
    assert md[0] == "| entry | FHID | P | C |"
    assert md[1] == "|---|---|---|---|"
    assert md[2] == "| cascaded, default | 4.0 ± 1.0 | 0.85 ± 0.05 |  |"
    assert md[3] == "| cascaded, none | 9.0 | 0.70 |  |"
    assert md[4] == "| data floor | 0.5 | 0.96 | 0.97 |"
    with pytest.raises(InputError, match="no evaluation"):
        fc.build_rows(docs, ["x=b:default"])
    with pytest.raises(InputError, match="LABEL"):
        fc.build_rows(docs, ["a:default"])


def test_posts_per_kind(fc):
    assert fc.posts_for_kind("shared") == ["default", "none"]
    assert fc.posts_for_kind("separate") == ["default", "none"]
    assert fc.posts_for_kind("joint") == ["none"]
    assert fc.posts_for_kind("vae") == ["none"]
    none = fc.sampler_settings("shared", "none")
    assert none.settle_steps == 0 and none.resample_rounds == 0 and none.apg_weight > 0
    default = fc.sampler_settings("shared", "default")
    assert default.settle_steps > 0 and default.resample_rounds > 0
    assert fc.sampler_settings("joint", "none") is None
    with pytest.raises(InputError, match="does not apply"):
        fc.sampler_settings("vae", "default")
    with pytest.raises(InputError, match="expected one of"):
        fc.sampler_settings("shared", "fast")


def test_scalars_from_result(fc):
    ci = lambda m: {"mean": m, "ci_low": m, "ci_high": m}
    result = {
        "distribution": {"fhid": ci(6.5), "khid": ci(0.92), "precision": ci(0.94), "recall": ci(0.93),
                         "diversity": ci(15.7)},
        "geometry": {"contact_rate": 0.9, "proximity_ratio": 0.91},
        "additions": {
            "density_coverage": {"samples": {"density": ci(0.95), "coverage": ci(0.92)},
                                 "floor": {"density": ci(0.96), "coverage": ci(0.97)}},
            "c2st": {side: {"evaluator": {"accuracy": ci(a)}, "joints": {"accuracy": ci(a + 0.05)},
                            "placement": {"accuracy": ci(a - 0.03)}}
                     for side, a in (("samples", 0.63), ("floor", 0.5))},
            "categories": {"tv_samples": 0.1, "tv_floor": 0.03},
        },
        "geometry_subset": {"penetration_volume_cm3": {"mean": 0.0014}, "penetration_depth_mm": {"mean": 0.12},
                            "penetrating_fraction": 0.05},
    }
    s = fc.scalars(result)
    assert s["khid_x100"] == pytest.approx(92.0)
    assert s["c2st_joints"] == pytest.approx(0.68)
    assert s["pen_vol_cm3"] == 0.0014 and s["category_tv"] == 0.1 and s["coverage"] == 0.92
    f = fc.floor_scalars(result)
    assert f == pytest.approx({"density": 0.96, "coverage": 0.97, "c2st_evaluator": 0.5, "c2st_joints": 0.55,
                               "c2st_placement": 0.47, "category_tv": 0.03})
    bare = {k: result[k] for k in ("distribution", "geometry")}
    assert set(fc.scalars(bare)) == {"fhid", "khid_x100", "precision", "recall", "diversity", "contact_rate",
                                     "proximity_ratio"}


def test_read_curves(fc, tmp_path):
    log = tmp_path / "log.csv"
    log.write_text("kind,step,epoch,loss,loss_anchor,loss_other,lr,grad_norm,seconds\n"
                   "train,1,0,2.0,1.0,1.0,0.001,0.2,1.0\n"
                   "train,2,0,1.0,0.5,0.5,0.001,0.2,2.0\n"
                   "val,2,0,1.5,,,,,3.0\n"
                   "train,3,1,0.5,0.2,0.3,0.001,0.2,4.0\n"
                   "val,3,1,1.25,,,,,5.0\n")
    c = fc.read_curves(log)
    assert c == {"steps": [2, 3], "val": [1.5, 1.25], "train_mean": [1.5, 0.5]}
    (tmp_path / "empty.csv").write_text("kind,step,epoch,loss\ntrain,1,0,2.0\n")
    with pytest.raises(InputError, match="no validation rows"):
        fc.read_curves(tmp_path / "empty.csv")


def test_floor_scalars_without_floor_draw(fc):
    # evaluate(..., floor=None) leaves None in the floor slots of the additions: no floor values, no error
    ci = {"mean": 0.9}
    result = {"additions": {"density_coverage": {"samples": {"density": ci, "coverage": ci}, "floor": None},
                            "c2st": {"samples": {}, "floor": None},
                            "categories": {"tv_samples": 0.1, "tv_floor": None}}}
    assert fc.floor_scalars(result) == {}
