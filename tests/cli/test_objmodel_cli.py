"""The object model through the CLI: train an object model on a hand-object set, sample around a user's mesh and
a library family with meshes in one world frame and a render, complete with the object."""

import json

import numpy as np
import pytest
import trimesh
import yaml
from PIL import Image

from interhandgen.cli import main
from interhandgen.data.format import TwoHandSet
from interhandgen.models.artifact import read_model_file
from interhandgen.objects.library import sample_object
from interhandgen.viz.render import OBJECT_COLOUR

from fixtures.objmodel_sets import SMALL_OBJECT_MODEL as SMALL, random_object_set


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("objcli")
    data = root / "obj.npz"
    random_object_set(24, seed=0).save(data)
    cfg = root / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"model": SMALL, "train": {"epochs": 2, "batch_size": 8, "warmup_steps": 1,
                                                             "num_timesteps": 20, "schedule": "cosine",
                                                             "sample_every_epochs": 100}}))
    assert main(["train", "--config", str(cfg), "--data", str(data), "--out", str(root / "run"), "--no-progress",
                 "--threads", "1"]) == 0
    return root


def test_train_writes_an_object_model_file(trained):
    art = read_model_file(trained / "run" / "model.safetensors")
    assert art.kind == "shared_object" and art.conditioning == ("hand", "object")
    assert art.model_config["object_encoder"]["num_points"] == 32
    # the recorded orientations are the training split's object rotations, per family
    data = TwoHandSet.load(trained / "obj.npz").select_split("train")
    fams = np.asarray(data.object_library.families)[data.object_id]
    for fam, rows in art.objects["orientations"].items():
        want = data.object_pose[fams == fam, 1:4][:len(rows)]
        np.testing.assert_allclose(np.asarray(rows), want, atol=1e-6)
    assert art.stats_std[0, 61:64].min() > 1e-3  # the anchor's place in the object frame varies (learned)


def test_sample_around_a_user_mesh_writes_meshes_in_one_world_frame_and_a_render(trained, tmp_path):
    obj = sample_object("mug", np.random.default_rng(0))
    centre = np.array([0.3, 0.1, 0.9])
    trimesh.Trimesh(obj.vertices + centre, obj.faces).export(tmp_path / "mug.obj")
    out, meshes, png = tmp_path / "s.npz", tmp_path / "meshes", tmp_path / "s.png"
    assert main(["sample", "--checkpoint", str(trained / "run"), "--object", str(tmp_path / "mug.obj"), "--num", "3",
                 "--steps", "3", "--out", str(out), "--meshes", str(meshes), "--render", str(png), "--no-progress",
                 "--threads", "1"]) == 0
    two = TwoHandSet.load(out)
    assert two.object_library is not None and len(two) == 3
    given = trimesh.load(tmp_path / "mug.obj", force="mesh")
    hands = two.hand_models()
    verts = two.vertices(hands)
    for i in range(3):
        o = trimesh.load(meshes / f"{i:06d}_object.ply", process=False)
        np.testing.assert_allclose(np.sort(o.vertices, 0), np.sort(given.vertices, 0), atol=1e-6)  # where it was
        for side in ("left", "right"):
            h = trimesh.load(meshes / f"{i:06d}_{side}.ply", process=False)
            np.testing.assert_allclose(h.vertices, verts[side][i].numpy(), atol=1e-6)
    pixels = np.asarray(Image.open(png).convert("RGB")).reshape(-1, 3).astype(int)
    greenish = (np.abs(pixels - np.array(OBJECT_COLOUR)).sum(1) < 60).sum()
    assert greenish > 50  # the object is drawn in its own colour
    grid = tmp_path / "grid.png"  # `interhandgen render` of the set draws the object too
    assert main(["render", "--samples", str(out), "--out", str(grid), "--views", "front", "--view-size", "64"]) == 0
    pixels = np.asarray(Image.open(grid).convert("RGB")).reshape(-1, 3).astype(int)
    assert (np.abs(pixels - np.array(OBJECT_COLOUR)).sum(1) < 60).sum() > 20


def test_family_sampling_and_completion_with_the_object(trained, tmp_path):
    fam = sorted(read_model_file(trained / "run" / "model.safetensors").objects["orientations"])[0]
    out = tmp_path / "f.npz"
    assert main(["sample", "--checkpoint", str(trained / "run"), "--object-family", fam, "--num-objects", "2",
                 "--num", "4", "--steps", "3", "--out", str(out), "--no-progress", "--threads", "1"]) == 0
    two = TwoHandSet.load(out)
    assert set(two.object_library.families) == {fam} and len(two.object_library) == 2
    done = tmp_path / "c.npz"
    assert main(["complete", "--checkpoint", str(trained / "run"), "--given", str(out), "--side", "right", "--steps",
                 "3", "--out", str(done), "--no-progress", "--threads", "1"]) == 0
    c = TwoHandSet.load(done)
    np.testing.assert_array_equal(c.right.transl, two.right.transl)
    np.testing.assert_array_equal(c.object_pose, two.object_pose)
    meta = json.loads(json.dumps(c.metadata))
    assert meta["completed_side"] == "left"


def test_object_errors_are_clean(trained, tmp_path, capsys):
    (tmp_path / "open.obj").write_text("v 0 0 0\nv 0.1 0 0\nv 0 0.1 0\nf 1 2 3\n")
    code = main(["sample", "--checkpoint", str(trained / "run"), "--object", str(tmp_path / "open.obj"), "--num", "2",
                 "--out", str(tmp_path / "x.npz"), "--no-progress"])
    assert code != 0 and "closed" in capsys.readouterr().err
    code = main(["sample", "--checkpoint", str(trained / "run"), "--object-family", "teapot", "--num", "2",
                 "--out", str(tmp_path / "y.npz"), "--no-progress"])
    assert code != 0 and "unknown family" in capsys.readouterr().err


def test_complete_given_hands_with_a_user_object(trained, tmp_path):
    obj = sample_object("box", np.random.default_rng(1))
    trimesh.Trimesh(obj.vertices + np.array([0.0, 0.05, 0.0]), obj.faces).export(tmp_path / "box.obj")
    full = random_object_set(3, seed=2, splits=False)
    plain = TwoHandSet(full.left, full.right, pose_space=full.pose_space, flat_hand_mean=full.flat_hand_mean)
    plain.save(tmp_path / "plain.npz")
    out = tmp_path / "c.npz"
    assert main(["complete", "--checkpoint", str(trained / "run"), "--given", str(tmp_path / "plain.npz"), "--side",
                 "left", "--object", str(tmp_path / "box.obj"), "--steps", "3", "--out", str(out), "--meshes",
                 str(tmp_path / "m"), "--no-progress", "--threads", "1"]) == 0
    c = TwoHandSet.load(out)
    np.testing.assert_array_equal(c.left.transl, plain.left.transl)
    assert len(c.object_library) == 1 and (tmp_path / "m" / "000002_object.ply").is_file()
    assert c.metadata["object_checks"]["pairs"] == 3


def test_grasp_and_redraw_options_reach_the_sampler_and_are_checked(trained, tmp_path, capsys):
    out = tmp_path / "g.npz"
    assert main(["sample", "--checkpoint", str(trained / "run"), "--object-family", "box", "--num", "3", "--steps",
                 "3", "--grasp-steps", "4", "--redraw-rounds", "1", "--object-in-hand-mm", "2.5",
                 "--exact-push-rounds", "3", "--clear-rounds", "2", "--exact-clear-rounds", "1", "--out", str(out),
                 "--no-progress", "--threads", "1"]) == 0
    recorded = TwoHandSet.load(out).metadata["sampler"]["object"]
    assert recorded["clear_rounds"] == 2 and recorded["exact_clear_rounds"] == 1
    assert TwoHandSet.load(out).metadata["exact_clearance"]["rounds"] == 1
    checks = TwoHandSet.load(out).metadata["object_checks"]
    assert checks["pairs"] == 3
    # the command says how many pairs still fail exactly when some do
    assert ("still fail the sampler's hand-object checks" in capsys.readouterr().out) == bool(checks["failing"])
    assert recorded["grasp_steps"] == 4 and recorded["redraw_rounds"] == 1
    assert recorded["redraw_object_in_hand_mm"] == 2.5 and recorded["exact_push_rounds"] == 3
    assert main(["sample", "--checkpoint", str(trained / "run"), "--object-family", "box", "--num", "3",
                 "--grasp-steps", "-1", "--out", str(tmp_path / "bad.npz"), "--no-progress"]) != 0
    assert "grasp_steps" in capsys.readouterr().err
    assert main(["sample", "--checkpoint", str(trained / "run"), "--object-family", "box", "--num", "3",
                 "--exact-clear-rounds", "-1", "--out", str(tmp_path / "bad.npz"), "--no-progress"]) != 0
    assert "exact_clear_rounds" in capsys.readouterr().err


def _two_hand_set(n, seed):
    obj = random_object_set(n, seed=seed)
    ids, names = obj.labels["split"]
    return TwoHandSet(obj.left, obj.right, pose_space=obj.pose_space, flat_hand_mean=obj.flat_hand_mean,
                      split=ids, split_names=list(names))


def test_object_free_rows_beside_the_object_set(trained, tmp_path, capsys):
    free = tmp_path / "two.npz"
    _two_hand_set(40, seed=3).save(free)
    cfg, data = str(trained / "cfg.yaml"), str(trained / "obj.npz")
    run = tmp_path / "mixed"
    # 20 training pairs + their mirror images = 40 object rows; share 0.6 -> 60 object-free rows
    assert main(["train", "--config", cfg, "--data", data, "--out", str(run), "--no-progress", "--threads", "1",
                 "--object-free-data", str(free), "--object-free-share", "0.6"]) == 0
    art = read_model_file(run / "model.safetensors")
    assert art.provenance["object_free_rows"] == 60 and art.provenance["object_free_data_file"] == str(free)
    # the statistics are the object rows' (the bundled fixture's run used the same object rows)
    np.testing.assert_allclose(art.stats_mean, read_model_file(trained / "run" / "model.safetensors").stats_mean,
                               rtol=0, atol=1e-6)
    # it samples with and without an object
    assert main(["sample", "--checkpoint", str(run), "--num", "3", "--out", str(tmp_path / "free.npz"),
                 "--no-progress"]) == 0
    assert main(["sample", "--checkpoint", str(run), "--object-family", "box", "--num", "3",
                 "--out", str(tmp_path / "box.npz"), "--no-progress"]) == 0
    assert TwoHandSet.load(tmp_path / "box.npz").object_library is not None
    # resuming with other object-free rows is refused (the run stopped early to have something to resume)
    part = tmp_path / "part"
    assert main(["train", "--config", cfg, "--data", data, "--out", str(part), "--no-progress", "--threads", "1",
                 "--object-free-data", str(free), "--object-free-share", "0.6", "--epochs", "1"]) == 0
    capsys.readouterr()
    code = main(["train", "--resume", str(part), "--data", data, "--no-progress", "--threads", "1",
                 "--object-free-data", str(free), "--object-free-share", "0.5", "--epochs", "2"])
    err = capsys.readouterr().err
    assert code != 0 and "different data" in err and "--object-free-share" in err
    # errors name the argument and what was expected
    for extra, needle in ((["--object-free-share", "1.0"], "strictly between 0 and 1"),
                          (["--object-free-share", "0.9"], "needs 360 object-free rows"),
                          (["--object-free-data", data], "hand-object set")):
        args = ["train", "--config", cfg, "--data", data, "--out", str(tmp_path / "bad"), "--no-progress",
                "--object-free-data", str(free), *extra]
        assert main(args) != 0 and needle in capsys.readouterr().err, extra
        assert not (tmp_path / "bad" / "checkpoint.pt").exists()
    assert main(["train", "--config", cfg, "--data", data, "--out", str(tmp_path / "bad"), "--no-progress",
                 "--object-free-share", "0.5"]) != 0
    assert "needs --object-free-data" in capsys.readouterr().err


def test_temperature_defaults_per_model_and_reaches_the_sampler(trained, tmp_path, capsys):
    from interhandgen.generation.cascade import OBJECT_TEMPERATURE, SamplerSettings

    assert OBJECT_TEMPERATURE != SamplerSettings().temperature == 1.0
    run = ["sample", "--checkpoint", str(trained / "run"), "--object-family", "box", "--num", "2", "--steps", "3",
           "--no-progress", "--threads", "1"]
    for extra, expected in (([], OBJECT_TEMPERATURE), (["--temperature", "1"], 1.0), (["--temperature", "0.7"], 0.7)):
        out = tmp_path / f"t{len(extra)}_{expected}.npz"
        assert main(run + extra + ["--out", str(out)]) == 0
        assert TwoHandSet.load(out).metadata["sampler"]["temperature"] == expected
    # a lower temperature moves the same draws: the samples differ, same seed
    a = TwoHandSet.load(tmp_path / f"t2_1.0.npz").left.pose
    b = TwoHandSet.load(tmp_path / f"t2_0.7.npz").left.pose
    assert not np.array_equal(a, b)
    for bad in ("0", "-0.5", "nan"):
        assert main(run + ["--temperature", bad, "--out", str(tmp_path / "bad.npz")]) != 0
        assert "temperature" in capsys.readouterr().err


def test_placement_tool_keeps_the_object_default_temperature(trained, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from interhandgen.generation.cascade import OBJECT_TEMPERATURE

    tool = Path(__file__).resolve().parents[2] / "tools" / "sample_object_placements.py"
    for extra, expected in (([], OBJECT_TEMPERATURE), (["--temperature", "1"], 1.0)):
        out = tmp_path / f"p{len(extra)}.npz"
        r = subprocess.run([sys.executable, str(tool), "--model", str(trained / "run" / "model.safetensors"),
                            "--reference", str(trained / "obj.npz"), "--split", "", "--num", "2", "--out", str(out),
                            *extra], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert TwoHandSet.load(out).metadata["sampler"]["temperature"] == expected
