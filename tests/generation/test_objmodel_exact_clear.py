"""The exact clearance stage of the object sampler: its screen, and what it may change."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from interhandgen.exceptions import InputError
from interhandgen.generation.object_api import exact_objects
from interhandgen.generation.object_sampling import ObjectSettings, hand_object_violation
from interhandgen.objects.metrics import hand_object_metrics

from tests.generation.test_objmodel_sampling import _box_rows, box_samples_on_off, model_file  # noqa: F401


def test_the_screen_is_that_of_the_kept_draws(tmp_path, model_file):  # noqa: F811
    # without the push-out the kept draws are the returned pairs: their screen recomputed must be the one returned
    og = ObjectSettings(exact_push_rounds=0, redraw_rounds=2, exact_clear_depth_mm=0.5)
    gen, settings, scene, ids, poses, tokens, surfaces, hands = _box_rows(tmp_path, model_file, og)
    exact = exact_objects(scene.library, ids, poses)
    screen = torch.zeros(12, 2, dtype=torch.bool)
    x = gen._run(12, tokens, surfaces, 0, settings, og, 2500, False, exact=exact, screen=screen)
    again = torch.zeros(12, 2, dtype=torch.bool)
    hand_object_violation(hands, x[:, 0], x[:, 1], surfaces, og, exact, torch.arange(12), screen=again)
    assert torch.equal(screen, again)
    assert bool(screen.any()) and not bool(screen.all())  # the random network: some hands screened, not all
    # the screen does not change the draws
    plain = gen._run(12, tokens, surfaces, 0, settings, og, 2500, False, exact=exact)
    assert torch.equal(plain, x)
    with pytest.raises(ValueError, match="screen"):
        hand_object_violation(hands, x[:, 0], x[:, 1], surfaces, og, screen=torch.zeros(3, 2, dtype=torch.bool))


def test_the_stage_moves_only_screened_hands_out_and_records_them(tmp_path, model_file):  # noqa: F811
    # screen and search every hand in; the finger closing after the stage off (it would close the moved hands anew)
    base = ObjectSettings(exact_clear_depth_mm=0.0, exact_clear_min_cm3=0.0, close_fingers_deg=0.0)
    off, on = box_samples_on_off(tmp_path, model_file, base, exact_clear_rounds=0)
    assert "exact_clearance" not in off.metadata
    record = on.metadata["exact_clearance"]
    m_off, m_on = hand_object_metrics(off), hand_object_metrics(on)
    for side in ("left", "right"):
        moved = np.array(record[side]["moved"], dtype=int)
        changed = np.flatnonzero(np.any(on.hand(side).transl != off.hand(side).transl, axis=1))
        np.testing.assert_array_equal(changed, moved)
        for field in ("pose", "betas", "global_orient"):
            np.testing.assert_array_equal(getattr(on.hand(side), field), getattr(off.hand(side), field))
        vol_off, vol_on = m_off[f"{side}_penetration_volume_cm3"], m_on[f"{side}_penetration_volume_cm3"]
        # a moved hand has less inside (by the metric's own exact volume) and still touches the object
        assert bool((vol_on[moved] < vol_off[moved]).all())
        assert bool(m_on[f"{side}_contact"][moved].all())
        assert record[side]["volume_after_cm3"] <= record[side]["volume_before_cm3"]
    assert len(record["left"]["moved"]) + len(record["right"]["moved"]) > 0  # the random network: work to do
    total = lambda m: m["left_penetration_volume_cm3"].sum() + m["right_penetration_volume_cm3"].sum()  # noqa: E731
    assert total(m_on) < total(m_off)


def test_complete_moves_only_the_sampled_hand(tmp_path, model_file):  # noqa: F811
    base = ObjectSettings(exact_clear_depth_mm=0.0, exact_clear_min_cm3=0.0)
    gen, settings, scene, *_ = _box_rows(tmp_path, model_file, base)
    given = gen.sample(12, scene, seed=4, settings=settings, object_settings=base, progress=False)
    for side, partner in (("left", "right"), ("right", "left")):
        done = gen.complete(given, side=side, seed=5, settings=settings, object_settings=base, progress=False)
        for field in ("pose", "betas", "global_orient", "transl"):
            np.testing.assert_array_equal(getattr(done.hand(side), field), getattr(given.hand(side), field))
        record = done.metadata["exact_clearance"]
        assert side not in record and partner in record
        closing = done.metadata["finger_closing"]  # the last stage closes the sampled hand's fingers only
        assert side not in closing and partner in closing


@pytest.mark.parametrize("bad", [dict(exact_clear_rounds=-1), dict(exact_clear_steps_mm=()),
                                 dict(exact_clear_steps_mm=(2.0, 0.0)), dict(exact_clear_min_cm3=-1.0),
                                 dict(exact_clear_depth_mm=-1.0)])
def test_bad_settings_name_themselves(bad):
    with pytest.raises(InputError, match="exact_clear"):
        dataclasses.replace(ObjectSettings(), **bad).validate()
