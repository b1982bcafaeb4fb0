"""The exact clearance of sampled hands in the world frame, against the closed forms of a large box."""

import numpy as np
import pytest

from interhandgen.exceptions import InputError
from interhandgen.objects.clearing import clear_hands_exactly
from interhandgen.objects.metrics import hand_object_metrics

from tests.objects.test_obj_metrics import _pairs


def test_a_hand_in_a_box_moves_out_by_the_shortest_step_and_keeps_touching():
    # the right hands 10 mm / 3 mm into a 40 cm box (its -x face), and one 5 mm away; the left hands 1 m away
    pairs, _ = _pairs([-0.010, -0.003, 0.005])
    screen = np.array([[False, True], [True, True], [False, True]])
    out, record = clear_hands_exactly(pairs, screen, steps_mm=(2.0, 4.0, 8.0, 11.0, 16.0), min_cm3=0.0)
    m = hand_object_metrics(out)
    # 11 mm is the shortest step that clears the first hand (8 mm leaves 2 mm inside), bisected on [8, 11] mm to a
    # 1 mm bracket (9.5 does not clear, 10.25 does): it ends 0.25 mm from the face; the second clears at 4 mm,
    # bisected on [2, 4] (3 clears, touching); the third has nothing inside and stays
    np.testing.assert_allclose(out.right.transl[:, 0] - pairs.right.transl[:, 0], [-0.01025, -0.003, 0.0],
                               atol=1e-12)
    np.testing.assert_array_equal(out.right.transl[:, 1:], pairs.right.transl[:, 1:])
    np.testing.assert_allclose(m["right_min_distance_mm"][:2], [0.25, 0.0], atol=1e-6)
    assert m["right_penetration_volume_cm3"].max() == 0 and m["right_contact"][:2].all()
    # the left hands are measured (nothing inside) and never moved; nothing else of the set changes
    np.testing.assert_array_equal(out.left.transl, pairs.left.transl)
    np.testing.assert_array_equal(out.right.pose, pairs.right.pose)
    assert record["right"]["moved"] == [0, 1] and record["right"]["measured"] == 3
    assert record["left"]["measured"] == 1 and record["left"]["moved"] == []
    assert record["right"]["volume_before_cm3"] > 0
    assert record["right"]["volume_after_cm3"] == pytest.approx(0, abs=1e-9)


def test_only_screened_hands_and_allowed_sides_move():
    pairs, _ = _pairs([-0.010, -0.010])
    steps = (4.0, 11.0)
    out, record = clear_hands_exactly(pairs, np.array([[False, False], [False, True]]), steps)
    assert out.right.transl[0, 0] == pairs.right.transl[0, 0] and out.right.transl[1, 0] != pairs.right.transl[1, 0]
    kept, record = clear_hands_exactly(pairs, np.ones((2, 2), dtype=bool), steps, sides=("left",))
    np.testing.assert_array_equal(kept.right.transl, pairs.right.transl)
    assert "right" not in record
    # the threshold: a hand with less inside than min_cm3 stays
    small, _ = clear_hands_exactly(pairs, np.ones((2, 2), dtype=bool), steps, min_cm3=1e6)
    np.testing.assert_array_equal(small.right.transl, pairs.right.transl)


def test_bad_screens_and_sides_raise():
    pairs, _ = _pairs([-0.010])
    with pytest.raises(InputError, match="screen"):
        clear_hands_exactly(pairs, np.ones((2, 2), dtype=bool), (4.0,))
    with pytest.raises(InputError, match="screen"):
        clear_hands_exactly(pairs, np.ones((1, 2)), (4.0,))
    with pytest.raises(InputError, match="sides"):
        clear_hands_exactly(pairs, np.ones((1, 2), dtype=bool), (4.0,), sides=("both",))
