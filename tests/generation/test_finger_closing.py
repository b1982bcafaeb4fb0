"""Finger closing against a large box in front of the palm: closed-form distances and what may change."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from interhandgen.data.format import TwoHandSet, _model_data
from interhandgen.data.object_library import ObjectLibrary
from interhandgen.data.synth.anatomy import hand_anatomy
from interhandgen.exceptions import InputError
from interhandgen.generation.finger_closing import (FINGERS, _SubsetSkin, close_fingers, finger_points,
                                                    finger_speeds, finger_vertices, flexion_basis)
from interhandgen.objects.frame import surface_samples
from interhandgen.objects.library import make_object

from tests.generation.test_objmodel_sampling import model_file  # noqa: F401  (the fixture)

# a slab larger than the hand: its face in front of the palm is a plane for every finger, and 8,192 surface samples
# lie closer than the planes' allowance for their spacing (object_sampling.SAMPLE_SPACING)
SIZE, THICK, POINTS = 0.3, 0.05, 8192


def _palm_facing_box(gaps_mm, n_points=POINTS):
    """Pairs whose right hand (open hand, flat: the fingers straight) has a large slab in front of its palm, its face
    ``gap`` beyond the hand's farthest vertex along the palm's normal; the left hand 1 m away. Returns the set,
    the world surface samples [N, K, 6], the face's unit normal (pointing at the hand) and the face's offset along
    the palm normal."""
    n = len(gaps_mm)
    zeros = lambda w: np.zeros((n, w))  # noqa: E731
    right = {"pose": zeros(45), "betas": zeros(10), "global_orient": zeros(3), "transl": zeros(3)}
    left = dict(right, transl=np.tile([[-1.0, 0.0, 0.0]], (n, 1)))
    plain = TwoHandSet(left, right, pose_space="axis_angle", flat_hand_mean=True)
    models = plain.hand_models()
    palmar = hand_anatomy(_model_data(models["right"], "right")).palmar
    # the world's z axis along the palm normal: the box's -z face in front of the palm
    R = _rotation_to(palmar, np.array([0.0, 0.0, 1.0]))
    from interhandgen.rotations import matrix_to_axis_angle

    right["global_orient"] = np.tile(matrix_to_axis_angle(torch.as_tensor(R))[None].numpy(), (n, 1))
    plain = TwoHandSet(left, right, pose_space="axis_angle", flat_hand_mean=True)
    rv = plain.vertices(models, dtype=torch.float64)["right"][0].numpy()
    face = rv[:, 2].max() + np.asarray(gaps_mm) / 1000.0
    pose = np.zeros((n, 7))
    pose[:, 4:6] = rv[:, :2].mean(0)
    pose[:, 6] = face + THICK / 2
    box = make_object("box", {"size_x": SIZE, "size_y": SIZE, "size_z": THICK})
    lib = ObjectLibrary.from_meshes(["box"], [box])
    pairs = TwoHandSet(left, right, pose_space="axis_angle", flat_hand_mean=True, object_id=np.zeros(n, dtype=int),
                       object_names=["box"], object_pose=pose, object_library=lib)
    local = surface_samples(lib.vertices[0], lib.faces[0], n_points, seed=2)
    surface = np.concatenate([local[None, :, :3] + pose[:, None, 4:7], np.broadcast_to(local[None, :, 3:],
                                                                                        (n, n_points, 3))], -1)
    return pairs, torch.as_tensor(surface, dtype=torch.float32), face


def _rotation_to(a, b):
    """The rotation taking unit vector a to unit vector b (Rodrigues)."""
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    v, c = np.cross(a, b), float(a @ b)
    K = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + K + K @ K / (1.0 + c)


def _finger_gaps(pairs, face):
    """[N, 5] the smallest closed-form distance (mm) of each finger's vertices of the right hand to the box's face."""
    models = pairs.hand_models()
    rv = pairs.vertices(models, dtype=torch.float64)["right"].numpy()
    owner = finger_vertices(_model_data(models["right"], "right").weights)
    return np.stack([(face[:, None] - rv[:, owner == f, 2]).min(1) for f in range(5)], 1) * 1000.0


def test_fingers_close_onto_the_face_and_stop_short_of_it():
    pairs, surface, face = _palm_facing_box([20.0, 35.0])
    before = _finger_gaps(pairs, face)
    out, record = close_fingers(pairs, surface, max_deg=90.0, step_deg=2.0, touch_mm=4.0, clear_mm=2.0,
                                points_per_finger=1000)
    after = _finger_gaps(out, face)
    closed = np.zeros((2, 5), dtype=bool)
    models = pairs.hand_models()
    data = _model_data(models["right"], "right")
    anatomy = hand_anatomy(data)
    flat_in = pairs.converted("axis_angle", flat_hand_mean=True).hand("right").pose
    flat_out = out.converted("axis_angle", flat_hand_mean=True).hand("right").pose
    delta = anatomy.axis_angle_to_components(flat_out) - anatomy.axis_angle_to_components(flat_in)  # [2, 15, 3]
    basis = flexion_basis()
    speed = finger_speeds(data, finger_points(data, 1000))
    for n in range(2):
        for f in range(5):
            # the pose changed by a multiple of the finger's flexion synergy, nothing else
            amount = delta[n][basis[f] > 0] / basis[f][basis[f] > 0]
            np.testing.assert_allclose(amount, amount[0], atol=1e-9)
            closed[n, f] = amount[0] > 1e-9
            if closed[n, f]:
                # every vertex of a closed finger is still clear_mm outside the face (all its vertices judged, the
                # planes of a flat face exact) and the finger ended near the face: within touch_mm, or one step
                # short of where it would have come within clear_mm
                assert after[n, f] >= 2.0 - 1e-4
                assert after[n, f] <= max(4.0, 2.0 + speed[f] * np.deg2rad(2.0) * 1000.0)
                assert after[n, f] < before[n, f]
        basis_sum = basis.sum(0) > 0
        np.testing.assert_allclose(delta[n][~basis_sum], 0.0, atol=1e-9)
    # the flat hand's thumb is nearest the face (20 / 35 mm); its long fingers, 46-49 mm from it in the first row,
    # all reach it
    assert closed[0, 1:].all() and closed[1].any()
    assert record["right"]["changed"] == [0, 1]
    assert sum(record["right"]["fingers_closed"].values()) == int(closed.sum())
    # the left hand (1 m away) and every other number of the right hand are bit for bit the same
    for field in ("pose", "betas", "global_orient", "transl"):
        np.testing.assert_array_equal(getattr(out.left, field), getattr(pairs.left, field))
    for field in ("betas", "global_orient", "transl"):
        np.testing.assert_array_equal(getattr(out.right, field), getattr(pairs.right, field))
    assert record["left"]["changed"] == [] and out.pose_space == pairs.pose_space


def test_far_and_touching_fingers_keep_their_pose():
    # a face 30 cm away: no finger reaches it within 60 degrees
    pairs, surface, face = _palm_facing_box([300.0])
    out, record = close_fingers(pairs, surface, max_deg=60.0, touch_mm=4.0, clear_mm=2.0)
    np.testing.assert_array_equal(out.right.pose, pairs.right.pose)
    assert record["right"]["changed"] == []
    # a face 1 mm from the thumb: the thumb touches already and keeps its pose; the long fingers close
    pairs, surface, face = _palm_facing_box([1.0])
    out, record = close_fingers(pairs, surface, max_deg=60.0, touch_mm=4.0, clear_mm=2.0)
    assert record["right"]["fingers_closed"]["thumb"] == 0 and record["right"]["fingers_closed"]["index"] == 1
    thumb = np.concatenate([np.arange(3 * (j - 1), 3 * j) for j in (13, 14, 15)])
    np.testing.assert_allclose(out.right.pose[:, thumb], pairs.right.pose[:, thumb], atol=1e-12)
    # only the sides named may change
    pairs, surface, _ = _palm_facing_box([20.0])
    out, record = close_fingers(pairs, surface, sides=("left",))
    np.testing.assert_array_equal(out.right.pose, pairs.right.pose)
    assert "right" not in record


def test_closing_is_deterministic_and_a_subset_of_points_is_judged_alike():
    pairs, surface, face = _palm_facing_box([20.0, 25.0, 30.0])
    a, _ = close_fingers(pairs, surface)
    b, _ = close_fingers(pairs, surface)
    np.testing.assert_array_equal(a.right.pose, b.right.pose)
    # the default 48 points per finger: every judged point at least clear_mm (2 mm) outside by the closed form, and
    # every vertex of the fingers outside the face
    models = a.hand_models()
    data = _model_data(models["right"], "right")
    judged = np.concatenate(finger_points(data, 48))
    rv = a.vertices(models, dtype=torch.float64)["right"].numpy()
    assert (face[:, None] - rv[:, judged, 2]).min() * 1000.0 >= 2.0 - 1e-4
    assert _finger_gaps(a, face).min() > 0.0


def test_subset_skin_equals_the_hand_layer():
    pairs, _, _ = _palm_facing_box([20.0, 30.0])
    rng = np.random.default_rng(0)
    flat = pairs.converted("axis_angle", flat_hand_mean=True)
    hand = flat.hand("right")
    hand = type(hand)(pose=rng.normal(0, 0.3, hand.pose.shape), betas=rng.normal(0, 1, hand.betas.shape),
                      global_orient=hand.global_orient, transl=hand.transl)
    flat = flat._replace(right=hand)
    models = flat.hand_models()
    data = _model_data(models["right"], "right")
    ids = np.concatenate(finger_points(data, 30))
    skin = _SubsetSkin(data, ids, hand.betas)
    full = torch.cat([torch.as_tensor(hand.global_orient), torch.as_tensor(hand.pose)], 1).float()
    got = skin(torch.arange(2), full) + torch.as_tensor(hand.transl).float()[:, None]
    want = flat.vertices(models, dtype=torch.float64)["right"][:, ids]
    np.testing.assert_allclose(got.double().numpy(), want.numpy(), atol=2e-6)


def test_finger_speed_bounds_how_far_points_move():
    pairs, _, _ = _palm_facing_box([20.0])
    models = pairs.hand_models()
    data = _model_data(models["right"], "right")
    points = finger_points(data, 48)
    speed = finger_speeds(data, points, margin=1.0)
    rng = np.random.default_rng(1)
    anatomy = hand_anatomy(data)
    basis = flexion_basis()
    comps = rng.uniform(-0.2, 0.6, (16, 15, 3)) * (basis.sum(0) > 0)
    betas = rng.normal(0, 1, (16, 10))
    skin = _SubsetSkin(data, np.concatenate(points), betas)
    parts = np.cumsum([0] + [len(p) for p in points])
    step = 0.02
    for f in range(5):
        def pose(c):
            return torch.as_tensor(np.concatenate([np.zeros((16, 3)), anatomy.components_to_axis_angle(c)], 1),
                                   dtype=torch.float32)

        a = skin(torch.arange(16), pose(comps))[:, parts[f]:parts[f + 1]]
        b = skin(torch.arange(16), pose(comps + step * basis[f]))[:, parts[f]:parts[f + 1]]
        moved = (b - a).norm(dim=-1).max().item()
        assert 0 < moved <= 1.25 * speed[f] * step  # the default margin covers shape and skinning
    assert [len(p) for p in points] == [48] * 5 and len(FINGERS) == 5


def test_bad_arguments_raise():
    pairs, surface, _ = _palm_facing_box([20.0])
    with pytest.raises(InputError, match="surface"):
        close_fingers(pairs, surface[:, :, :3])
    with pytest.raises(InputError, match="max_deg"):
        close_fingers(pairs, surface, max_deg=0.0)
    with pytest.raises(InputError, match="points_per_finger"):
        close_fingers(pairs, surface, points_per_finger=0)
    with pytest.raises(InputError, match="sides"):
        close_fingers(pairs, surface, sides=("both",))


def test_the_sampler_closes_fingers_last_and_changes_only_finger_flexion(tmp_path, model_file):  # noqa: F811
    from interhandgen.generation.object_sampling import ObjectSettings
    from tests.generation.test_objmodel_sampling import box_samples_on_off

    off, on = box_samples_on_off(tmp_path, model_file, ObjectSettings(), close_fingers_deg=0.0)
    assert "finger_closing" not in off.metadata
    record = on.metadata["finger_closing"]
    models = on.hand_models()
    for side in ("left", "right"):
        for field in ("betas", "global_orient", "transl"):
            np.testing.assert_array_equal(getattr(on.hand(side), field), getattr(off.hand(side), field))
        changed = np.flatnonzero(np.any(on.hand(side).pose != off.hand(side).pose, axis=1))
        np.testing.assert_array_equal(changed, record[side]["changed"])
        # what changed is flexion along the fingers' synergies (the anatomical components of the flat poses)
        anatomy = hand_anatomy(_model_data(models[side], side))
        c_on = anatomy.axis_angle_to_components(on.converted("axis_angle", flat_hand_mean=True).hand(side).pose)
        c_off = anatomy.axis_angle_to_components(off.converted("axis_angle", flat_hand_mean=True).hand(side).pose)
        np.testing.assert_allclose((c_on - c_off)[:, flexion_basis().sum(0) == 0], 0.0, atol=1e-9)
        assert ((c_on - c_off) >= -1e-9).all()  # fingers only close


def test_bad_closing_settings_name_themselves():
    import dataclasses

    from interhandgen.generation.object_sampling import ObjectSettings

    for bad in (dict(close_fingers_deg=-1.0), dict(close_step_deg=0.0), dict(close_touch_mm=1.0, close_clear_mm=2.0),
                dict(close_points=0)):
        with pytest.raises(InputError, match="close"):
            dataclasses.replace(ObjectSettings(), **bad).validate()
