"""`interhandgen evaluate` end to end: samples npz + reference npz -> metrics.json, report.md, valid PNG plots;
mismatched hand models and sizes fail with a clear message."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from interhandgen.cli import main
from interhandgen.data.format import HandModelSpec, TwoHandSet
from interhandgen.evaluation.protocol import canonical_two_hand_vertices

from fixtures.evaluator import save_tiny_evaluator


def random_pairs(n: int, seed: int, overlapping: int) -> TwoHandSet:
    """n pairs with random poses; the first ``overlapping`` right hands sit on the left hand, the rest 30-40 cm away."""
    rng = np.random.default_rng(seed)
    left = dict(pose=rng.normal(0, 0.3, (n, 45)), betas=rng.normal(0, 0.5, (n, 10)),
                global_orient=np.zeros((n, 3)), transl=np.zeros((n, 3)))
    transl = np.zeros((n, 3))
    transl[:, 0] = np.where(np.arange(n) < overlapping, rng.uniform(0.0, 0.01, n), rng.uniform(0.3, 0.4, n))
    right = dict(pose=rng.normal(0, 0.3, (n, 45)), betas=rng.normal(0, 0.5, (n, 10)),
                 global_orient=rng.normal(0, 0.2, (n, 3)), transl=transl)
    return TwoHandSet(left, right, pose_space="pca", flat_hand_mean=False, hand_model="open_hand")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate_cli")
    samples, reference = random_pairs(24, 0, overlapping=3), random_pairs(24, 1, overlapping=3)
    samples.save(root / "samples.npz")
    reference.save(root / "reference.npz")
    save_tiny_evaluator(reference, root / "evaluator")
    return root


def run_cli(files, out, *extra):
    return main(["evaluate", "--samples", str(files / "samples.npz"), "--reference", str(files / "reference.npz"),
                 "--evaluator", str(files / "evaluator"), "--out", str(out), "--replications", "2",
                 "--subset-size", "16", "--no-progress", "--no-floor", "--no-categories", *extra])


def test_evaluate_writes_metrics_table_and_valid_pngs(files, tmp_path, capsys):
    out = tmp_path / "report"
    assert run_cli(files, out) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_samples"] == 24 and metrics["num_reference"] == 24
    d, g = metrics["distribution"], metrics["geometry"]
    for key in ("fhid", "khid", "diversity", "precision", "recall"):
        assert d[key]["num_replications"] == 2 and d[key]["subset_size"] == 16
        assert d[key]["ci_low"] <= d[key]["mean"] <= d[key]["ci_high"]
    assert 0 <= d["precision"]["mean"] <= 1 and 0 <= d["recall"]["mean"] <= 1
    # 3 of 24 right hands sit on the left one: those penetrate, the far ones (30-40 cm) cannot.
    assert g["penetrating_fraction"] == pytest.approx(3 / 24)
    assert g["penetration_volume_cm3"]["max"] > 0 and g["penetration_depth_mm"]["max"] > 0
    assert g["penetration_depth_mm"]["pairs_evaluated"] == 3
    assert g["min_distance_mm"]["max"] > 200
    assert g["contact_rate"] == pytest.approx(3 / 24) and g["proximity_ratio"] == pytest.approx(3 / 24)
    assert "_arrays" not in g and "_features" not in metrics
    table = (out / "report.md").read_text()
    for row in ("FHID", "KHID", "Precision", "Recall", "Penetration volume", "Contact rate", "Proximity ratio"):
        assert row in table
    assert "| metric | value |" in capsys.readouterr().out
    for name in ("features_pca.png", "geometry_histograms.png", "best_median_worst.png"):
        with Image.open(out / name) as img:
            img.verify()  # raises on a truncated or corrupt PNG
        with Image.open(out / name) as img:
            assert img.format == "PNG" and img.size[0] > 100 and img.size[1] > 100


def test_mismatched_hand_models_fail_with_a_clear_message(files, tmp_path, capsys):
    mano_ref = TwoHandSet.load(files / "reference.npz").with_hand_model(HandModelSpec.mano())
    mano_ref.save(tmp_path / "mano_ref.npz")
    code = main(["evaluate", "--samples", str(files / "samples.npz"), "--reference", str(tmp_path / "mano_ref.npz"),
                 "--evaluator", str(files / "evaluator"), "--out", str(tmp_path / "r"), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "hand model" in err and "same hand model" in err
    assert not (tmp_path / "r" / "metrics.json").exists()


def test_too_few_samples_and_too_large_subsets_fail_with_a_clear_message(files, tmp_path, capsys):
    TwoHandSet.load(files / "samples.npz")[:1].save(tmp_path / "one.npz")
    code = main(["evaluate", "--samples", str(tmp_path / "one.npz"), "--reference", str(files / "reference.npz"),
                 "--evaluator", str(files / "evaluator"), "--out", str(tmp_path / "r1"), "--no-progress"])
    assert code == 2 and "at least 2" in capsys.readouterr().err
    code = run_cli(files, tmp_path / "r2", "--subset-size", "100", "--no-penetration")
    assert code == 2 and "subset_size 100 exceeds the smaller set (24 samples)" in capsys.readouterr().err
    assert not (tmp_path / "r2" / "metrics.json").exists()


def test_missing_files_fail_with_the_path(files, tmp_path, capsys):
    code = main(["evaluate", "--samples", str(tmp_path / "nope.npz"), "--reference", str(files / "reference.npz"),
                 "--evaluator", str(files / "evaluator"), "--out", str(tmp_path / "r"), "--no-progress"])
    assert code == 2 and "nope.npz" in capsys.readouterr().err


def test_bundled_evaluator_is_the_directory_and_loads():
    from interhandgen.evaluation.bundled import BUNDLED_EVALUATOR, bundled_evaluator_path, load_evaluator
    from interhandgen.evaluation.features import load_feature_extractor

    path = bundled_evaluator_path()
    assert BUNDLED_EVALUATOR == "evaluator_open_hand_synth" and path.name == BUNDLED_EVALUATOR and path.is_dir()
    assert (path / "config.json").is_file() and (path / "model.safetensors").is_file()
    model = load_evaluator()
    assert not model.training
    # Same weights as loading the directory explicitly; it takes the open-hand vertices of both hands.
    explicit = load_feature_extractor(path)
    for (name, p), (_, q) in zip(model.state_dict().items(), explicit.state_dict().items()):
        assert torch.equal(p, q), name
    pairs = random_pairs(6, 3, overlapping=2)
    verts = canonical_two_hand_vertices(pairs, pairs.hand_models())
    assert model.config.num_vertices == verts.shape[2]
    with torch.no_grad():
        feats = model.features(verts)
    assert feats.shape == (6, model.config.feature_dim) and torch.isfinite(feats).all()
    assert feats.std(dim=0).max() > 0  # different pairs give different features


def test_evaluate_without_evaluator_uses_the_bundled_one(files, tmp_path):
    from interhandgen.evaluation.bundled import bundled_evaluator_path

    common = ["--samples", str(files / "samples.npz"), "--reference", str(files / "reference.npz"),
              "--replications", "2", "--subset-size", "16", "--no-progress", "--no-penetration", "--no-floor",
              "--no-categories"]
    assert main(["evaluate", *common, "--out", str(tmp_path / "default")]) == 0
    assert main(["evaluate", *common, "--evaluator", str(bundled_evaluator_path()),
                 "--out", str(tmp_path / "explicit")]) == 0
    default = json.loads((tmp_path / "default" / "metrics.json").read_text())["distribution"]
    explicit = json.loads((tmp_path / "explicit" / "metrics.json").read_text())["distribution"]
    assert default == explicit
    # and it is not the small test evaluator of the other tests
    assert main(["evaluate", *common, "--evaluator", str(files / "evaluator"), "--out", str(tmp_path / "small")]) == 0
    small = json.loads((tmp_path / "small" / "metrics.json").read_text())["distribution"]
    assert small["fhid"]["mean"] != default["fhid"]["mean"]


def test_reference_features_are_cached_by_content(files, tmp_path, capsys):
    import json
    import warnings

    from interhandgen.data.format import TwoHandSet
    from interhandgen.evaluation.bundled import load_evaluator
    from interhandgen.evaluation.cache import cached_reference_features, reference_features_key
    from interhandgen.evaluation.features import extract_features

    cache = tmp_path / "cache"
    assert run_cli(files, tmp_path / "a", "--feature-cache", str(cache)) == 0
    assert "stored in" in capsys.readouterr().out
    assert run_cli(files, tmp_path / "b", "--feature-cache", str(cache)) == 0
    assert "read from" in capsys.readouterr().out
    a = json.loads((tmp_path / "a" / "metrics.json").read_text())
    b = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert a["distribution"] == b["distribution"] and b["reference_feature_cache"]["hit"]
    # --no-feature-cache leaves the cache alone and gives the same numbers.
    assert run_cli(files, tmp_path / "c", "--no-feature-cache") == 0
    c = json.loads((tmp_path / "c" / "metrics.json").read_text())
    assert c["reference_feature_cache"] is None and c["distribution"] == a["distribution"]

    # The key follows the content: another reference or other weights give another key.
    ref = TwoHandSet.load(files / "reference.npz")
    ext = load_evaluator(files / "evaluator")
    key = reference_features_key(ext, ref, 64, "cpu")
    assert reference_features_key(ext, ref[np.arange(len(ref) - 1)], 64, "cpu") != key
    assert reference_features_key(ext, ref, 32, "cpu") != key
    with torch.no_grad():
        next(ext.parameters()).add_(1e-3)
    assert reference_features_key(ext, ref, 64, "cpu") != key

    # A damaged cache file is recomputed (with a warning), not trusted.
    calls = []

    def compute():
        calls.append(1)
        return extract_features(ext, canonical_two_hand_vertices(ref, ref.hand_models()), batch_size=64,
                                progress=False)

    feats, hit, path = cached_reference_features(ext, ref, compute, 64, "cpu", tmp_path / "c2")
    assert not hit and calls == [1]
    again, hit, _ = cached_reference_features(ext, ref, compute, 64, "cpu", tmp_path / "c2")
    assert hit and calls == [1] and torch.equal(again, feats)
    path.write_bytes(b"not a numpy file")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        fixed, hit, _ = cached_reference_features(ext, ref, compute, 64, "cpu", tmp_path / "c2")
    assert not hit and calls == [1, 1] and torch.equal(fixed, feats) and any("unreadable" in str(x.message) for x in w)
