"""benchmarks/prior_sampler.py: the stage views of the joint features (anchor articulation, partner articulation
in its own frame, placement) against the hand layer's world joints, and the variant parser."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from interhandgen.data.format import TwoHandSet
from interhandgen.diffusion import Schedule, ddim_sample
from interhandgen.diffusion.samplers import sampling_timesteps
from interhandgen.evaluation.protocol import canonical_joint_features
from interhandgen.exceptions import InputError
from interhandgen.generation import SamplerSettings
from interhandgen.hand import CENTER_JOINT
from interhandgen.rotations import axis_angle_to_matrix, matrix_to_rot6d


@pytest.fixture(scope="module")
def ps(load_benchmark):
    return load_benchmark("prior_sampler")


def random_pairs(n: int, seed: int) -> TwoHandSet:
    rng = np.random.default_rng(seed)
    def hand():
        return {"pose": rng.normal(0, 0.3, (n, 45)), "betas": rng.normal(0, 0.5, (n, 10)),
                "global_orient": rng.normal(0, 0.8, (n, 3)), "transl": rng.normal(0, 0.05, (n, 3))}
    return TwoHandSet(hand(), hand(), pose_space="pca", flat_hand_mean=False, hand_model="open_hand")


def test_views_closed_form(ps):
    # features built from known local joints J, rotation R and translation t: the partner view returns J exactly
    g = torch.Generator().manual_seed(0)
    n = 7
    anchor = torch.randn(n, 63, generator=g, dtype=torch.float64)
    local = torch.randn(n, 21, 3, generator=g, dtype=torch.float64)
    rot = axis_angle_to_matrix(torch.randn(n, 3, generator=g, dtype=torch.float64))
    t = torch.randn(n, 3, generator=g, dtype=torch.float64)
    placed = local @ rot.transpose(1, 2) + t[:, None]  # R J + t per joint (row vectors)
    feats = torch.cat([anchor, placed.reshape(n, 63), matrix_to_rot6d(rot), t], 1)
    v = ps.stage_views(feats)
    assert torch.equal(v["anchor"], anchor)
    assert torch.allclose(v["partner"], local.reshape(n, 63), atol=1e-12)
    assert torch.equal(v["placement"], feats[:, 126:])
    with pytest.raises(InputError, match="135"):
        ps.stage_views(feats[:, :100])


def test_partner_view_is_the_right_hand_in_its_own_frame(ps):
    pairs = random_pairs(6, 1)
    models = pairs.hand_models()
    v = ps.stage_views(canonical_joint_features(pairs, models, batch_size=4).double())
    world = pairs.joints(models, dtype=torch.float64)
    for side in ("left", "right"):
        R = axis_angle_to_matrix(torch.as_tensor(getattr(pairs, side).global_orient, dtype=torch.float64))
        own = (world[side] - world[side][:, CENTER_JOINT:CENTER_JOINT + 1]) @ R  # R^T (J - c), row vectors
        got = v["anchor" if side == "left" else "partner"].reshape(6, 21, 3)
        assert torch.allclose(got, own, atol=3e-5), side  # float32 hand forward
    # the partner view does not depend on where the right hand is: move it rigidly, the view stays
    moved = pairs._replace(right=dataclasses.replace(pairs.right, transl=pairs.right.transl + np.array([0.1, -0.2, 0.05])))
    v2 = ps.stage_views(canonical_joint_features(moved, models, batch_size=4).double())
    assert torch.allclose(v2["partner"], v["partner"], atol=3e-5)
    assert not torch.allclose(v2["placement"], v["placement"], atol=1e-3)


def test_parse_variant(ps):
    label, over, anchors = ps.parse_variant("x=steps=50,eta=0,same_noise=false,cfg_dims=0:64,cfg_scale=1.5")
    assert label == "x" and anchors == "sampled"
    assert over == {**ps.BASE, "steps": 50, "eta": 0.0, "same_noise": False, "cfg_dims": (0, 64), "cfg_scale": 1.5}
    assert over["settle_steps"] == 0 and over["resample_rounds"] == 0  # network + APG only
    SamplerSettings(**over).validate()
    assert ps.parse_variant("base=") == ("base", ps.BASE, "sampled")
    assert ps.parse_variant("a=anchor_steps=129")[1]["anchor_steps"] == 129
    assert ps.parse_variant("a=anchor_steps=none")[1]["anchor_steps"] is None
    assert ps.parse_variant("real=anchors=floor")[2] == "floor"
    for bad, msg in [("nolabel", "LABEL"), ("x=foo=1", "not a SamplerSettings field"), ("x=anchors=test", "anchors"),
                     ("x=same_noise=1", "true or false"), ("x=steps", "KEY=VALUE"), ("x=steps=0", "steps"),
                     ("x=steps=many", "steps")]:
        with pytest.raises(InputError, match=msg):
            ps.parse_variant(bad)


def test_spread_ratios(ps):
    ref = random_pairs(400, 2)
    assert ps.spread_ratios(ref, ref) == pytest.approx({"spread_betas": 1.0, "spread_pose": 1.0})
    # pose coefficients scaled by 0.8 about their mean: spread 0.8 exactly; betas untouched
    shrunk = ref._replace(**{side: dataclasses.replace(
        getattr(ref, side), pose=0.8 * getattr(ref, side).pose + 0.2 * getattr(ref, side).pose.mean(0))
        for side in ("left", "right")})
    assert ps.spread_ratios(shrunk, ref) == pytest.approx({"spread_betas": 1.0, "spread_pose": 0.8})
    flat = ref._replace(left=dataclasses.replace(ref.left, betas=np.zeros_like(ref.left.betas)))
    with pytest.raises(InputError, match="non-zero spread"):
        ps.spread_ratios(ref, flat)


def test_gaussian_spread_closed_form_matches_the_sampler(ps):
    # the closed-form variance recursion against ddim_sample itself with the exact denoiser of N(0, v)
    sch = Schedule.cosine(129)
    ab = sch.alphas_cumprod
    for v, steps, eta in [(1.0, 20, 1.0), (0.1, 10, 0.0), (0.1, 50, 1.0)]:
        def exact(x, t, cond=None, v=v):
            a2 = ab[t].to(x)[:, None]
            return a2.sqrt() * v / (a2 * v + 1 - a2) * x
        z = torch.randn(400_000, 1, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
        x = ddim_sample(exact, z, sch, steps, eta=eta, generator=torch.Generator().manual_seed(4))
        want = ps.gaussian_spread(ab, sampling_timesteps(129, steps).tolist(), eta, v)
        assert x.std().item() / v ** 0.5 == pytest.approx(want, abs=0.006)  # 400k draws: std error ~0.0011
        assert want < 1.0  # the finite-step sampler under-disperses even with the exact denoiser
    # all 129 steps of the deterministic sampler are close to exact
    assert ps.gaussian_spread(ab, sampling_timesteps(129, 129).tolist(), 0.0, 1.0) == pytest.approx(1.0, abs=0.02)
