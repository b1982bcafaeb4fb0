"""Classifier-free guidance and the plain conditional/unconditional wrappers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from interhandgen.diffusion import Schedule, classifier_free_guidance, conditional, ddim_sample, dims_mask, unconditional
from interhandgen.models import DenoiserConfig, build_denoiser


class RecordingNet(nn.Module):
    """c = x + cond, u = x - 1 (row-wise), and a log of every call's batch size."""

    def __init__(self):
        super().__init__()
        self.batch_sizes = []

    def forward(self, x, t, cond, mask):
        self.batch_sizes.append(x.shape[0])
        return torch.where(mask[:, None], x + cond, x - 1.0)


def test_cfg_formula_on_selected_dims_in_one_forward():
    net = RecordingNet()
    g = torch.Generator().manual_seed(0)
    x, cond = torch.randn(5, 64, generator=g), torch.randn(5, 64, generator=g)
    t = torch.full((5,), 7)
    out = classifier_free_guidance(net, 0.1, (55, 64))(x, t, cond)
    c, u = x + cond, x - 1.0
    want = c.clone()
    want[:, 55:] = c[:, 55:] + 0.1 * (c[:, 55:] - u[:, 55:])
    torch.testing.assert_close(out, want)
    assert net.batch_sizes == [10]  # cond and uncond in ONE batched forward
    net.batch_sizes.clear()
    classifier_free_guidance(net, 0.1, (55, 64), separate_forwards=True)(x, t, cond)
    assert net.batch_sizes == [5, 5]
    all_dims = classifier_free_guidance(RecordingNet(), 2.0)(x, t, cond)
    torch.testing.assert_close(all_dims, c + 2.0 * (c - u))


def test_batched_cfg_equals_two_forwards_for_a_batch_independent_net():
    torch.manual_seed(0)
    net = build_denoiser(DenoiserConfig.small()).eval()
    g = torch.Generator().manual_seed(1)
    x, cond = torch.randn(6, 64, generator=g), torch.randn(6, 64, generator=g)
    t = torch.full((6,), 40)
    with torch.no_grad():
        joint = classifier_free_guidance(net, 0.5, [60, 61, 62])(x, t, cond)
        split = classifier_free_guidance(net, 0.5, [60, 61, 62], separate_forwards=True)(x, t, cond)
        c = conditional(net)(x, t, cond)
        u = unconditional(net)(x, t, None)
    torch.testing.assert_close(joint, split, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(joint[:, :60], c[:, :60], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(joint[:, 60:63], c[:, 60:63] + 0.5 * (c[:, 60:63] - u[:, 60:63]), rtol=1e-5,
                               atol=1e-5)


def test_cfg_plugs_into_the_sampler():
    torch.manual_seed(0)
    net = build_denoiser(DenoiserConfig(hidden_dim=32, embed_dim=16, num_layers=3, skips=(1,), num_heads=2,
                                        ff_dim=16, dropout=0.0)).eval()
    noise = torch.randn(4, 64, generator=torch.Generator().manual_seed(2))
    cond = torch.randn(4, 64, generator=torch.Generator().manual_seed(3))
    s = Schedule.linear()
    guided = ddim_sample(classifier_free_guidance(net, 0.1, (55, 64)), noise, s, 6, cond=cond)
    plain = ddim_sample(conditional(net), noise, s, 6, cond=cond)
    assert guided.shape == (4, 64)
    assert (guided[:, 55:] - plain[:, 55:]).abs().max() > 0
    zero_scale = ddim_sample(classifier_free_guidance(net, 0.0, (55, 64)), noise, s, 6, cond=cond)
    torch.testing.assert_close(zero_scale, plain, rtol=1e-5, atol=1e-6)


def test_dims_and_errors():
    assert dims_mask((55, 64), 64).sum() == 9 and dims_mask((55, 64), 64)[55:].all()
    assert dims_mask(slice(-9, None), 64).equal(dims_mask((55, 64), 64))
    assert dims_mask(None, 3).all()
    with pytest.raises(ValueError, match="start < stop"):
        dims_mask((10, 5), 64)
    with pytest.raises(ValueError, match="indices in 0..63"):
        dims_mask([3, 64], 64)
    with pytest.raises(ValueError, match="selects no dimension"):
        dims_mask([], 64)
    with pytest.raises(ValueError, match="scale must be >= 0"):
        classifier_free_guidance(RecordingNet(), -1.0)
    with pytest.raises(TypeError, match="cond must be a tensor"):
        classifier_free_guidance(RecordingNet(), 1.0)(torch.zeros(2, 64), torch.zeros(2, dtype=torch.int64), None)
