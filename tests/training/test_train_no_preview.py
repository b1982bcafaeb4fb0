"""train.sample_every_epochs: 0 means no sample previews (it used to divide by zero after the first epoch)."""

from __future__ import annotations

import torch

from interhandgen.training import TrainConfig, train


def test_zero_sample_every_epochs_runs_without_previews(tmp_path):
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 2, 64, generator=g)
    x[:, 0, 55:] = 0.0
    calls = []
    model = {"preset": "small", "hidden_dim": 32, "embed_dim": 16, "num_layers": 2, "skips": [1], "num_heads": 2,
             "ff_dim": 32, "num_encoder_layers": 1}
    cfg = TrainConfig(epochs=2, batch_size=32, warmup_steps=1, sample_every_epochs=0)
    res = train(model, cfg, x, x[:16], torch.zeros(2, 64), torch.ones(2, 64), tmp_path / "run", progress=False,
                on_epoch_end=lambda *a: calls.append(a))
    assert res.status == "finished" and res.epoch == 2 and calls == []
    cfg1 = TrainConfig(epochs=2, batch_size=32, warmup_steps=1, sample_every_epochs=1)
    train(model, cfg1, x, x[:16], torch.zeros(2, 64), torch.ones(2, 64), tmp_path / "run1", progress=False,
          on_epoch_end=lambda net, epoch, step, out: calls.append(epoch))
    assert calls == [1, 2]
