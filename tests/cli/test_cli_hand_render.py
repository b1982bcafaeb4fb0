"""End-to-end tests of `interhandgen hand` and `interhandgen render` (through interhandgen.cli.main)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from interhandgen.cli import main
from interhandgen.hand.layer import HandModel
from interhandgen.hand.open_hand import open_hand_data
from interhandgen.hand.poses import named_pose, random_pose
from interhandgen.viz import grid_layout


@pytest.mark.parametrize("command", ["hand", "render"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: interhandgen {command}" in out and "--out" in out


def _reload(path) -> trimesh.Trimesh:
    loaded = trimesh.load(path, process=False)
    if isinstance(loaded, trimesh.Scene):
        (loaded,) = loaded.geometry.values()
    return loaded


def _expected_vertices(side, pose, seed=0, betas="zero"):
    """The hand layer's vertices for the CLI's documented recipe (betas drawn first, then the pose)."""
    data = open_hand_data(side)
    rng = np.random.default_rng(seed)
    shape = rng.normal(size=10) if betas == "random" else np.zeros(10)
    local = random_pose(data, rng) if pose == "random" else named_pose(data, pose)
    out = HandModel(data, use_pca=False, flat_hand_mean=True)(
        betas=torch.tensor(shape[None]), hand_pose=torch.tensor(local[None]))
    return out.vertices[0].detach().numpy(), data.faces


@pytest.mark.parametrize("suffix, side, pose, betas, atol", [
    ("obj", "right", "fist", "zero", 1e-7),
    ("ply", "left", "random", "random", 1e-8),  # trimesh writes PLY vertices as float32
    ("glb", "right", "spread", "random", 1e-7),  # glTF stores float32
])
def test_hand_export_reloads_to_the_same_vertices(tmp_path, capsys, suffix, side, pose, betas, atol):
    out = tmp_path / f"hand.{suffix}"
    args = ["hand", "--side", side, "--pose", pose, "--seed", "7", "--betas", betas, "--out", str(out)]
    assert main(args) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    mesh = _reload(out)
    verts, faces = _expected_vertices(side, pose, seed=7, betas=betas)
    np.testing.assert_allclose(np.asarray(mesh.vertices), verts, rtol=0, atol=atol)
    np.testing.assert_array_equal(np.asarray(mesh.faces), faces)
    assert mesh.is_watertight  # the open hand is closed
    assert not list(tmp_path.glob(".*.tmp"))


def test_hand_png_and_determinism(tmp_path):
    for name in ("a", "b"):
        assert main(["hand", "--pose", "pinch", "--out", str(tmp_path / f"{name}.ply"),
                     "--png", str(tmp_path / f"{name}.png")]) == 0
    assert (tmp_path / "a.ply").read_bytes() == (tmp_path / "b.ply").read_bytes()
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    with Image.open(tmp_path / "a.png") as img:
        assert img.size == (grid_layout(1, 1, 3, 384, titles=True).width, grid_layout(1, 1, 3, 384, titles=True).height)


def test_hand_seal_closes_an_open_model_file(tmp_path):
    data = open_hand_data("right")
    # Cut the wrist end off (x near the maximum: the open hand's fingers point along -x).
    centroid_x = data.v_template[data.faces].mean(1)[:, 0]
    open_data = dataclasses.replace(data, faces=data.faces[centroid_x < data.v_template[:, 0].max() - 0.004])
    model = tmp_path / "open_wrist_right.npz"
    open_data.save_npz(model)
    assert main(["hand", "--model", str(model), "--out", str(tmp_path / "open.obj")]) == 0
    assert not _reload(tmp_path / "open.obj").is_watertight
    # PLY: trimesh's OBJ reader drops the vertices that no face uses; the PLY keeps them all.
    assert main(["hand", "--model", str(model), "--seal", "--out", str(tmp_path / "sealed.ply")]) == 0
    sealed = _reload(tmp_path / "sealed.ply")
    assert sealed.is_watertight and len(sealed.vertices) > data.num_verts
    np.testing.assert_allclose(sealed.vertices[: data.num_verts], data.v_template, atol=1e-7)


def test_hand_errors(tmp_path, capsys):
    assert main(["hand", "--out", str(tmp_path / "hand.stl")]) == 2
    assert ".obj" in capsys.readouterr().err
    assert main(["hand", "--model", str(tmp_path / "missing.pkl"), "--out", str(tmp_path / "h.obj")]) == 2
    assert "missing.pkl" in capsys.readouterr().err


def _sample_file(path, n=5):
    from interhandgen.data.format import TwoHandSet

    rng = np.random.default_rng(0)

    def hand(x):
        return dict(pose=rng.normal(0, 0.5, (n, 45)), betas=rng.normal(0, 1, (n, 10)),
                    global_orient=rng.normal(0, 0.3, (n, 3)), transl=np.tile([x, 0.0, 0.0], (n, 1)))

    two = TwoHandSet(hand(-0.08), hand(0.08), pose_space="pca", flat_hand_mean=False,
                     category=np.arange(n) % 2, category_names=["clap", "grasp"])
    two.save(path)
    return two


def test_render_end_to_end(tmp_path, capsys):
    samples = tmp_path / "samples.npz"
    _sample_file(samples)
    out = tmp_path / "grid.png"
    assert main(["render", "--samples", str(samples), "--out", str(out), "--num", "3", "--cols", "2",
                 "--view-size", "48", "--seed", "1"]) == 0
    assert "3 of 5 samples" in capsys.readouterr().out
    layout = grid_layout(3, 2, 2, 48, titles=True)
    with Image.open(out) as img:
        assert img.size == (layout.width, layout.height)
        first = out.read_bytes()
    # Same seed, same picture; the picture shows both hand colours.
    assert main(["render", "--samples", str(samples), "--out", str(out), "--num", "3", "--cols", "2",
                 "--view-size", "48", "--seed", "1"]) == 0
    assert out.read_bytes() == first
    # More than the set holds: all of them, one row of views each with --views.
    assert main(["render", "--samples", str(samples), "--out", str(out), "--num", "50", "--views", "front",
                 "--view-size", "32", "--no-titles"]) == 0
    layout = grid_layout(5, 4, 1, 32)
    with Image.open(out) as img:
        assert img.size == (layout.width, layout.height)


def test_render_errors(tmp_path, capsys):
    samples = tmp_path / "samples.npz"
    _sample_file(samples, n=2)
    with pytest.raises(SystemExit) as exc:  # counts are checked by the parser (interhandgen.cli._args.positive_int)
        main(["render", "--samples", str(samples), "--out", str(tmp_path / "g.png"), "--num", "0"])
    assert exc.value.code == 2
    assert "--num" in capsys.readouterr().err
    out = str(tmp_path / "g.png")
    assert main(["render", "--samples", str(samples), "--out", out, "--views", "front,oblique"]) == 2
    assert "oblique" in capsys.readouterr().err
    assert main(["render", "--samples", str(tmp_path / "none.npz"), "--out", str(tmp_path / "g.png")]) == 2
