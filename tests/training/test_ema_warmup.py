"""EMA warm-up: the average against its closed form, and the trainer's use of it."""

import math

import pytest
import torch
from torch import nn

from interhandgen.training.config import TrainConfig
from interhandgen.training.ema import EMA, warmup_decay


def test_warmup_decay_values():
    assert warmup_decay(0.999, 0) == pytest.approx(0.1)
    assert warmup_decay(0.999, 10) == pytest.approx(11 / 20)
    assert warmup_decay(0.999, 10_000) == 0.999  # capped by the configured decay


@pytest.mark.parametrize("warmup", [False, True])
def test_share_of_the_initial_weights_is_the_product_of_decays(warmup):
    # Constant weights w after an initial w0: the shadow is w + (w0 - w) * prod_k decay_k.
    net = nn.Linear(3, 2)
    w0 = {k: v.clone() for k, v in net.state_dict().items()}
    ema = EMA(net, 0.999)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    steps = 1860
    for k in range(steps):
        ema.update(net, k if warmup else None)
    share = math.prod(warmup_decay(0.999, k) if warmup else 0.999 for k in range(steps))
    for name, v in net.state_dict().items():
        assert torch.allclose(ema.state_dict()[name], v + (w0[name] - v) * share, atol=2e-4)  # float32 over 1,860 updates
    # without warm-up 16% of the random start is left after 1,860 steps; with it, about 1e-4 of it
    assert share == pytest.approx(0.156, abs=0.001) if not warmup else share < 2e-3


def test_config_refuses_a_non_boolean_warmup():
    from interhandgen.exceptions import InputError

    with pytest.raises(InputError, match="ema_warmup"):
        TrainConfig(ema_warmup="yes").validate("cfg.yaml")
