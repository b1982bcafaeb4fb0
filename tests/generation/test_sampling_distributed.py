"""`interhandgen sample` under torchrun: the ranks share the batches and rank 0 writes the same file as one process."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import torch

from interhandgen.data.format import TwoHandSet
from interhandgen.training import TrainConfig, train

from fixtures.network import free_port

TINY = {"preset": "small", "hidden_dim": 64, "embed_dim": 32, "num_layers": 3, "skips": [1], "num_heads": 2,
        "ff_dim": 64, "num_encoder_layers": 1}





def test_two_process_sampling_equals_one_process(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 2, 64, generator=g)
    x[:, 0, 55:] = 0
    mean = torch.zeros(2, 64)
    mean[:, 55] = mean[:, 59] = 1.0
    std = torch.full((2, 64), 0.1)
    run = tmp_path / "run"
    train(TINY, TrainConfig(epochs=1, batch_size=32, warmup_steps=1, seed=0), x, None, mean, std, run, progress=False)
    # 7 pairs in batches of 2: four batches (the last one short), two per rank; APG on (the default weight).
    common = ["sample", "--num", "7", "--batch-size", "2", "--steps", "4", "--seed", "3", "--checkpoint", str(run),
              "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, "-m", "interhandgen", *common, "--out", str(tmp_path / "one.npz")],
                            capture_output=True, text=True, timeout=300, env=env)
    assert single.returncode == 0, single.stderr[-3000:]
    # torchrun's own parser would claim "--num" (a prefix of its --numa-binding): the arguments live in a launcher.
    launcher = tmp_path / "launch.py"
    launcher.write_text("import sys\nfrom interhandgen.cli import main\n"
                        f"sys.exit(main({[*common, '--out', str(tmp_path / 'two.npz')]!r}))\n")
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                          f"--master_port={free_port()}", str(launcher)], capture_output=True, text=True,
                         timeout=300, env=env)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert ddp.stdout.count("wrote 7 samples") == 1  # rank 0 alone writes
    one, two = TwoHandSet.load(tmp_path / "one.npz"), TwoHandSet.load(tmp_path / "two.npz")
    assert len(one) == len(two) == 7
    for side in ("left", "right"):
        for field in ("pose", "betas", "global_orient", "transl"):
            a, b = getattr(one.hand(side), field), getattr(two.hand(side), field)
            assert np.array_equal(a, b), (side, field, np.abs(a - b).max())
    assert not np.array_equal(one.right.transl[0], one.right.transl[2])  # the batches really differ
