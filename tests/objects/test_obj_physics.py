"""MuJoCo stability test on cases with known answers, and the hand's convex parts."""

import numpy as np
import pytest

pytest.importorskip("mujoco")

from interhandgen.objects.physics import GRAVITY, PhysicsConfig, hand_convex_parts, simulate_drop  # noqa: E402


def box(centre, size):
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=float)
    return corners * 0.5 * np.asarray(size) + np.asarray(centre)


CUBE = box((0, 0, 0), (0.05, 0.05, 0.05))


def test_box_resting_on_a_support_stays():
    support = box((0, 0, -0.025 - 0.05), (0.5, 0.5, 0.1))  # top face at z = -0.025, the cube's bottom
    assert simulate_drop([support], [CUBE]) < 1e-3


@pytest.mark.parametrize("duration", [0.3, 1.0])
def test_unsupported_box_falls_by_half_g_t_squared(duration):
    config = PhysicsConfig(duration=duration)
    fall = simulate_drop([], [CUBE], config)
    # semi-implicit Euler: g dt^2 n (n - 1) / 2 after n steps, within dt / t of g t^2 / 2
    assert fall == pytest.approx(0.5 * GRAVITY * duration ** 2, rel=2 * config.timestep / duration)


def _plates(squeeze):
    half = 0.025 - squeeze
    return [box((-half - 0.05, 0, 0), (0.1, 0.2, 0.2)), box((half + 0.05, 0, 0), (0.1, 0.2, 0.2))]


def test_box_squeezed_between_plates_stays_with_friction_and_falls_without():
    held = simulate_drop(_plates(0.001), [CUBE], PhysicsConfig(friction=1.0))
    assert held < 0.002
    # condim 1 is MuJoCo's frictionless contact
    falls = simulate_drop(_plates(0.001), [CUBE], PhysicsConfig(condim=1))
    assert falls == pytest.approx(0.5 * GRAVITY, rel=0.01)
    # plates that do not touch the box do not hold it either
    assert simulate_drop(_plates(-0.002), [CUBE]) == pytest.approx(0.5 * GRAVITY, rel=0.01)


def test_hand_convex_parts_cover_every_vertex():
    from scipy.spatial import ConvexHull

    from interhandgen.hand import open_hand

    hand = open_hand("right")
    data = getattr(hand, "data", hand)
    parts = hand_convex_parts(data.v_template, data.faces, data.weights)
    assert len(parts) == 16
    outside = np.full(len(data.v_template), np.inf)
    for p in parts:
        eq = ConvexHull(p).equations
        outside = np.minimum(outside, (data.v_template @ eq[:, :3].T + eq[:, 3]).max(1))
    assert outside.max() < 1e-9


def test_convex_part_indices_match_their_definition():
    # brute force of the definition: the vertices a bone owns (largest weight) and every corner of a face that
    # has one of them (the stability test's scenes take each posed hand's parts by these indices)
    from interhandgen.hand import open_hand
    from interhandgen.objects.physics import convex_part_indices

    hand = open_hand("right")
    data = getattr(hand, "data", hand)
    owner = np.asarray(data.weights).argmax(1)
    expected = []
    for j in range(np.asarray(data.weights).shape[1]):
        own = {v for v in range(len(owner)) if owner[v] == j}
        if len(own) < 4:
            continue
        grown = set(own)
        for face in np.asarray(data.faces).tolist():
            if own.intersection(face):
                grown.update(face)
        expected.append(sorted(grown))
    assert [ids.tolist() for ids in convex_part_indices(data.faces, data.weights)] == expected


def test_the_model_built_from_numbers_is_the_model_of_the_xml():
    # build_model (MjSpec, the simulations' route) against build_model_xml compiled by MuJoCo's parser: a hand's
    # convex parts, an object of two parts, every setting away from its default
    import mujoco

    from interhandgen.hand import open_hand
    from interhandgen.objects.physics import build_model, build_model_xml

    hand = open_hand("right")
    data = getattr(hand, "data", hand)
    static = hand_convex_parts(data.v_template, data.faces, data.weights)
    rng = np.random.default_rng(3)
    parts = [CUBE + 0.04, rng.normal(0.0, 0.02, (30, 3)) + np.array([0.0, 0.05, 0.08])]
    config = PhysicsConfig(timestep=0.003, density=650.0, friction=0.8, torsional_friction=0.01,
                           rolling_friction=0.0002, condim=4, solref=(0.02, 0.9), solimp=(0.9, 0.98, 0.002),
                           margin=0.0005)
    a = mujoco.MjModel.from_xml_string(build_model_xml(static, parts, config))
    b = build_model(static, parts, config)
    for field in ("ngeom", "nmesh", "nbody", "njnt", "nmeshvert"):
        assert getattr(a, field) == getattr(b, field), field
    # the XML carries 9 significant digits, the numbers route the float64 values: float32 rounding apart
    np.testing.assert_allclose(b.mesh_vert, a.mesh_vert, atol=1e-7)
    for field in ("geom_friction", "geom_solref", "geom_solimp", "geom_margin", "geom_condim", "geom_type",
                  "geom_bodyid", "jnt_type"):
        np.testing.assert_array_equal(getattr(b, field), getattr(a, field), err_msg=field)
    for field in ("body_mass", "body_inertia", "body_ipos", "geom_pos", "geom_size"):
        np.testing.assert_allclose(getattr(b, field), getattr(a, field), rtol=1e-6, atol=1e-9, err_msg=field)
    assert b.opt.timestep == a.opt.timestep == 0.003
    np.testing.assert_array_equal(b.opt.gravity, a.opt.gravity)


def test_an_unstable_simulation_is_reported_not_reset_to_rest():
    # MuJoCo resets the state after a huge acceleration and goes on: without the check the object would end at
    # its start, i.e. look held. A force of 1e12 N on a 50 g cube is such an acceleration.
    import mujoco

    from interhandgen.objects.physics import build_model_xml, step_checked

    model = mujoco.MjModel.from_xml_string(build_model_xml([], [CUBE], PhysicsConfig()))
    data = mujoco.MjData(model)
    assert step_checked(mujoco, model, data, 10)  # free fall is stable
    data.qfrc_applied[0] = 1e12
    assert not step_checked(mujoco, model, data, 10)
    assert data.warning[mujoco.mjtWarning.mjWARN_BADQACC].number > 0
    # MuJoCo reset the state (and the force) and finished the step: back at the start, one step of free fall
    assert np.abs(data.qpos[:3]).max() < 1e-4


def test_summary_counts_unstable_simulations_as_not_held():
    from interhandgen.objects.metrics import summarise_hand_object

    metrics = {"both_contact": np.array([True, True, False])}
    for side in ("left", "right"):
        metrics[f"{side}_contact"] = np.array([True, True, False])
        metrics[f"{side}_penetration_depth_mm"] = np.zeros(3)
        metrics[f"{side}_min_distance_mm"] = np.ones(3)
    disp = np.array([0.5, np.inf, 3.0])
    phys = summarise_hand_object(metrics, {"displacement_cm": disp, "held": disp < 2.0})["physics"]
    assert phys["unstable_simulations"] == 1
    assert phys["held_fraction"] == pytest.approx(1 / 3)
    assert phys["mean_displacement_cm"] == pytest.approx(1.75)


def test_mujoco_warnings_go_to_the_logger_not_to_a_file_in_the_working_directory(tmp_path, monkeypatch, caplog):
    import logging

    from interhandgen.objects.physics import build_model_xml, require_mujoco, step_checked

    monkeypatch.chdir(tmp_path)
    mujoco = require_mujoco()
    model = mujoco.MjModel.from_xml_string(build_model_xml([], [CUBE], PhysicsConfig()))
    data = mujoco.MjData(model)
    data.qfrc_applied[0] = 1e12
    with caplog.at_level(logging.DEBUG, logger="interhandgen.objects.physics"):
        assert not step_checked(mujoco, model, data, 10)
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()
    assert any("unstable" in r.getMessage() for r in caplog.records)


def test_motion_of_a_falling_box_is_a_pure_drop_and_of_a_resting_box_none():
    from interhandgen.objects.physics import simulate_motion

    off_centre = CUBE + np.array([0.3, -0.1, 0.2])
    R, t, speed, stable = simulate_motion([], [off_centre], PhysicsConfig(duration=0.5))
    assert stable
    np.testing.assert_allclose(R, np.eye(3), atol=1e-9)
    np.testing.assert_allclose(t[:2], 0.0, atol=1e-9)
    assert -t[2] == pytest.approx(0.5 * GRAVITY * 0.25, rel=2 * 0.002 / 0.5)
    assert speed == pytest.approx(GRAVITY * 0.5, rel=0.01)
    support = box((0, 0, -0.025 - 0.05), (0.5, 0.5, 0.1))
    R, t, speed, stable = simulate_motion([support], [CUBE])
    assert stable and np.abs(R - np.eye(3)).max() < 1e-3 and np.abs(t).max() < 1e-3 and speed < 1e-2


def test_motion_maps_the_centre_of_mass_where_the_drop_test_finds_it():
    # a cube on a narrow ledge under one edge tips over it: rotation and translation together; the centre of mass
    # R c + t must be where simulate_drop (MuJoCo's own centre-of-mass position) sees it
    from interhandgen.objects.physics import simulate_motion

    ledge = box((0.02, 0, -0.025 - 0.05), (0.01, 0.2, 0.1))
    centre = np.array([0.0, 0.0, 0.0])
    config = PhysicsConfig(duration=0.3)
    R, t, _, stable = simulate_motion([ledge], [CUBE], config)
    assert stable
    angle = np.degrees(np.arccos(np.clip((np.trace(R) - 1) / 2, -1, 1)))
    assert angle > 5  # it tipped
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-9)
    assert np.linalg.norm(R @ centre + t - centre) == pytest.approx(simulate_drop([ledge], [CUBE], config), abs=1e-9)


def test_pairs_on_threads_give_the_figures_of_one_thread(monkeypatch):
    from fixtures.objmodel_sets import random_object_set  # noqa: PLC0415 (tests/fixtures helper)

    from interhandgen.exceptions import InputError
    from interhandgen.objects import metrics
    from interhandgen.objects.metrics import object_motion, object_stability

    two = random_object_set(7, seed=2, splits=False)
    config = PhysicsConfig(duration=0.3)
    one = object_stability(two, config, workers=1)
    monkeypatch.setattr(metrics, "_PAIRS_PER_THREAD", 1)  # several chunks on 7 pairs
    for workers in (2, 3):  # chunks of 2 and 3 pairs: the last one shorter
        many = object_stability(two, config, workers=workers)
        np.testing.assert_array_equal(many["displacement_cm"], one["displacement_cm"])
        np.testing.assert_array_equal(many["held"], one["held"])
    m1, m2 = object_motion(two, config, workers=1), object_motion(two, config, workers=2)
    for key in m1:
        np.testing.assert_array_equal(m2[key], m1[key])
    # the order is the pairs': each motion moves its pair's object centre as far as that pair's test moved it
    centre = two.object_pose[:, 4:7]
    moved = np.einsum("nij,nj->ni", m1["rotation"], centre) + m1["translation"] - centre
    np.testing.assert_allclose(np.linalg.norm(moved, axis=1) * 100.0, one["displacement_cm"], atol=0.05)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(InputError, match="workers"):
            object_stability(two, config, workers=bad)
