"""MuJoCo settling of the object sampler (ObjectSettings.physics_rounds): the inverse rigid move of the hands, the
stage's bookkeeping against an independent run of the stability test, its settings and CLI option."""

import argparse

import dataclasses

import numpy as np
import pytest
import torch

from interhandgen.cli.sample_object import add_object_options, object_settings_from_args
from interhandgen.data.canonical import ANCHOR_SIDE, to_world
from interhandgen.exceptions import InputError
from interhandgen.generation.object_sampling import ObjectSettings, move_with_object
from interhandgen.objects.frame import anchor_world_pose, to_object_frame
from interhandgen.rotations import axis_angle_to_matrix


def _world_vertices(x, centre, two, hands):
    placed = to_world(x, hands, anchor=ANCHOR_SIDE, anchor_world=anchor_world_pose(x, centre),
                      hand_model=two.hand_model)
    return {s: v.numpy() for s, v in placed.vertices(dtype=torch.float64).items()}


def test_hands_move_by_the_inverse_of_the_objects_motion():
    from fixtures.objmodel_sets import random_object_set  # noqa: PLC0415 (tests/objects helper)
    from interhandgen.generation.object_api import ObjectInterHandGen  # noqa: PLC0415

    two = random_object_set(5, seed=1, splits=False)
    hands = ObjectInterHandGen.load().hands
    frame = to_object_frame(two, hands, points=False)
    x, centre = frame.x, torch.as_tensor(frame.center, dtype=torch.float64)
    before = _world_vertices(x, centre, two, hands)
    g = torch.Generator().manual_seed(0)
    R = axis_angle_to_matrix(torch.randn(5, 3, generator=g, dtype=torch.float64))
    t = 0.05 * torch.randn(5, 3, generator=g, dtype=torch.float64)
    after = _world_vertices(move_with_object(x, R, t, centre), centre, two, hands)
    for side in ("left", "right"):
        # a hand point h goes to R^T (h - t): where the object's motion sends the object, taken back
        expect = np.einsum("nji,nvj->nvi", R.numpy(), before[side] - t.numpy()[:, None])
        np.testing.assert_allclose(after[side], expect, atol=1e-7)  # 0.1 micrometre: float32 hand layers
    # no motion, no move
    same = move_with_object(x, torch.eye(3, dtype=torch.float64).expand(5, 3, 3), torch.zeros(5, 3), centre)
    torch.testing.assert_close(same, x)


def test_settings_and_cli_option():
    for bad in (dict(physics_rounds=-1), dict(physics_settle_s=0.0), dict(physics_max_drop_mm=0.0),
                dict(physics_depth_mm=0.0), dict(physics_settle_passes=0)):
        with pytest.raises(InputError):
            ObjectSettings(**bad).validate()
    p = argparse.ArgumentParser()
    add_object_options(p)
    assert object_settings_from_args(p.parse_args(["--physics-rounds", "3"])).physics_rounds == 3
    assert object_settings_from_args(p.parse_args([])).physics_rounds == ObjectSettings().physics_rounds == 0
    assert object_settings_from_args(p.parse_args(["--physics-settle-passes", "3"])).physics_settle_passes == 3


@pytest.fixture(scope="module")
def placements():
    pytest.importorskip("mujoco")
    from fixtures.objmodel_sets import random_object_set  # noqa: PLC0415

    from interhandgen.generation.object_api import ObjectScene  # noqa: PLC0415

    two = random_object_set(12, seed=3, families=("box", "bowl", "sphere"), splits=False)
    pose = two.object_pose.copy()
    pose[:, 1:4] = 0.0  # upright objects
    return ObjectScene.of(two._replace(object_pose=pose))


def test_kept_pairs_hold_in_an_independent_stability_run_and_the_rest_keep_their_first_draw(placements, capsys):
    from interhandgen.generation.object_api import ObjectInterHandGen  # noqa: PLC0415
    from interhandgen.objects.metrics import object_stability  # noqa: PLC0415

    gen = ObjectInterHandGen.load()
    # the first draws: the sampler without the exact clearance, which runs after MuJoCo settling (tested below)
    base = gen.sample(12, placements, seed=0, progress=False, object_settings=ObjectSettings(exact_clear_rounds=0))
    capsys.readouterr()
    settled = gen.sample(12, placements, seed=0, progress=True,
                         object_settings=ObjectSettings(physics_rounds=3, exact_clear_rounds=0))
    log = settled.metadata["physics_settle"]
    # came_to_rest and checked count the first settle pass; kept also counts the second pass, which lets fall again
    # the objects that came to rest in pairs the first did not keep
    assert log[0]["pairs"] == 12
    assert all(r["kept_first_pass"] <= r["checked"] <= r["came_to_rest"] <= r["pairs"] for r in log), log
    assert all(r["kept_first_pass"] <= r["kept"] <= r["came_to_rest"] for r in log), log
    kept = sum(r["kept"] for r in log)
    assert kept >= 1, log
    # the stage shows its rounds, with the pairs kept and still open at the end
    shown = capsys.readouterr().err
    assert "MuJoCo settling" in shown and f"kept={kept}, open={12 - kept}" in shown, shown[-400:]
    changed = ~np.isclose(settled.left.transl, base.left.transl, atol=1e-7).all(1)
    assert changed.sum() == kept
    np.testing.assert_array_equal(settled.object_pose, base.object_pose)  # the object stays where it was given
    for side in ("left", "right"):  # the pairs not kept are the first draw, exactly
        np.testing.assert_array_equal(settled.hand(side).transl[~changed], base.hand(side).transl[~changed])
    held = object_stability(settled[np.flatnonzero(changed)])["held"]
    assert held.all()
    # and both hands of every kept pair touch the object by the contact metric (exact distance and depth)
    from interhandgen.objects.metrics import hand_object_metrics  # noqa: PLC0415

    assert hand_object_metrics(settled[np.flatnonzero(changed)], volume=False)["both_contact"].all()
    with pytest.raises(InputError):
        gen.complete(base, object_settings=ObjectSettings(physics_rounds=1), progress=False)
    with pytest.raises(InputError):  # nothing to settle without an object
        gen.sample(2, None, object_settings=ObjectSettings(physics_rounds=1), progress=False)


def test_settling_without_push_moves_only_hands_apart_from_the_object():
    import trimesh  # noqa: PLC0415

    from interhandgen.generation.object_sampling import settle_on_object  # noqa: PLC0415
    from interhandgen.objects.frame import surface_samples  # noqa: PLC0415

    h = 0.04
    cube = trimesh.creation.box((2 * h, 2 * h, 2 * h))
    surface = torch.as_tensor(surface_samples(cube.vertices, cube.faces, 1024, seed=2))[None].expand(3, -1, -1)
    g = np.linspace(-0.02, 0.02, 5)
    patch = np.array([[a, b, 0.0] for a in g for b in g])
    # under the cube: 5 mm inside it, touching it (0.2 mm below), 20 mm below it
    points = torch.as_tensor(np.stack([patch + [0, 0, -h + 0.005], patch + [0, 0, -h - 0.0002],
                                       patch + [0, 0, -h - 0.02]]))
    s = ObjectSettings()
    free = settle_on_object(points, surface, s, push=False)
    both = settle_on_object(points, surface, s)
    assert torch.equal(free[:2], torch.zeros(2, 3, dtype=free.dtype))  # inside and touching: left where they are
    assert both[0, 2] < -0.004  # the default pushes the one inside out
    torch.testing.assert_close(free[2], both[2])  # the one apart is pulled into touch either way
    assert free[2, 2] == pytest.approx(0.02 - s.touch_mm / 1000.0, abs=1e-3)


def test_a_second_settle_pass_only_adds_to_the_first(placements):
    # the second pass lets fall again only the pairs whose object came to rest in the first but were not kept: the
    # first pass's counts and kept pairs are those of a single pass, bit for bit, and what it adds came to rest
    from interhandgen.generation.object_api import ObjectInterHandGen  # noqa: PLC0415

    gen = ObjectInterHandGen.load()
    # the sampler before the stage, and the stage without the exact clearance that follows it
    base = gen.sample(12, placements, seed=0, progress=False, object_settings=ObjectSettings(exact_clear_rounds=0))
    one, two = (gen.sample(12, placements, seed=0, progress=False,
                           object_settings=ObjectSettings(physics_rounds=1, physics_settle_passes=n,
                                                          exact_clear_rounds=0)) for n in (1, 2))
    l1, l2 = one.metadata["physics_settle"][0], two.metadata["physics_settle"][0]
    assert l1["kept"] == l1["kept_first_pass"] == l2["kept_first_pass"]
    assert (l1["came_to_rest"], l1["checked"]) == (l2["came_to_rest"], l2["checked"])
    assert l2["kept_first_pass"] <= l2["kept"] <= l2["came_to_rest"]
    assert l2["came_to_rest"] > l2["kept_first_pass"], l2  # some pair went to the second pass
    moved1 = ~np.isclose(one.left.transl, base.left.transl, atol=1e-7).all(1)
    moved2 = ~np.isclose(two.left.transl, base.left.transl, atol=1e-7).all(1)
    assert moved1.sum() == l1["kept"] and moved2.sum() == l2["kept"] and (moved2 >= moved1).all()
    for side in ("left", "right"):
        np.testing.assert_array_equal(two.hand(side).transl[moved1], one.hand(side).transl[moved1])
        np.testing.assert_array_equal(two.hand(side).pose[moved1], one.hand(side).pose[moved1])


def test_the_exact_clearance_after_settling_keeps_what_held(placements):
    # after MuJoCo settling every hand is measured; a moved pair that held before and not after is put back
    from interhandgen.generation.object_api import ObjectInterHandGen  # noqa: PLC0415
    from interhandgen.objects.metrics import hand_object_metrics, object_stability  # noqa: PLC0415

    gen = ObjectInterHandGen.load()
    og = ObjectSettings(physics_rounds=2, exact_clear_min_cm3=0.0)
    settled = gen.sample(12, placements, seed=1, progress=False,
                         object_settings=dataclasses.replace(og, exact_clear_rounds=0))
    cleared = gen.sample(12, placements, seed=1, progress=False, object_settings=og)
    record = cleared.metadata["exact_clearance"]
    assert record["left"]["measured"] == record["right"]["measured"] == 12
    moved = np.union1d(record["left"]["moved"], record["right"]["moved"]).astype(int)
    reverted = np.asarray(record["reverted"], dtype=int)
    assert moved.size > 0, record  # the settled pairs of the bundled model leave hands in their objects
    changed = np.flatnonzero(np.any(cleared.left.transl != settled.left.transl, axis=1)
                             | np.any(cleared.right.transl != settled.right.transl, axis=1))
    np.testing.assert_array_equal(changed, np.setdiff1d(moved, reverted))
    for side in ("left", "right"):
        np.testing.assert_array_equal(cleared.hand(side).pose, settled.hand(side).pose)
    held_before = object_stability(settled)["held"]
    held_after = object_stability(cleared)["held"]
    assert not (held_before & ~held_after).any()  # what held still holds
    m0, m1 = hand_object_metrics(settled), hand_object_metrics(cleared)
    total = lambda m: m["left_penetration_volume_cm3"].sum() + m["right_penetration_volume_cm3"].sum()  # noqa: E731
    assert total(m1) <= total(m0)
