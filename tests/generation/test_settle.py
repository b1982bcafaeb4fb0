"""Contact settling (interhandgen.generation.settle): exact geometry before and after, untouched rows, skeleton."""

import numpy as np
import pytest
import torch

from interhandgen.geometry import min_distance, penetration_volume
from interhandgen.data.canonical import canonical_vertices
from interhandgen.generation import SettleConfig, SubsetHand, settle_contact
from interhandgen.hand import open_hand
from interhandgen.rotations import axis_angle_to_matrix, matrix_to_rot6d, rot6d_to_matrix
from interhandgen.generation import SamplerSettings, cascaded_sample

LEFT, RIGHT = open_hand("left"), open_hand("right")


def _vector(rotation: torch.Tensor, translation: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    x = torch.zeros(translation.shape[0], 64)
    x[:, :45] = 0.3 * torch.randn(translation.shape[0], 45, generator=gen)
    x[:, 45:55] = 0.5 * torch.randn(translation.shape[0], 10, generator=gen)
    x[:, 55:61] = matrix_to_rot6d(rotation)
    x[:, 61:64] = translation
    return x


def _geometry(anchor: torch.Tensor, other: torch.Tensor):
    with torch.no_grad():
        va, _ = canonical_vertices(anchor, LEFT)
        vb, _ = canonical_vertices(other, RIGHT)
    gap = min_distance(va, vb).numpy() * 1000.0
    vol = penetration_volume(va, LEFT.faces, vb, RIGHT.faces, num_workers=1)
    return gap, vol


@pytest.fixture(scope="module")
def pairs():
    """Anchors with the right hand placed along a direction at a known offset from first touch."""
    gen = torch.Generator().manual_seed(0)
    B = 6
    anchor = _vector(torch.eye(3).expand(B, 3, 3), torch.zeros(B, 3), gen)
    rot = axis_angle_to_matrix(torch.tensor([[0.0, np.pi, 0.0]]).expand(B, 3) + 0.2 * torch.randn(B, 3, generator=gen))
    direction = torch.nn.functional.normalize(torch.tensor([[0.0, 0.0, 1.0]]) + 0.3 * torch.randn(B, 3, generator=gen), dim=1)
    other = _vector(rot, torch.zeros(B, 3), gen)
    # The offset along the direction at which the hands first touch when approaching from afar: march in by
    # 1 mm until the vertex gap is below 1 mm, then bisect the last step with the exact volume (a vertex gap
    # alone cannot tell touching from overlap, so the approach must come from outside).
    def placed(offset):
        o = other.clone()
        o[:, 61:64] = offset[:, None] * direction
        return o

    def gap_at(offset):
        with torch.no_grad():
            va, _ = canonical_vertices(anchor, LEFT)
            vb, _ = canonical_vertices(placed(offset), RIGHT)
        return min_distance(va, vb) * 1000.0

    hi = torch.full((B,), 0.15)
    assert (gap_at(hi) > 5.0).all()
    lo = hi.clone()
    active = torch.ones(B, dtype=torch.bool)
    while active.any():
        lo = torch.where(active, lo - 0.001, lo)
        near = gap_at(lo) < 1.0
        hi = torch.where(active & ~near, lo, hi)
        active &= ~near
    for _ in range(10):
        mid = 0.5 * (lo + hi)
        gap, vol = _geometry(anchor, placed(mid))
        apart = torch.as_tensor((gap > 0.05) & (vol == 0))
        hi = torch.where(apart, mid, hi)
        lo = torch.where(apart, lo, mid)
    return anchor, other, direction, hi


def _placed(pairs, offset_mm):
    anchor, other, direction, touch = pairs
    o = other.clone()
    o[:, 61:64] = (touch + offset_mm / 1000.0)[:, None] * direction
    return anchor, o


def _settle(anchor, other, **kw):
    config = SettleConfig(**kw)
    return settle_contact(anchor, other, SubsetHand(LEFT, config.points), SubsetHand(RIGHT, config.points), config)


def test_interpenetrating_pairs_are_pushed_out_into_contact(pairs):
    anchor, other = _placed(pairs, -6.0)
    gap0, vol0 = _geometry(anchor, other)
    assert (vol0 > 0.05).all()
    settled = _settle(anchor, other)
    gap, vol = _geometry(anchor, settled)
    assert vol.mean() < 0.02 * vol0.mean() and vol.max() < 0.05  # cm^3
    assert (gap < 2.0).all()  # still touching
    # Only the rigid placement changed: pose and shape are bit-for-bit the same, the rotation stays a rotation.
    assert torch.equal(settled[:, :55], other[:, :55])
    R = rot6d_to_matrix(settled[:, 55:61])
    torch.testing.assert_close(R @ R.transpose(1, 2), torch.eye(3).expand_as(R), atol=1e-5, rtol=0)


def test_pairs_a_few_millimetres_apart_are_brought_into_contact(pairs):
    anchor, other = _placed(pairs, 7.0)
    gap0, _ = _geometry(anchor, other)
    assert (gap0 > 2.5).all() and (gap0 < 9.0).all(), gap0  # apart, within the default attraction radius
    gap, vol = _geometry(anchor, _settle(anchor, other))
    assert (gap < 2.0).all() and vol.max() < 0.05


def test_pairs_farther_than_attract_are_returned_unchanged(pairs):
    anchor, other = _placed(pairs, 60.0)
    near_anchor, near = _placed(pairs, 5.0)
    both_a, both_o = torch.cat([anchor, near_anchor]), torch.cat([other, near])
    settled = _settle(both_a, both_o, attract_mm=10.0)
    assert torch.equal(settled[:6], other)
    assert not torch.equal(settled[6:], near)
    # A larger attraction radius takes the far pairs in too.
    assert not torch.equal(_settle(anchor, other, attract_mm=80.0), other)


def test_skeleton_places_the_rest_joints_like_the_hand_layer(pairs):
    anchor, other, _, _ = pairs
    hand = SubsetHand(RIGHT, 64)
    rest, T = hand.skeleton(other)
    placed = (T[..., :3] @ rest[..., None]).squeeze(-1) + T[..., 3]
    _, joints = canonical_vertices(other, RIGHT)
    torch.testing.assert_close(placed, joints[:, :16], atol=1e-6, rtol=0)


def test_arguments_are_checked(pairs):
    anchor, other, _, _ = pairs
    with pytest.raises(ValueError, match="other"):
        _settle(anchor, other[:, :60])
    with pytest.raises(ValueError, match="batch sizes"):
        _settle(anchor, other[:3])
    with pytest.raises(ValueError, match="attract_mm"):
        _settle(anchor, other, attract_mm=0.0)
    with pytest.raises(ValueError, match="settle_steps"):
        SamplerSettings(settle_steps=-1).validate()


def test_sampler_calls_settling_only_when_enabled():
    from interhandgen.models import DenoiserConfig, build_denoiser
    from interhandgen.diffusion import Schedule

    torch.manual_seed(0)
    net = build_denoiser(DenoiserConfig(hidden_dim=32, embed_dim=16, num_layers=2, skips=[1], num_heads=2, ff_dim=32,
                                        num_encoder_layers=1))
    mean, std = torch.zeros(2, 64), torch.ones(2, 64)
    calls = []

    def settle(a, o):
        calls.append(a.shape[0])
        return o + 1.0

    sched = Schedule.cosine(20)
    plain = cascaded_sample(net, sched, mean, std, 5, SamplerSettings(steps=4, apg_weight=0.0, settle_steps=0),
                            settle=settle, progress=False)
    assert calls == []
    settled = cascaded_sample(net, sched, mean, std, 5, SamplerSettings(steps=4, apg_weight=0.0), settle=settle,
                              progress=False)
    assert calls == [5]
    torch.testing.assert_close(settled[:, 1], plain[:, 1] + 1.0)
    torch.testing.assert_close(settled[:, 0], plain[:, 0])


def test_interpenetrating_flags_pushed_pairs_and_not_settled_ones(pairs):
    from interhandgen.generation import interpenetrating

    sa, so = SubsetHand(LEFT, 768), SubsetHand(RIGHT, 768)
    anchor, deep = _placed(pairs, -6.0)
    _, apart = _placed(pairs, 7.0)
    assert interpenetrating(anchor, deep, sa, so).all()
    assert not interpenetrating(anchor, apart, sa, so).any()
    # An estimate: next to concave regions it can flag a touching pair (it is then resampled needlessly).
    assert interpenetrating(anchor, _settle(anchor, deep), sa, so).sum() <= 1
    with pytest.raises(ValueError, match="depth_mm"):
        interpenetrating(anchor, deep, sa, so, depth_mm=0.0)


def test_sampler_resamples_rejected_partners_deterministically():
    from interhandgen.models import DenoiserConfig, build_denoiser
    from interhandgen.diffusion import Schedule

    torch.manual_seed(0)
    net = build_denoiser(DenoiserConfig(hidden_dim=32, embed_dim=16, num_layers=2, skips=[1], num_heads=2, ff_dim=32,
                                        num_encoder_layers=1))
    mean, std = torch.zeros(2, 64), torch.ones(2, 64)
    sched = Schedule.cosine(20)
    seen = []

    def reject(a, o):
        seen.append(o.shape[0])
        return torch.arange(o.shape[0]) % 2 == 0  # always reject the even rows

    base = SamplerSettings(steps=4, apg_weight=0.0, settle_steps=0, resample_rounds=0)
    plain = cascaded_sample(net, sched, mean, std, 6, base, reject=reject, progress=False)
    assert seen == []
    s = SamplerSettings(steps=4, apg_weight=0.0, settle_steps=0, resample_rounds=2)
    once = cascaded_sample(net, sched, mean, std, 6, s, reject=reject, progress=False)
    assert seen == [6, 3]  # round 1 judges the batch, round 2 only the 3 partners drawn again
    again = cascaded_sample(net, sched, mean, std, 6, s, reject=reject, progress=False)
    assert torch.equal(once, again)
    # Anchors and the accepted (odd) partners are untouched; the rejected ones were drawn again.
    assert torch.equal(once[:, 0], plain[:, 0]) and torch.equal(once[1::2, 1], plain[1::2, 1])
    assert not torch.isclose(once[0::2, 1], plain[0::2, 1]).all()
