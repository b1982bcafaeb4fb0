"""The object model's frame: object-frame vectors decode to the world hands, rotations about gravity and mirroring
act as on the world geometry, surface samples lie on the surface with outward normals."""

import numpy as np
import torch

from interhandgen.data.canonical import mirror, to_world
from interhandgen.objects.frame import (anchor_world_pose, object_frame_training_arrays, rotate_about_z,
                                        surface_samples, to_object_frame)
from interhandgen.objects.library import sample_object
from interhandgen.objects.metrics import object_world_vertices
from interhandgen.objects.sdf import object_signed_distance

from fixtures.objmodel_sets import random_object_set


def test_surface_samples_on_the_surface_with_outward_normals():
    for family in ("mug", "box", "torus"):
        obj = sample_object(family, np.random.default_rng(3))
        s = surface_samples(obj.vertices, obj.faces, 400, seed=5)
        v, f = torch.tensor(obj.vertices), torch.tensor(obj.faces)
        on = object_signed_distance(torch.tensor(s[None, :, :3]), v, f)[0]
        assert on.abs().max() < 1e-9  # exact SDF of the mesh
        np.testing.assert_allclose(np.linalg.norm(s[:, 3:], axis=1), 1.0, atol=1e-12)
        out = object_signed_distance(torch.tensor(s[None, :, :3] + 1e-4 * s[None, :, 3:]), v, f)[0]
        assert (out > 0).float().mean() > 0.99  # a step along the normal leaves the object (edges excepted)
        np.testing.assert_array_equal(s, surface_samples(obj.vertices, obj.faces, 400, seed=5))


def test_object_frame_vectors_decode_to_the_world_hands():
    two = random_object_set(10)
    models = two.hand_models()
    pairs = to_object_frame(two, models)
    back = to_world(pairs.x, models, anchor_world=anchor_world_pose(pairs.x, pairs.center))
    want, got = two.vertices(models, dtype=torch.float64), back.vertices(models, dtype=torch.float64)
    for side in ("left", "right"):
        assert (want[side] - got[side]).abs().max() < 1e-9
    # the anchor's slots: its world centre joint minus the object's centre; the points: the world object, centred
    lib = two.object_library
    for i in range(len(two)):
        k = int(two.object_id[i])
        s = surface_samples(lib.vertices[k], lib.faces[k])
        world = object_world_vertices(s[:, :3], two.object_pose[i:i + 1])[0]
        np.testing.assert_allclose(pairs.points[i, :, :3].numpy(), world - two.object_pose[i, 4:7], atol=1e-12)


def test_rotation_about_gravity_turns_both_hands_and_the_object():
    two = random_object_set(6, seed=1)
    models = two.hand_models()
    pairs = to_object_frame(two, models)
    angle = torch.tensor([0.3, -1.2, 2.0, 0.0, 3.0, -2.5], dtype=torch.float64)
    rigid, points = rotate_about_z(pairs.x[:, 0, 55:64], pairs.points, angle)
    x = pairs.x.clone()
    x[:, 0, 55:64] = rigid
    rot = to_world(x, models, anchor_world=anchor_world_pose(x, pairs.center)).vertices(models, dtype=torch.float64)
    ref = two.vertices(models, dtype=torch.float64)
    c, s = torch.cos(angle), torch.sin(angle)
    Rz = torch.zeros(6, 3, 3, dtype=torch.float64)
    Rz[:, 0, 0], Rz[:, 0, 1], Rz[:, 1, 0], Rz[:, 1, 1], Rz[:, 2, 2] = c, -s, s, c, 1.0
    centre = pairs.center[:, None]
    for side in ("left", "right"):
        expect = (ref[side] - centre) @ Rz.transpose(1, 2) + centre
        assert (rot[side] - expect).abs().max() < 1e-7  # axis-angle round trips: 0.1 micrometre
    assert (points[..., :3] - pairs.points[..., :3] @ Rz.transpose(1, 2)).abs().max() < 1e-12


def test_mirror_augmentation_is_the_mirror_image():
    two = random_object_set(8, seed=2)
    models = two.hand_models()
    x, p = object_frame_training_arrays(two, None, mirror_augment=True, models=models)
    n = len(two)
    m = mirror(two, models)
    centre = torch.as_tensor(m.object_pose[:, 4:7])
    got = to_world(x[n:].double(), models, anchor_world=anchor_world_pose(x[n:].double(), centre))
    ref = two.vertices(models, dtype=torch.float64)
    g = got.vertices(models, dtype=torch.float64)
    flip = torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    # the new left hand is the mirrored old right hand (float32 training arrays: micrometres)
    assert (g["left"] - ref["right"] * flip).abs().max() < 1e-5
    assert (g["right"] - ref["left"] * flip).abs().max() < 1e-5
    flip6 = torch.tensor([-1.0, 1.0, 1.0, -1.0, 1.0, 1.0])
    assert torch.equal(p[n:], p[:n] * flip6)
