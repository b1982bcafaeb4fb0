"""Depth-flip hypotheses (mirror geometry, candidate layout, selection by the prior's energy against brute force)
and the volumetric inscribed-sphere penetration term (gradient, exact zero when apart, it separates hands)."""

import pytest
import torch
from torch import nn

from interhandgen.cli import main
from interhandgen.data.format import TwoHandSet
from interhandgen.exceptions import InputError
from interhandgen.fitting import FitSettings, Fitter, Observations, canonical_from_camera, make_prior, \
    save_observations
from interhandgen.fitting.body import CENTER, ROT6D
from interhandgen.fitting.fit import depth_mirrored_rotation, flip_candidates
from interhandgen.fitting.priors import DiffusionPrior
from interhandgen.fitting.synthetic import CameraSpec, exact_projection
from interhandgen.geometry import penetration_volume
from interhandgen.geometry.proxy import sphere_penetration
from interhandgen.rotations import axis_angle_to_matrix, rot6d_to_matrix


def _fitter(prior="none", **kw):
    module, mean, std = make_prior(prior)
    return Fitter(module, mean, std, settings=FitSettings(**kw))


class RelativeRotationOracle(nn.Module):
    """A prior that knows the true relative rotation: |R_rel(x) - R_true|_F^2 (the ideal two-hand prior)."""

    name = "oracle"

    def __init__(self, rel_true: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("rel_true", rel_true)

    def forward(self, x, progress=0.0, generator=None):
        return ((rot6d_to_matrix(x[:, 1, ROT6D]) - self.rel_true) ** 2).sum(dim=(1, 2))


def test_depth_mirror_reflects_the_palm_plane_across_the_view_plane():
    g = torch.Generator().manual_seed(0)
    R = axis_angle_to_matrix(torch.randn(5, 3, generator=g, dtype=torch.float64))
    c = torch.randn(5, 3, generator=g, dtype=torch.float64) * 0.1 + torch.tensor([0.0, 0.0, 0.5], dtype=torch.float64)
    n = torch.nn.functional.normalize(torch.randn(3, generator=g, dtype=torch.float64), dim=0)
    Rm = depth_mirrored_rotation(R, c, n)
    eye = torch.eye(3, dtype=torch.float64)
    assert torch.allclose(Rm.transpose(1, 2) @ Rm, eye.expand(5, 3, 3), atol=1e-12)
    assert torch.allclose(torch.det(Rm), torch.ones(5, dtype=torch.float64))
    assert torch.allclose(depth_mirrored_rotation(Rm, c, n), R, atol=1e-12)  # an involution
    # A point X of the palm plane (X . n = 0) is placed at the reflection of its original place across the plane
    # through the centre normal to the viewing ray.
    X = torch.randn(5, 7, 3, generator=g, dtype=torch.float64)
    X = X - (X @ n)[..., None] * n
    d = torch.nn.functional.normalize(c, dim=-1)
    p = X @ R.transpose(1, 2)
    reflected = p - 2.0 * (p * d[:, None]).sum(-1, keepdim=True) * d[:, None]
    assert torch.allclose(X @ Rm.transpose(1, 2), reflected, atol=1e-12)


def test_flip_candidates_match_a_loop(make_vectors):
    fitter = _fitter()
    y = make_vectors(3, seed=7)
    needs = torch.tensor([[True, True], [True, False], [False, False]])
    out = flip_candidates(y, needs, fitter.palm_normals)
    assert out.shape == (3, 4, 2, 64)
    for b in range(3):
        for k in range(4):
            for side in range(2):
                want = y[b, side].clone()
                if (k >> side) & 1 and needs[b, side]:
                    R = rot6d_to_matrix(y[b, side, ROT6D])[None]
                    Rm = depth_mirrored_rotation(R, y[b, side, CENTER][None], fitter.palm_normals[side])[0]
                    assert torch.allclose(rot6d_to_matrix(out[b, k, side, ROT6D]), Rm, atol=1e-5)
                    want[ROT6D] = out[b, k, side, ROT6D]
                assert torch.equal(out[b, k, side], want)


def _candidate_problem(make_vectors, B=3):
    """Truths, their candidates (starting from both hands flipped, so candidate 3 is the truth), an observation
    set that sees nothing (every confidence 0: the data term cannot choose) and its expansion to 4 candidates."""
    y = make_vectors(B, seed=8)
    fitter = _fitter()
    needs = torch.ones(B, 2, dtype=torch.bool)
    start = flip_candidates(y, needs, fitter.palm_normals)[:, 3]
    cand = flip_candidates(start, needs, fitter.palm_normals).reshape(B * 4, 2, 64)
    K = CameraSpec().intrinsics(B)
    obs = Observations(keypoints_2d=torch.zeros(B, 2, 21, 2), confidence_2d=torch.zeros(B, 2, 21), intrinsics=K)
    return y, cand, obs


def test_the_prior_chooses_the_flipped_hypothesis_the_data_cannot(make_vectors):
    y, cand, obs = _candidate_problem(make_vectors)
    B = y.shape[0]
    settings = FitSettings(prior_weight=1.0, penetration_weight=0.0, flip_select="energy")
    rel_true = rot6d_to_matrix(canonical_from_camera(y)[:, 1, ROT6D])
    oracle = Fitter(RelativeRotationOracle(rel_true.repeat_interleave(4, 0)), torch.zeros(2, 64), torch.ones(2, 64),
                    settings=settings)
    blind = _fitter(penetration_weight=0.0)
    g = torch.Generator().manual_seed(0)
    obs4 = blind._expand(obs, 4)
    best, e = oracle.select(cand, obs4, 0.0, g, None, 4)
    assert torch.equal(best, torch.full((B,), 3)), e
    assert torch.allclose(cand.view(B, 4, 2, 64)[torch.arange(B), best], y, atol=1e-5)
    # Without a prior the data term alone (it sees nothing here) cannot tell the candidates apart.
    _, e0 = blind.select(cand, obs4, 0.0, g, None, 4)
    assert torch.equal(e0, torch.zeros(B, 4))


def test_data_selection_ignores_the_prior(make_vectors):
    """flip_select="data": the oracle prior that picks the truth (above) no longer counts; on observations of the
    truth's depth-mirrored pair (candidate 3 of its flips) the data term's own argmin is kept, whatever the prior."""
    y, cand, _ = _candidate_problem(make_vectors)
    B = y.shape[0]
    rel_true = rot6d_to_matrix(canonical_from_camera(y)[:, 1, ROT6D])
    K = CameraSpec().intrinsics(B)
    start = cand.view(B, 4, 2, 64)[:, 0]  # both hands flipped from the truth: what the keypoints show
    probe = _fitter()
    with torch.no_grad():
        kp = exact_projection(probe.body.joints(start), K)
    obs = Observations(keypoints_2d=kp, confidence_2d=torch.ones(B, 2, 21), intrinsics=K)
    obs4 = probe._expand(obs, 4)
    g = torch.Generator().manual_seed(0)
    for select, want in (("energy", 3), ("data", 0)):
        settings = FitSettings(prior_weight=1e6, penetration_weight=0.0, volume_weight=0.0, flip_select=select)
        oracle = Fitter(RelativeRotationOracle(rel_true.repeat_interleave(4, 0)), torch.zeros(2, 64),
                        torch.ones(2, 64), settings=settings)
        best, e = oracle.select(cand, obs4, 0.0, g, None, 4)
        assert torch.equal(best, torch.full((B,), want)), (select, e)
    data = probe.energy(cand, obs4, 0.0, g)["data"].view(B, 4)
    assert torch.equal(data.argmin(1), torch.zeros(B, dtype=torch.int64))
    with pytest.raises(InputError):
        FitSettings(flip_select="prior").validate()


def test_batched_selection_matches_a_loop(make_vectors):
    y, cand, _ = _candidate_problem(make_vectors)
    B = y.shape[0]
    fitter = _fitter("gaussian", prior_weight=3.0, flip_select="energy")
    K = CameraSpec().intrinsics(B)
    with torch.no_grad():
        kp = fitter.body.joints(y)
    obs = Observations(keypoints_2d=exact_projection(kp, K) + 2.0, confidence_2d=torch.full((B, 2, 21), 0.8),
                       intrinsics=K)
    g = torch.Generator().manual_seed(0)
    best, e = fitter.select(cand, fitter._expand(obs, 4), 0.4, g, None, 4)
    for b in range(B):
        one = Observations(keypoints_2d=obs.keypoints_2d[b:b + 1], confidence_2d=obs.confidence_2d[b:b + 1],
                           intrinsics=K[b:b + 1])
        loop = torch.stack([fitter.energy(cand[4 * b + k:4 * b + k + 1], one, 0.4, g)["total"][0] for k in range(4)])
        assert torch.allclose(e[b], loop, rtol=1e-5, atol=1e-4)
        assert int(best[b]) == int(loop.argmin())


def test_diffusion_candidates_share_their_noise(make_vectors):
    fitter = _fitter("interhandgen", flip_prior_draws=3)
    assert isinstance(fitter.prior, DiffusionPrior)
    x = canonical_from_camera(make_vectors(2, seed=9))
    same = x.repeat_interleave(4, 0)
    v = fitter._shared_noise_prior(same, 0.2, torch.Generator().manual_seed(1), 4).view(2, 4)
    assert torch.allclose(v, v[:, :1].expand(2, 4))  # equal candidates, equal values: the noise is shared
    # Against a loop with the same draws.
    g = torch.Generator().manual_seed(1)
    draws = [(fitter.prior.timesteps(2, 0.2, g), torch.randn((2, 1, 2, 64), generator=g)) for _ in range(3)]
    for b in range(2):
        want = sum(fitter.prior(x[b:b + 1], timesteps=t[b:b + 1], noise=eps[b]) for t, eps in draws) / 3
        assert torch.allclose(v[b, 0], want[0], rtol=1e-5)


def test_fit_with_flip_hypotheses_reports_its_choice(make_vectors):
    y = make_vectors(2, seed=3)
    fitter = _fitter("gaussian", iterations=12, hypotheses=3, hypothesis_iterations=2, flip_hypotheses=True,
                     flip_iterations=2)
    K = CameraSpec().intrinsics(2)
    kp = exact_projection(fitter.body.joints(y).detach(), K)
    res = fitter.fit(Observations(keypoints_2d=kp, confidence_2d=torch.ones(2, 2, 21), intrinsics=K), progress=False)
    assert len(res.diagnostics["flip_choice"]) == 2 and all(0 <= c < 4 for c in res.diagnostics["flip_choice"])
    assert res.vectors.shape == (2, 2, 64)
    # Without 2D-only hands there is nothing to flip.
    res3 = fitter.fit(Observations(keypoints_3d=fitter.body.joints(y).detach(), confidence_3d=torch.ones(2, 2, 21)),
                      progress=False)
    assert res3.diagnostics["flip_choice"] is None


def test_sphere_penetration_gradient_and_zero_when_apart(make_vectors):
    g = torch.Generator().manual_seed(0)
    args = [torch.randn(2, 6, 3, generator=g, dtype=torch.float64) * 0.01,
            torch.randn(2, 5, 3, generator=g, dtype=torch.float64) * 0.01,
            torch.rand(2, 5, generator=g, dtype=torch.float64) * 0.01 + 0.004,
            torch.randn(2, 7, 3, generator=g, dtype=torch.float64) * 0.01,
            torch.randn(2, 4, 3, generator=g, dtype=torch.float64) * 0.01,
            torch.rand(2, 4, generator=g, dtype=torch.float64) * 0.01 + 0.004]
    args = [a.requires_grad_() for a in args]
    assert (sphere_penetration(*args) > 0).all()
    assert torch.autograd.gradcheck(sphere_penetration, args)
    # Hands 25 cm apart: exactly 0 with exactly zero gradient.
    fitter = _fitter()
    y = make_vectors(3, seed=2).requires_grad_()
    _, surface = fitter.body.joints_and_surface(y)
    centres, radii = fitter.body.spheres(y)
    value = sphere_penetration(surface[0], centres[0], radii[0], surface[2], centres[1], radii[1])
    assert torch.equal(value, torch.zeros(3))
    (grad,) = torch.autograd.grad(value.sum(), y)
    assert torch.count_nonzero(grad) == 0


def test_volume_term_pushes_overlapping_hands_apart(make_vectors):
    fitter = _fitter()
    y = make_vectors(2, seed=5, separation=0.04)  # hands 4 cm apart: overlapping by centimetres
    faces = (fitter.models["left"].faces, fitter.models["right"].faces)
    with torch.no_grad():
        before = penetration_volume(fitter.body.meshes(y)[0][:, 0], faces[0], fitter.body.meshes(y)[0][:, 1], faces[1],
                                    num_workers=1)
    centre = y[..., CENTER].clone().requires_grad_()
    opt = torch.optim.Adam([centre], lr=0.002)
    radii = None
    for it in range(150):
        yy = torch.cat([y[..., :61], centre], dim=-1)
        if it % 10 == 0:
            radii = fitter.body.spheres(yy.detach())[1]
        _, surface = fitter.body.joints_and_surface(yy)
        centres, _ = fitter.body.spheres(yy, radii)
        loss = sphere_penetration(surface[0], centres[0], radii[0], surface[2], centres[1], radii[1])
        opt.zero_grad()
        (loss.sum() / 0.002 ** 2).backward()
        opt.step()
    with torch.no_grad():
        verts = fitter.body.meshes(torch.cat([y[..., :61], centre], dim=-1))[0]
        after = penetration_volume(verts[:, 0], faces[0], verts[:, 1], faces[1], num_workers=1)
    before, after = torch.as_tensor(before), torch.as_tensor(after)
    assert (before > 1e-6).all(), before  # cm^3
    assert (after < 0.1 * before).all(), (before, after)


def test_cli_flags_reach_the_settings(tmp_path, make_vectors):
    fitter = _fitter()
    y = make_vectors(2, seed=8)
    K = CameraSpec().intrinsics(2)
    obs = Observations(keypoints_2d=exact_projection(fitter.body.joints(y).detach(), K),
                       confidence_2d=torch.ones(2, 2, 21), intrinsics=K, image_size=(640, 480))
    path = save_observations(obs, tmp_path / "obs.json", joint_order="openpose")
    for flags, flips, volume in ((["--no-flip-hypotheses", "--volume-weight", "0", "--flip-select", "energy"], False, 0.0),
                                 (["--flip-hypotheses", "--flip-iterations", "1", "--volume-weight", "5",
                                   "--flip-select", "data"], True, 5.0)):
        out = tmp_path / f"fit_{flips}.npz"
        code = main(["fit", "--observations", str(path), "--out", str(out), "--prior", "none", "--iterations", "6",
                     "--no-progress", *flags])
        assert code == 0
        meta = TwoHandSet.load(out).metadata["fit"]
        assert meta["settings"]["flip_hypotheses"] is flips and meta["settings"]["volume_weight"] == volume
        assert meta["settings"]["flip_select"] == ("data" if flips else "energy")
        assert (meta["frames"]["flip_choice"] is None) is (not flips)
