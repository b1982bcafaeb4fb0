"""Tests of `interhandgen data convert | stats | synth` (the data_cmd module, driven through argparse).

Truths: the files written in the data sets' formats (convert must reproduce them), and closed forms for the
statistics: two hand models that are closed spheres at rest (betas 0, pose 0), placed at a known distance, have
minimum distance d - 2r and penetration volume equal to the spherical lens pi (4r + d)(2r - d)^2 / 12 (up to the
polyhedral approximation of the sphere).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math

import numpy as np
import pytest
import trimesh

from interhandgen.cli import data_cmd
from interhandgen.data import HandModelSpec, TwoHandSet
from interhandgen.data._records import BadRecordError
from interhandgen.hand import save_mano_pkl
from fixtures.data import write_interhand_json
from fixtures.hands import random_hand_data


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="interhandgen")
    sub = parser.add_subparsers(dest="command")
    data_cmd.register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


def test_convert_interhand_json(tmp_path, capsys):
    path, data = write_interhand_json(tmp_path)
    out = tmp_path / "ih.npz"
    assert run_cli(["data", "convert", "--format", "interhand-json", str(path), "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "6 records read, 3 kept" in text and "filtered (both hands null): 1" in text and "wrote 3" in text
    s = TwoHandSet.load(out)
    assert list(s.record_id) == ["7/12", "9/100", "9/102"]
    assert s.right.transl.dtype == np.float32 and s.right.transl[1].tolist() == np.float32(data["9"]["100"]["right"]["trans"]).tolist()
    assert s.metadata["load_summary"]["filtered"] == {"both hands null": 1, "left hand null": 1, "right hand null": 1}


def test_convert_bad_record_stops_unless_skip_bad(tmp_path, capsys):
    path, data = write_interhand_json(tmp_path)
    data["7"]["12"]["left"]["pose"] = [0.0] * 3
    path.write_text(json.dumps(data))
    out = tmp_path / "ih.npz"
    with pytest.raises(BadRecordError, match="capture 7 frame 12"):
        run_cli(["data", "convert", "--format", "interhand-json", str(path), "--out", str(out), "--no-progress"])
    assert not out.exists()
    assert run_cli(["data", "convert", "--format", "interhand-json", str(path), "--out", str(out), "--skip-bad",
                    "--float64", "--no-progress"]) == 0
    assert "skipped as bad: 1 records" in capsys.readouterr().out
    assert len(TwoHandSet.load(out)) == 2 and TwoHandSet.load(out).left.pose.dtype == np.float64
    with pytest.raises(ValueError, match="--unique-frames"):
        run_cli(["data", "convert", "--format", "interhand-json", str(path), "--out", str(out), "--unique-frames"])
    with pytest.raises(ValueError, match=r"\.npz"):
        run_cli(["data", "convert", "--format", "interhand-json", str(path), "--out", str(tmp_path / "x.h5")])


# ---------------------------------------------------------------------------------------------------------------------
RADIUS = 0.03


def sphere_model():
    """A MANO-layout model whose rest mesh (betas 0, pose 0) is a closed sphere of RADIUS around the origin."""
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=RADIUS)
    base = random_hand_data(seed=4, num_verts=len(sphere.vertices))
    return dataclasses.replace(base, v_template=np.asarray(sphere.vertices), faces=np.asarray(sphere.faces),
                               shapedirs=np.zeros_like(base.shapedirs)), sphere


def lens_volume(r, d):
    return math.pi * (4 * r + d) * (2 * r - d) ** 2 / 12


@pytest.fixture
def sphere_pairs(tmp_path):
    right, sphere = sphere_model()
    save_mano_pkl(right, tmp_path / "MANO_RIGHT.pkl")
    save_mano_pkl(right.mirrored(), tmp_path / "MANO_LEFT.pkl")
    # Where the rest sphere sits: posing is the identity at pose 0, but LBS rotates about the root joint.
    dists = np.array([3.0, 3.0, 3.0, 1.2, 1.2, 1.5]) * RADIUS
    n = len(dists)
    zeros = lambda k: np.zeros((n, k))  # noqa: E731
    right_t = np.zeros((n, 3))
    right_t[:, 0] = dists
    s = TwoHandSet(
        dict(pose=zeros(45), betas=zeros(10), global_orient=zeros(3), transl=zeros(3)),
        dict(pose=zeros(45), betas=zeros(10), global_orient=zeros(3), transl=right_t),
        pose_space="axis_angle", flat_hand_mean=True, hand_model=HandModelSpec.mano(tmp_path),
        category=[0, 0, 0, 1, 1, 1], category_names=["apart", "overlap"], split=[0, 1, 0, 0, 1, 0],
        split_names=["train", "validation"],
    )
    path = s.save(tmp_path / "spheres.npz")
    return path, dists, sphere


def test_stats_counts_and_closed_form_geometry(sphere_pairs, tmp_path, capsys):
    path, dists, sphere = sphere_pairs
    out = tmp_path / "report"
    assert run_cli(["data", "stats", str(path), "--out", str(out), "--no-png", "--volume-samples", "6", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "per category:" in text and "per split:" in text
    stats = json.loads((out / "stats.json").read_text())
    assert stats["per_category"] == {"apart": 3, "overlap": 3}
    assert stats["per_split"] == {"train": 4, "validation": 2}
    assert stats["per_split_category"] == {"train": {"apart": 2, "overlap": 2}, "validation": {"apart": 1, "overlap": 1}}
    geo = stats["geometry"]["per_group"]
    # Apart: vertex-to-vertex distance of two icospheres at 3r: d - 2r up to the mesh's vertex spacing.
    assert abs(geo["apart"]["min_distance_mm"]["mean"] - 1000 * RADIUS) < 1.0
    assert geo["apart"]["penetration_depth_mm"]["max"] == 0 and geo["apart"]["penetration_volume_cm3"]["max"] == 0
    assert geo["apart"]["proximity_ratio"] == 0.0
    # Overlap: lens volumes of the polyhedral spheres (volume ratio of the icosphere to the sphere, cubed radius).
    scale = sphere.volume / (4 / 3 * math.pi * RADIUS ** 3)
    expect = np.mean([lens_volume(RADIUS, d) for d in dists[3:]]) * 1e6 * scale
    got = geo["overlap"]["penetration_volume_cm3"]["mean"]
    assert abs(got - expect) / expect < 0.05
    assert geo["overlap"]["penetration_depth_mm"]["fraction_penetrating"] == 1.0
    assert geo["all"]["n"] == 6


def test_stats_counts_only_and_errors(sphere_pairs, tmp_path, capsys):
    path, _, _ = sphere_pairs
    assert run_cli(["data", "stats", str(path), "--no-geometry"]) == 0
    assert "geometry" not in capsys.readouterr().out
    with pytest.raises(FileNotFoundError):
        run_cli(["data", "stats", str(tmp_path / "missing.npz")])
    with pytest.raises(SystemExit) as exc:  # the parser checks counts (positive_int)
        run_cli(["data", "stats", str(path), "--max-samples", "0"])
    assert exc.value.code == 2 and "--max-samples" in capsys.readouterr().err


def test_synth_forwards_to_the_generator(tmp_path, monkeypatch, capsys):
    import interhandgen.data.synth as synth

    calls = []

    def fake(num, seed, out, **kw):
        calls.append((num, seed, out, kw))
        return list(range(num))

    monkeypatch.setattr(synth, "generate_synthetic_set", fake, raising=False)
    assert run_cli(["data", "synth", "--num", "5", "--seed", "3", "--out", str(tmp_path / "s.npz"), "--no-progress",
                    "--splits", "0.5,0.25,0.25", "--categories", "clasp, fist_bump"]) == 0
    assert calls == [(5, 3, str(tmp_path / "s.npz"), {"device": "cpu", "batch_size": 256, "splits": (0.5, 0.25, 0.25),
                                                       "progress": False, "categories": ["clasp", "fist_bump"]})]
    assert "wrote 5 synthetic" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        run_cli(["data", "synth", "--num", "0", "--out", str(tmp_path / "s.npz")])
    assert exc.value.code == 2 and "--num" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--splits"):
        run_cli(["data", "synth", "--num", "2", "--splits", "a,b", "--out", str(tmp_path / "s.npz")])
