"""The prior-weight schedule, the contact term and default_settings: closed forms and brute force."""

import pytest
import torch

from interhandgen.exceptions import InputError
from interhandgen.fitting import DEFAULT_PRIOR_WEIGHTS, DEFAULT_PRIOR_WEIGHTS_END, FitSettings, Fitter, \
    Observations, default_settings, make_prior
from interhandgen.fitting.fit import PENETRATION_SCALE, contact_loss


def test_prior_weight_schedule_is_linear_and_constant_without_end():
    s = FitSettings(prior_weight=20.0, prior_weight_end=1.0)
    assert [s.prior_weight_at(p) for p in (0.0, 0.5, 1.0)] == pytest.approx([20.0, 10.5, 1.0])
    assert FitSettings(prior_weight=5.0).prior_weight_at(0.7) == 5.0
    with pytest.raises(InputError, match="prior_weight_end"):
        FitSettings(prior_weight_end=-1.0).validate()
    with pytest.raises(InputError, match="contact"):
        FitSettings(contact_range=0.0).validate()


def test_default_settings_take_each_priors_schedule_and_overrides():
    for name in DEFAULT_PRIOR_WEIGHTS:
        s = default_settings(name)
        assert (s.prior_weight, s.prior_weight_end) == (DEFAULT_PRIOR_WEIGHTS[name], DEFAULT_PRIOR_WEIGHTS_END[name])
    s = default_settings("gaussian", prior_weight=3.0, iterations=None, contact_weight=2.0)
    assert s.prior_weight == 3.0 and s.iterations == FitSettings.iterations and s.contact_weight == 2.0
    with pytest.raises(InputError, match="prior"):
        default_settings("nope")


def test_only_the_interhandgen_prior_runs_the_guided_projection_by_default():
    s = default_settings("interhandgen")
    assert (s.guided_at, s.guided_t, s.guided_inner) == (0.3, 0.1, 10)
    assert default_settings("interhandgen", guided=False).guided_at is None
    assert default_settings("interhandgen", guided_at=0.5).guided_at == 0.5
    for name in ("vae", "gaussian", "none"):
        assert default_settings(name).guided_at is None
        with pytest.raises(InputError, match="guided"):
            default_settings(name, guided=True)


def test_contact_loss_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(3, 7, 3, generator=g) * 0.02
    shift = torch.tensor([[0.0, 0.0, 0.0], [0.015, 0.0, 0.0], [0.05, 0.0, 0.0]])  # frame 2: 3 cm apart at least
    b = torch.rand(3, 5, 3, generator=g) * 0.02 + shift[:, None]
    got = contact_loss(a, b, 0.01)
    for i in range(3):
        d = min(float((p - q).norm()) for p in a[i] for q in b[i])
        want = (d / PENETRATION_SCALE) ** 2 if d < 0.01 else 0.0
        assert float(got[i]) == pytest.approx(want, rel=1e-5, abs=1e-9)
    assert float(got[2]) == 0.0  # frame 2's hands lie 3 cm or more apart: out of range, left alone


def test_energy_reports_the_contact_term(make_vectors):
    module, mean, std = make_prior("none")
    y = make_vectors(2, seed=3, separation=0.0)  # centres together: the hands overlap
    fitter = Fitter(module, mean, std, settings=FitSettings(contact_weight=1.0, contact_range=1.0))
    obs = Observations(keypoints_3d=fitter.body.joints(y).detach(), confidence_3d=torch.ones(2, 2, 21))
    terms = fitter.energy(y, obs, 1.0, torch.Generator().manual_seed(0))
    _, surface = fitter.body.joints_and_surface(y)
    assert torch.allclose(terms["contact"], contact_loss(surface[0], surface[2], 1.0))
    # At the end of stage 2 the volume term has its full weight (FitSettings.volume_weight).
    assert (terms["volume"] > 0).all()
    assert torch.allclose(terms["total"], terms["data"] + 10.0 * terms["penetration"] + terms["contact"]
                          + fitter.settings.volume_weight * terms["volume"])
