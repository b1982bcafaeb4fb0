"""configs/fair/: one training budget for every model kind (docs/results.md, fair comparison)."""

from __future__ import annotations

from pathlib import Path

from interhandgen.models import count_parameters
from interhandgen.models.registry import build_model, model_kind
from interhandgen.training.experiment import load_experiment

FAIR = Path(__file__).resolve().parents[2] / "configs" / "fair"


def test_every_kind_has_the_same_training_section():
    loaded = {p.stem: load_experiment(p) for p in sorted(FAIR.glob("*.yaml"))}
    assert set(loaded) == {"shared", "separate", "joint", "vae"}
    kinds = {name: model_kind(model) for name, (model, _) in loaded.items()}
    assert kinds == {"shared": "shared", "separate": "separate", "joint": "joint", "vae": "vae"}
    trains = {name: train for name, (_, train) in loaded.items()}
    first = trains["shared"]
    for name, train in trains.items():
        assert train == first, f"configs/fair/{name}.yaml: train section differs from shared.yaml"
    # the budget the docs state: 20 epochs of 48,000 rows // 512 = 1,860 steps of batch 512
    assert first.epochs == 20 and first.batch_size == 512 and 48000 // first.batch_size * first.epochs == 1860
    assert first.sample_every_epochs == 0 and first.seed == 0


def test_parameter_counts_as_documented():
    counts = {p.stem: count_parameters(build_model(load_experiment(p)[0])) for p in sorted(FAIR.glob("*.yaml"))}
    assert counts["shared"] == 1_874_752  # configs/small.yaml's network, docs/bundled_model.md
    assert counts["separate"] == 2 * counts["shared"]
    assert 1.9e6 < counts["joint"] < 2.2e6 and 1.8e6 < counts["vae"] < 2.0e6


def test_v_configs_differ_from_the_fair_ones_by_the_objective_only():
    fair_v = FAIR.parent / "fair_v"
    names = sorted(p.stem for p in fair_v.glob("*.yaml"))
    assert names == ["joint", "separate", "shared"]  # the VAE has no prediction target
    for name in names:
        model_v, train_v = load_experiment(fair_v / f"{name}.yaml")
        model, train = load_experiment(FAIR / f"{name}.yaml")
        assert model_v == {**model, "prediction": "v"}, name
        assert train_v.loss_weighting == "v" and train.loss_weighting == "uniform"
        assert train_v == type(train)(**{**vars(train), "loss_weighting": "v"}), name
    # configs/prior/fair_v.yaml is the shared run of docs/prior_experiments.md: the same experiment
    assert load_experiment(fair_v / "shared.yaml") == load_experiment(FAIR.parent / "prior" / "fair_v.yaml")
