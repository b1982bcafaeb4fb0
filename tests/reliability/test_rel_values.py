"""Values with a physical meaning: documented limits (liftable with --no-limits), NaN/inf always refused,
devices validated once, sizes bounded by the machine."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from interhandgen import limits
from interhandgen.data.format import TwoHandSet
from interhandgen.exceptions import InputError

from _rel_util import assert_clean_error, run_cli, tiny_set


@pytest.fixture(autouse=True)
def _limits_on(monkeypatch):
    monkeypatch.delenv(limits.NO_LIMITS_ENV, raising=False)


@pytest.mark.parametrize("extra, fragment", [
    (["--cfg-scale", "1000"], "--cfg-scale must lie in [0.0, 10.0]"),
    (["--cfg-scale", "-1"], "--cfg-scale must lie in"),
    (["--cfg-scale", "nan"], "--cfg-scale must be a finite number"),
    (["--eta", "inf"], "--eta must be a finite number"),
    (["--settle-attract-mm=-inf"], "--settle-attract-mm must be a finite number"),
    (["--num", str(10 ** 12)], "--num 1000000000000: needs about"),
    (["--num", "0"], "argument --num: must be >= 1"),
    (["--device", "bogus"], "--device must be cpu, cuda or cuda:N, got 'bogus'"),
    (["--device", "meta"], "--device must be cpu, cuda or cuda:N, got 'meta'"),
])
def test_sample_arguments(tmp_path, capsys, extra, fragment):
    argv = ["sample", "--num", "2", "--out", tmp_path / "a.npz", *extra]
    rc, err = run_cli(argv, capsys)
    assert_clean_error(rc, err, fragment)
    assert not (tmp_path / "a.npz").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_on_a_cpu_machine(tmp_path, capsys):
    for argv in (["sample", "--num", "2", "--out", tmp_path / "a.npz", "--device", "cuda"],
                 ["render", "--samples", "x.npz", "--out", tmp_path / "a.png", "--device", "cuda:0"],
                 ["data", "synth", "--num", "2", "--out", tmp_path / "a.npz", "--device", "cuda"]):
        rc, err = run_cli(argv, capsys)
        assert_clean_error(rc, err, "no CUDA device")


def test_check_device():
    assert limits.check_device("cpu") == "cpu"
    for bad in ("bogus", "meta", "cuda:-1", "", "cpu:x"):
        with pytest.raises(InputError, match="--device"):
            limits.check_device(bad)
    if torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA device"):
            limits.check_device(f"cuda:{torch.cuda.device_count()}")


def test_no_limits_lifts_ranges_but_not_nan(monkeypatch):
    with pytest.raises(InputError, match="documented limit"):
        limits.check_range("--cfg-scale", 1000.0, 0.0, limits.CFG_SCALE_MAX)
    monkeypatch.setenv(limits.NO_LIMITS_ENV, "1")
    assert limits.check_range("--cfg-scale", 1000.0, 0.0, limits.CFG_SCALE_MAX) == 1000.0
    with pytest.raises(InputError, match="finite"):
        limits.check_range("--cfg-scale", float("nan"), 0.0, limits.CFG_SCALE_MAX)


def test_global_no_limits_flag_reaches_the_command(tmp_path, capsys, monkeypatch):
    # --num beyond the memory bound passes the size check with --no-limits and fails at the next step instead
    # (the missing model), so nothing is sampled.
    rc, err = run_cli(["--no-limits", "sample", "--num", str(10 ** 12), "--out", tmp_path / "a.npz",
                       "--checkpoint", tmp_path / "missing.safetensors"], capsys)
    assert_clean_error(rc, err, "model not found")
    assert not (tmp_path / "a.npz").exists()


@pytest.mark.parametrize("field, value, fragment", [
    ("left_betas", 1e4, "field 'left_betas' has |value| 1e+04 > 10"),
    ("right_transl", 1e30, "field 'right_transl' has |value| 1e+30 > 10"),
    ("right_pose", -500.0, "field 'right_pose' has |value| 500 > 100"),
])
def test_absurd_values_in_a_file(tmp_path, capsys, monkeypatch, field, value, fragment):
    arrays = tiny_set().to_arrays()
    arrays[field] = arrays[field].copy()
    arrays[field][1, 0] = value
    path = tmp_path / "absurd.npz"
    np.savez(path, **arrays)
    with pytest.raises(InputError, match="at sample 1"):
        TwoHandSet.load(path)
    rc, err = run_cli(["render", "--samples", path, "--out", tmp_path / "r.png"], capsys)
    assert_clean_error(rc, err, str(path), fragment)
    monkeypatch.setenv(limits.NO_LIMITS_ENV, "1")
    assert len(TwoHandSet.load(path)) == 3


def test_limits_do_not_reject_the_shipped_data_scale():
    # Every value the synthetic generator and real data sets produce lies far inside the limits.
    two = tiny_set(n=50)
    limits.check_hand_values({"left_betas": two.left.betas * 5, "left_transl": two.left.transl + 2.0}, "x")


@pytest.mark.parametrize("view_size, fragment", [
    (30000, "--view-size must lie in [16, 4096]"),
    (8, "--view-size must lie in"),
    (0, "argument --view-size: must be >= 1"),
])
def test_render_view_size(tmp_path, capsys, view_size, fragment):
    path = tmp_path / "s.npz"
    tiny_set().save(path)
    rc, err = run_cli(["render", "--samples", path, "--out", tmp_path / "r.png", "--view-size", view_size], capsys)
    assert_clean_error(rc, err, fragment)
    assert not (tmp_path / "r.png").exists()


def test_render_grid_pixel_bound():
    with pytest.raises(InputError, match="pixels"):
        limits.check_view_size(4096, 64, 4, 4)
    limits.check_view_size(256, 16, 2, 4)


def test_count_against_disk(tmp_path):
    free = limits.free_disk_bytes(tmp_path)
    with pytest.raises(InputError, match="GB are free"):
        limits.check_count("--num", 1000, out=tmp_path / "x.npz", disk_bytes_each=free)  # 1000x the free space
    assert limits.check_count("--num", 10, out=tmp_path / "x.npz", disk_bytes_each=1) == 10
    with pytest.raises(InputError, match="integer"):
        limits.check_count("--num", True)


def test_synth_num_huge_refused_immediately(tmp_path, capsys):
    rc, err = run_cli(["data", "synth", "--num", str(10 ** 11), "--out", tmp_path / "s.npz"], capsys)
    assert_clean_error(rc, err, "--num 100000000000: needs about")
    assert list(tmp_path.iterdir()) == []


def test_model_statistics_checked_at_load(tmp_path):
    from interhandgen.generation import bundled_model_path, load_model
    from interhandgen.models.artifact import export_model, read_model_file

    art = read_model_file(bundled_model_path())
    std = art.stats_std
    for name, bad_std in (("zero", std.clone().index_fill_(1, torch.tensor([3]), 0.0)),
                          ("nan", std.clone().index_fill_(1, torch.tensor([5]), float("nan")))):
        path = tmp_path / f"{name}.safetensors"
        export_model(art.state_dict, art.model_config, art.stats_mean, bad_std, path, art.provenance)
        with pytest.raises(InputError, match=f"{path}: stats"):
            load_model(path)


def test_sampler_settings_refuse_nan_cfg_scale():
    from interhandgen.generation import SamplerSettings

    with pytest.raises(ValueError, match="cfg_scale must be >= 0"):
        SamplerSettings(cfg_scale=float("nan")).validate()


def test_synth_api_refuses_sizes_that_cannot_fit(tmp_path):
    from interhandgen.data.synth import generate_synthetic_set

    with pytest.raises(InputError, match="num 100000000000: needs about"):
        generate_synthetic_set(10 ** 11, 0, str(tmp_path / "s.npz"), progress=False)
    assert list(tmp_path.iterdir()) == []
