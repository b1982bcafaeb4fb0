"""SamplerSettings.anchor_steps: stage 1 (the anchor) takes its own number of DDIM steps, the partner stage keeps
``steps``; the single-stage kinds refuse it."""

from __future__ import annotations

import pytest
import torch

from interhandgen.exceptions import InputError
from interhandgen.generation import InterHandGen, SamplerSettings
from interhandgen.generation.single_stage import check_settings

PLAIN = {"apg_weight": 0.0, "settle_steps": 0, "resample_rounds": 0}


@pytest.fixture(scope="module")
def gen():
    return InterHandGen.load()


def test_anchor_steps_sets_stage_one_only(gen):
    torch.set_num_threads(1)
    mixed = gen.sample_canonical(16, seed=3, settings=SamplerSettings(steps=5, anchor_steps=12, **PLAIN),
                                 progress=False)
    all12 = gen.sample_canonical(16, seed=3, settings=SamplerSettings(steps=12, anchor_steps=None, **PLAIN), progress=False)
    all5 = gen.sample_canonical(16, seed=3, settings=SamplerSettings(steps=5, anchor_steps=None, **PLAIN), progress=False)
    # stage 1 draws first from the batch's generator: the anchors are those of 12 steps, bit for bit
    assert torch.equal(mixed[:, 0], all12[:, 0])
    assert not torch.allclose(mixed[:, 0], all5[:, 0], atol=1e-3)
    # deterministic sampler (eta 0): the partners are the 5-step partners of those anchors
    det = SamplerSettings(steps=5, anchor_steps=12, eta=0.0, **PLAIN)
    mixed0 = gen.sample_canonical(16, seed=3, settings=det, progress=False)
    given = gen.sample_canonical(16, seed=3, settings=SamplerSettings(steps=5, eta=0.0, anchor_steps=None, **PLAIN), progress=False,
                                 anchors=mixed0[:, 0])
    assert torch.allclose(mixed0[:, 1], given[:, 1], atol=1e-6)
    assert SamplerSettings(anchor_steps=None).stage1_steps == SamplerSettings().steps
    assert SamplerSettings().stage1_steps == 25  # the default (docs/prior_experiments.md)
    assert SamplerSettings(anchor_steps=7).stage1_steps == 7


def test_anchor_steps_validation():
    with pytest.raises(InputError, match="anchor_steps"):
        SamplerSettings(anchor_steps=0).validate()
    with pytest.raises(InputError, match="no anchor stage"):
        check_settings("joint", SamplerSettings(cfg_scale=0.0, apg_weight=0.0, settle_steps=0, resample_rounds=0,
                                                anchor_steps=70))


def test_the_default_anchor_steps_fit_a_shorter_schedule_and_explicit_ones_do_not():
    from interhandgen.diffusion import Schedule

    assert SamplerSettings().anchor_steps_for(129) == 25
    assert SamplerSettings().anchor_steps_for(20) == 20  # a model trained with T = 20: every step of its schedule
    assert SamplerSettings().anchor_steps_for(24) == 24
    assert SamplerSettings(anchor_steps=None, steps=12).anchor_steps_for(20) == 12
    assert SamplerSettings(anchor_steps=30).anchor_steps_for(20) == 30  # explicit: the sampler refuses it below
    from interhandgen.generation.cascade import sample_anchor

    net = InterHandGen.load().model.net
    mean, std = torch.zeros(2, 64), torch.ones(2, 64)
    with pytest.raises(InputError, match="num_steps"):
        sample_anchor(net, torch.zeros(2, 64), Schedule.cosine(20), SamplerSettings(anchor_steps=30), mean, std)


def test_anchor_solver_setting_reaches_stage_one(gen):
    """``anchor_solver`` changes the anchors only (the partner stage keeps DDIM steps), and its refusals name it."""
    torch.set_num_threads(1)
    two = gen.sample_canonical(8, seed=4, settings=SamplerSettings(anchor_steps=10, **PLAIN), progress=False)
    one = gen.sample_canonical(8, seed=4, settings=SamplerSettings(anchor_steps=10, anchor_solver="ddim", **PLAIN),
                               progress=False)
    assert SamplerSettings().anchor_solver == "dpmpp2m"
    assert not torch.allclose(two[:, 0], one[:, 0], atol=1e-3)
    # given anchors (stage 1 skipped): the solver setting changes nothing
    a = gen.sample_canonical(8, seed=4, settings=SamplerSettings(anchor_solver="ddim", **PLAIN), progress=False,
                             anchors=two[:, 0])
    b = gen.sample_canonical(8, seed=4, settings=SamplerSettings(**PLAIN), progress=False, anchors=two[:, 0])
    assert torch.equal(a, b)
    with pytest.raises(InputError, match="anchor_solver must be one of"):
        SamplerSettings(anchor_solver="euler").validate()
    with pytest.raises(InputError, match="anchor_solver='ddim'"):
        SamplerSettings(eta=0.5).validate()
    with pytest.raises(InputError, match="anchor_solver='ddim'"):
        SamplerSettings(update="reference").validate()
    SamplerSettings(eta=0.5, anchor_solver="ddim").validate()
    SamplerSettings(eta=0.0).validate()  # the ODE form
