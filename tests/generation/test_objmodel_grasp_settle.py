"""Grasp settling and the redraw checks of object sampling, against the exact object SDF."""

import numpy as np
import torch

from interhandgen.generation.object_sampling import (ObjectSettings, _grasp_pair, grasp_settle, hand_object_check,
                                                     other_in_object_frame)
from interhandgen.generation.subset import SubsetHand
from interhandgen.hand import open_hand
from interhandgen.objects.frame import surface_samples
from interhandgen.objects.library import FAMILIES, make_object
from interhandgen.objects.sdf import object_signed_distance
from interhandgen.rotations import axis_angle_to_matrix, matrix_to_rot6d


def _box():
    return make_object("box", FAMILIES["box"].sample(np.random.default_rng(0)))


def _exact(points, obj):
    return object_signed_distance(points.double(), torch.tensor(obj.vertices), torch.tensor(obj.faces))[0]


def _palm_down_over_top(hand, obj, gaps):
    """Raw vectors [len(gaps), 64]: the open hand turned palm down, its lowest point ``gap`` above the box's top."""
    x = torch.zeros(len(gaps), 64)
    x[:, 55:61] = matrix_to_rot6d(axis_angle_to_matrix(torch.tensor([[np.pi, 0.0, 0.0]])).float())
    low = hand(x)[0][..., 2].amin(1)
    x[:, 63] = float(obj.vertices[:, 2].max()) - low + torch.tensor(gaps, dtype=torch.float32)
    return x


def test_grasp_settling_ends_in_touch_without_penetration_and_leaves_far_hands_alone():
    obj = _box()
    hand = SubsetHand(open_hand("left"), 512)
    surf = torch.tensor(surface_samples(obj.vertices, obj.faces, 4096, seed=2), dtype=torch.float32)[None]
    x = _palm_down_over_top(hand, obj, [0.006, -0.003, 0.09])
    before = _exact(hand(x)[0], obj)
    out = grasp_settle(hand, x, surf.expand(3, -1, -1), ObjectSettings(grasp_steps=30, object_attract_mm=60))
    after = _exact(hand(out)[0], obj)
    assert float(before[0].min()) > 0.005 and float(before[1].min()) < -0.002  # the set-up: away, and inside
    for row in (0, 1):
        assert float(after[row].min()) < 0.002  # touching (exact distance below 2 mm)
        assert float(after[row].min()) > -0.001  # and not inside by more than a millimetre
    assert torch.equal(out[2], x[2])  # 90 mm away: beyond object_attract_mm, unchanged


def test_grasp_pair_keeps_the_other_hand_relative_to_the_settled_anchor():
    # with settling that changes nothing (both hands out of reach), the conversion to the object frame and back
    # returns the same vectors
    obj = _box()
    hands = (SubsetHand(open_hand("left"), 64), SubsetHand(open_hand("right"), 64))
    surf = torch.tensor(surface_samples(obj.vertices, obj.faces, 512, seed=2), dtype=torch.float32)[None]
    g = torch.Generator().manual_seed(0)
    a = torch.zeros(2, 64)
    a[:, 55:61] = matrix_to_rot6d(axis_angle_to_matrix(torch.randn(2, 3, generator=g)))
    a[:, 61:64] = torch.tensor([[0.5, 0.0, 0.0], [0.0, 0.6, 0.0]])  # far from the object
    o = torch.randn(2, 64, generator=g) * 0.1
    o[:, 55:61] = matrix_to_rot6d(axis_angle_to_matrix(torch.randn(2, 3, generator=g)))
    a2, o2 = _grasp_pair(a, o, surf.expand(2, -1, -1), hands, ObjectSettings(grasp_steps=20, object_attract_mm=10))
    assert torch.equal(a2, a)
    torch.testing.assert_close(o2, o, atol=1e-5, rtol=0)
    torch.testing.assert_close(other_in_object_frame(hands[1](o2)[0], a2), other_in_object_frame(hands[1](o)[0], a),
                               atol=1e-5, rtol=0)


def test_redraw_check_follows_the_exact_distances():
    obj = _box()
    hand = SubsetHand(open_hand("left"), 512)
    right = SubsetHand(open_hand("right"), 512)
    surf = torch.tensor(surface_samples(obj.vertices, obj.faces, 4096, seed=2), dtype=torch.float32)[None]
    a = _palm_down_over_top(hand, obj, [0.0005, 0.010, -0.006])
    # the other hand: the anchor's own pose moved 0.3 m away, then the same vectors for all rows
    o = torch.zeros(3, 64)
    o[:, 55:61] = torch.tensor([1.0, 0, 0, 0, 1, 0])
    o[:, 61] = 0.3
    cfg = ObjectSettings(redraw_gap_mm=2.0, redraw_depth_mm=3.0)
    assert not hand_object_check((hand, right), a, o, surf.expand(3, -1, -1), cfg).any()  # the other hand is far
    both = hand_object_check((hand, hand), a, _same_place(a), surf.expand(3, -1, -1), cfg)
    exact = _exact(hand(a)[0], obj)
    expect = (exact.amin(1) < 0.002) & (exact.amin(1) > -0.003)
    assert both.tolist() == expect.tolist() == [True, False, False]


def _same_place(a):
    """Partner vectors that put the other hand exactly on the anchor (identity relative pose, same pose)."""
    o = a.clone()
    o[:, 55:61] = torch.tensor([1.0, 0, 0, 0, 1, 0])
    o[:, 61:64] = 0.0
    return o
