"""The priors: the diffusion term's gradient lowers its own denoising residual; the VAE prior's closed form and
model-file checks."""

import pytest
import torch

from interhandgen.exceptions import InputError, ModelMismatchError
from interhandgen.fitting import FitSettings, Fitter, Observations, canonical_from_camera, make_prior
from interhandgen.fitting._model import TwoHandVAE, write_model_file


@pytest.mark.parametrize("variant", ["sds", "dposer"])
def test_diffusion_prior_gradient_reduces_the_denoising_residual(variant, make_vectors):
    prior, mean, std = make_prior("interhandgen", variant=variant)
    g = torch.Generator().manual_seed(0)
    # Perturbed samples around the data: the statistics' mean plus one standard deviation of noise per number.
    x = canonical_from_camera(make_vectors(6, seed=5))
    x[:, :, :55] = mean[:, :55] + std[:, :55] * torch.randn(6, 2, 55, generator=g)
    reps = 32  # each sample under 32 (timestep, noise) draws: the expected residual
    x = x.repeat_interleave(reps, 0).requires_grad_()

    def residual(v):
        return prior(v, progress=0.3, generator=torch.Generator().manual_seed(1)).view(6, reps).mean(1)

    r0 = residual(x)
    (grad,) = torch.autograd.grad(r0.sum(), x)
    gz = (grad * std).view(6, reps, 2, 64).sum(1)  # gradient w.r.t. the standardised numbers, per sample
    step = -0.1 * gz / gz.flatten(1).norm(dim=1)[:, None, None]
    with torch.no_grad():
        r1 = residual(x + (step * std).repeat_interleave(reps, 0))
    assert (r1 < r0.detach()).all(), (r0, r1)


def _tiny_vae(tmp_path):
    torch.manual_seed(0)
    net = TwoHandVAE(latent_dim=4, width=32, depth=1)
    mean = torch.randn(2, 64) * 0.1
    std = torch.rand(2, 64) + 0.5
    path = tmp_path / "vae.safetensors"
    write_model_file(net.state_dict(), {"kind": "vae", "latent_dim": 4, "width": 32, "depth": 1}, mean, std, path)
    return net, mean, std, path


def test_vae_prior_matches_its_closed_form(tmp_path, make_vectors):
    net, mean, std, path = _tiny_vae(tmp_path)
    prior, m2, s2 = make_prior("vae", path, placement_weight=1.0)  # the plain term (the weight: below)
    assert torch.allclose(m2, mean) and torch.allclose(s2, std)
    x = canonical_from_camera(make_vectors(3, seed=6))
    z = ((x - mean) / std).reshape(3, 128)
    mu = net.encode(z)[0]
    rec = net.decode(mu)
    keep = torch.ones(128)
    keep[55:64] = 0.0  # the anchor's constant rotation/translation slots
    want = 0.5 * (mu ** 2).sum(1) + 0.5 * (((rec - z) * keep) ** 2).sum(1)
    assert torch.allclose(prior(x), want, rtol=1e-5, atol=1e-5)
    x.requires_grad_()
    (grad,) = torch.autograd.grad(prior(x).sum(), x)
    assert grad.abs().sum() > 0


def test_prior_model_files_are_checked(tmp_path):
    _, _, _, path = _tiny_vae(tmp_path)
    with pytest.raises(ModelMismatchError, match="cascaded model"):
        make_prior("interhandgen", path)
    with pytest.raises(InputError, match="needs --checkpoint"):
        make_prior("vae")
    with pytest.raises(ModelMismatchError, match="kind 'vae'"):
        make_prior("vae", _bundled())
    with pytest.raises(InputError, match="prior must be one of"):
        make_prior("flow")


def _bundled():
    from interhandgen.fitting._model import bundled_model_path

    return bundled_model_path()


def test_gaussian_prior_is_the_standardised_squared_distance(make_vectors):
    prior, mean, std = make_prior("gaussian")
    x = canonical_from_camera(make_vectors(2, seed=7))
    z = (x - mean) / std
    assert torch.allclose(prior(x), 0.5 * (z[..., :55] ** 2).sum((1, 2)), rtol=1e-5)
    none, _, _ = make_prior("none")
    assert torch.equal(none(x), torch.zeros(2))


def test_guided_projection_follows_the_data_and_keeps_the_anchor_frame(make_vectors):
    prior, mean, std = make_prior("interhandgen")
    x = canonical_from_camera(make_vectors(4, seed=2))
    target = mean + 0.5 * std * torch.randn(2, 64, generator=torch.Generator().manual_seed(3))
    free = torch.ones(2, 64)
    free[0, 55:] = 0.0  # the anchor's rotation/translation slots are constants of the frame

    def energy(v):
        return ((((v - target) / std) * free) ** 2).sum((1, 2))

    def run(step):
        return prior.guided_projection(x, energy, 0.1, 5, step, 5, torch.Generator().manual_seed(0))

    plain, guided = run(0.0), run(0.2)
    assert torch.equal(guided[:, 0, 55:], x[:, 0, 55:]) and torch.equal(plain[:, 0, 55:], x[:, 0, 55:])
    assert (energy(guided) < energy(plain)).all()
    assert torch.equal(run(0.2), guided)  # same generator seed, same result


def test_guided_fit_needs_the_diffusion_prior(make_vectors):
    module, mean, std = make_prior("gaussian")
    fitter = Fitter(module, mean, std, settings=FitSettings(iterations=4, guided_at=0.0))
    y = make_vectors(1, seed=1)
    obs = Observations(keypoints_3d=fitter.body.joints(y).detach(), confidence_3d=torch.ones(1, 2, 21))
    with pytest.raises(InputError, match="guided_at"):
        fitter.fit(obs, progress=False)


@pytest.mark.parametrize("variant", ["sds", "dposer"])
def test_placement_weight_weighs_only_the_partners_relative_placement(variant, make_vectors):
    plain, mean, std = make_prior("interhandgen", variant=variant, placement_weight=1.0)
    heavy, _, _ = make_prior("interhandgen", variant=variant, placement_weight=4.0)
    x = canonical_from_camera(make_vectors(5, seed=8))
    t = torch.tensor([3, 10, 20, 30, 38])
    eps = torch.randn(5, 2, 64, generator=torch.Generator().manual_seed(2))
    z = (x - mean) / std
    diff = z - plain.denoise_targets(z, t, eps)
    scale = plain.snr_weight[t] if variant == "dposer" else torch.ones(5)
    extra = 3.0 * (diff[:, 1, 55:] ** 2).sum(1) * scale  # (4 - 1) x the partner's 9 placement numbers
    torch.testing.assert_close(heavy(x, timesteps=t, noise=eps), plain(x, timesteps=t, noise=eps) + extra,
                               rtol=1e-5, atol=1e-5)


def test_vae_placement_weight_and_bad_weights(tmp_path, make_vectors):
    net, mean, std, path = _tiny_vae(tmp_path)
    plain, _, _ = make_prior("vae", path, placement_weight=1.0)
    heavy, _, _ = make_prior("vae", path, placement_weight=2.5)
    x = canonical_from_camera(make_vectors(3, seed=9))
    z = ((x - mean) / std).reshape(3, 128)
    rec = net.decode(net.encode(z)[0])
    extra = 0.5 * 1.5 * ((rec - z)[:, 64 + 55:] ** 2).sum(1)
    torch.testing.assert_close(heavy(x), plain(x) + extra, rtol=1e-5, atol=1e-5)
    for bad in (0.0, -1.0, float("inf")):
        with pytest.raises(InputError, match="placement_weight"):
            make_prior("interhandgen", placement_weight=bad)
    with pytest.raises(InputError, match="placement_weight"):
        make_prior("gaussian", placement_weight=2.0)


def test_the_fit_weighs_the_placement_only_for_2d_only_observations(make_vectors):
    from interhandgen.fitting.synthetic import CameraSpec, exact_projection
    from interhandgen.fitting.fit import placement_observed

    module, mean, std = make_prior("interhandgen", placement_weight=5.0)
    fitter = Fitter(module, mean, std, settings=FitSettings(iterations=3, hypotheses=1))
    y = make_vectors(1, seed=2)
    joints = fitter.body.joints(y).detach()
    K = CameraSpec().intrinsics(1)
    two_d = Observations(keypoints_2d=exact_projection(joints, K), confidence_2d=torch.ones(1, 2, 21), intrinsics=K)
    three_d = Observations(keypoints_3d=joints, confidence_3d=torch.ones(1, 2, 21))
    unseen_3d = Observations(keypoints_3d=joints, confidence_3d=torch.zeros(1, 2, 21), keypoints_2d=two_d.keypoints_2d,
                             confidence_2d=two_d.confidence_2d, intrinsics=K)
    assert not placement_observed(two_d) and placement_observed(three_d) and not placement_observed(unseen_3d)
    for obs, want in ((three_d, 1.0), (two_d, 5.0), (three_d, 1.0)):
        fitter.fit(obs, progress=False)
        assert torch.equal(module.partner_weight[55:], torch.full((9,), want))
        assert torch.equal(module.partner_weight[:55], torch.ones(55))
