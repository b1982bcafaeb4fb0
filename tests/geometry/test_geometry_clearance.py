"""The exact clearance search on boxes, whose answers are closed forms."""

import numpy as np
import pytest
import trimesh

from interhandgen.exceptions import InputError
from interhandgen.geometry import penetration_volume
from interhandgen.geometry.clearance import clearing_translations

MM = 0.001


def _box(size, centre):
    b = trimesh.creation.box(size)
    return np.asarray(b.vertices) + np.asarray(centre, dtype=float), np.asarray(b.faces)


# the "hand": a 2 cm cube at the origin; the solid: a slab x in [-5, 0.5] cm, y in [-5, 5], z in [0.9, 3] cm, so
# the cube is 1 mm deep in it over 1.5 x 2 cm (0.3 cm^3)
HAND = _box((0.02, 0.02, 0.02), (0, 0, 0))
SLAB = _box((0.055, 0.10, 0.021), (-0.0225, 0.0, 0.0195))
# a guard right under the cube: moving down enters it
GUARD = _box((0.02, 0.02, 0.02), (0, 0, -0.02))


def _run(steps_mm, **kw):
    return clearing_translations(HAND[0][None], HAND[1], [SLAB], [s * MM for s in steps_mm], **kw)


def test_the_shortest_clearing_step_is_taken():
    r = _run([0.5, 1.0, 2.0])
    assert r.volume_before[0] == pytest.approx(0.3, rel=1e-9)
    # half a millimetre down halves the overlap but clears nothing; one millimetre down clears, touching
    np.testing.assert_allclose(r.shift[0], [0, 0, -1.0 * MM], atol=1e-12)
    assert r.volume_after[0] <= 1e-3 and r.guard_before[0] == r.guard_after[0] == 0
    moved = penetration_volume(HAND[0][None] + r.shift[0], HAND[1], SLAB[0][None], SLAB[1], num_workers=1)
    assert moved[0] == pytest.approx(r.volume_after[0], abs=1e-12)


def test_a_guard_blocks_the_short_move_and_the_search_slides_off_the_edge():
    # down enters the guard; sideways (+x) the overlap shrinks from 1.5 cm and clears at 15 mm, the cube then
    # touching the slab's end face
    r = _run([1.0, 5.0, 15.0, 20.0], guards=GUARD[0][None], guard_faces=GUARD[1])
    np.testing.assert_allclose(r.shift[0], [15.0 * MM, 0, 0], atol=1e-12)
    assert r.volume_after[0] <= 1e-3 and r.guard_after[0] <= r.guard_before[0] + 1e-3


def test_a_move_that_lets_go_is_refused():
    # without bisection (a resolution coarser than the step): 5 mm down clears the slab but leaves a 4 mm gap
    # (> the 2 mm contact): refused; +x by 5 mm shrinks the overlap to 1.0 cm, a second round to 0.5 cm
    # (2 cm x 0.5 cm x 1 mm = 0.1 cm^3)
    r = _run([5.0], rounds=2, refine=0.01)
    np.testing.assert_allclose(r.shift[0], [10.0 * MM, 0, 0], atol=1e-12)
    assert r.volume_after[0] == pytest.approx(0.1, rel=1e-9)
    one = _run([5.0], rounds=1, refine=0.01)
    assert one.volume_after[0] == pytest.approx(0.2, rel=1e-9)
    # a hand outside the slab is measured and left
    far = clearing_translations((HAND[0] - [0, 0, 0.003])[None], HAND[1], [SLAB], [MM])
    assert far.volume_before[0] == 0 and not far.shift.any()


def test_bisection_shortens_a_clearing_step():
    # 5 mm down clears; bisected on [0, 5] mm to a 1 mm bracket: 2.5 and 1.25 clear, 0.625 does not -> 1.25 mm
    r = _run([5.0])
    np.testing.assert_allclose(r.shift[0], [0, 0, -1.25 * MM], atol=1e-12)
    assert r.volume_after[0] <= 1e-3
    fine = _run([5.0], refine=0.0001)  # 0.1 mm: within 0.1 mm of the exact 1 mm
    assert -1.1 * MM <= fine.shift[0, 2] <= -1.0 * MM and not fine.shift[0, :2].any()


def test_rows_below_the_search_threshold_are_measured_not_moved():
    r = _run([1.0], search_above_cm3=0.5)
    assert r.volume_before[0] == pytest.approx(0.3, rel=1e-9) and not r.shift.any()
    assert r.volume_after[0] == r.volume_before[0]


def test_a_companion_moves_along_and_both_stay_in_touch():
    # a second cube beside the first, 1 mm deep in the slab over all its 2 x 2 cm: one translation clears both
    # (0.3 + 0.4 cm^3 before)
    other = (HAND[0] + [-0.025, 0, 0])[None]
    r = clearing_translations(HAND[0][None], HAND[1], [SLAB], [0.5 * MM, MM], companions=other,
                              companion_faces=HAND[1])
    assert r.volume_before[0] == pytest.approx(0.7, rel=1e-9)
    np.testing.assert_allclose(r.shift[0], [0, 0, -MM], atol=1e-12)
    # a companion 1.5 mm under the slab would end 2.5 mm away (beyond the 2 mm contact and its own 1.5 mm): refused
    under = (HAND[0] + [-0.025, 0, -0.0025])[None]  # its top 1.5 mm under the slab
    r = clearing_translations(HAND[0][None], HAND[1], [SLAB], [MM, 1.8 * MM], companions=under,
                              companion_faces=HAND[1], directions=np.array([[0.0, 0.0, -1.0]]))
    assert r.volume_before[0] == pytest.approx(0.3, rel=1e-9) and not r.shift.any()
    assert r.volume_after[0] == r.volume_before[0]


def test_shared_solids_give_the_rows_results():
    hands = np.stack([HAND[0], HAND[0] - [0, 0, 0.0005]])
    shared = clearing_translations(hands, HAND[1], [SLAB], [0.5 * MM, MM], solid_index=[0, 0])
    own = clearing_translations(hands, HAND[1], [SLAB, SLAB], [0.5 * MM, MM])
    np.testing.assert_array_equal(shared.shift, own.shift)
    np.testing.assert_array_equal(shared.volume_after, own.volume_after)


def test_rows_are_independent_and_match_single_rows():
    hands = np.stack([HAND[0], HAND[0] - [0, 0, 0.0005], HAND[0] + [0.3, 0, 0]])
    solids = [SLAB, SLAB, SLAB]
    r = clearing_translations(hands, HAND[1], solids, [0.5 * MM, MM, 2 * MM])
    for i in range(3):
        one = clearing_translations(hands[i:i + 1], HAND[1], [SLAB], [0.5 * MM, MM, 2 * MM])
        np.testing.assert_array_equal(one.shift[0], r.shift[i])
    assert r.volume_before[2] == 0 and not r.shift[2].any()  # far away: nothing to clear
    np.testing.assert_allclose(r.shift[1], [0, 0, -0.5 * MM], atol=1e-12)


@pytest.mark.parametrize("kw, name", [
    (dict(steps=[]), "steps"), (dict(steps=[0.001, -1.0]), "steps"), (dict(rounds=0), "rounds"),
    (dict(directions=np.zeros((1, 3))), "directions"), (dict(directions=np.ones((2, 2))), "directions"),
    (dict(contact=-1.0), "contact"), (dict(solids=[]), "solids"), (dict(refine=-1.0), "refine"),
    (dict(refine=0.0), "refine"),
    (dict(solid_index=[1]), "solid_index"),
    (dict(guards=GUARD[0][None]), "guard_faces"),
    (dict(guards=GUARD[0][None], guard_faces=GUARD[1], companions=GUARD[0][None], companion_faces=GUARD[1]),
     "companions"),
])
def test_bad_arguments_name_themselves(kw, name):
    args = dict(hands=HAND[0][None], hand_faces=HAND[1], solids=[SLAB], steps=[0.001])
    args.update(kw)
    with pytest.raises(InputError, match=name):
        clearing_translations(**args)
