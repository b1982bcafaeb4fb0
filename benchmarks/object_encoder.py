"""Which object encoder: PointNet or basis point set (BPS)? Same data, same steps, same seeds; validation loss.

Trains the ``shared_object`` model of ``configs/object_small.yaml`` once per encoder type for ``--steps`` steps on
the 'train' split of a hand-object set (mirror-augmented) and reports, on the held-out pairs (validation + test
splits), the diffusion loss of the EMA weights with FIXED noise, timesteps and rotations (both stages; the
anchor's pose in the object frame included) with the object token and with the null object token: the gap is
what the object tells the model. Also the encoder's parameters and the training seconds (disturbed by other load
on a shared machine; both encoders train in the same run).

    python benchmarks/object_encoder.py --data obj.npz --steps 600 --out benchmarks/results/object_encoder.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import torch
import yaml

from interhandgen._atomic import atomic_write_bytes
from interhandgen.data.canonical import Standardizer
from interhandgen.data.format import TwoHandSet, concatenate
from interhandgen.diffusion import Schedule
from interhandgen.models.object_loss import object_diffusion_loss
from interhandgen.models.artifact import read_model
from interhandgen.models.artifact import build_network
from interhandgen.objects.frame import object_frame_training_arrays
from interhandgen.training import TrainConfig, train

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "object_small.yaml"


@torch.no_grad()
def held_out_loss(net, x, points, stats, train_cfg, drop: float, seed: int = 123) -> dict[str, float]:
    """Mean (total, anchor, partner) loss over 8 repeats of fixed noise, timesteps and rotations. Without the object
    the anchor's 9 frame numbers are canonical and carry no loss, so only the partner part compares across the
    two."""
    sched = Schedule.from_config(train_cfg.to_dict())
    cfg = dataclasses.replace(train_cfg, cond_drop_prob=None)
    sums = torch.zeros(3, dtype=torch.float64)
    reps = 8  # repeats with other noise / timesteps / rotations, for a less noisy figure on a small split
    for r in range(reps):
        gen = torch.Generator().manual_seed(seed + r)
        parts = object_diffusion_loss(net, x, sched, cfg, gen, points=points, stats=stats, object_drop_prob=drop,
                                      rotate_z=True)
        sums += torch.tensor([float(v) for v in parts], dtype=torch.float64)
    return dict(zip(("total", "anchor", "partner"), (sums / reps).tolist()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--out", required=True)
    ap.add_argument("--types", default="pointnet,bps")
    args = ap.parse_args()
    doc = yaml.safe_load(CONFIG.read_text())
    data = TwoHandSet.load(args.data)
    models = data.hand_models()
    train_x, train_p = object_frame_training_arrays(data, "train", True, models)
    held = concatenate([data.select_split("validation"), data.select_split("test")])
    val_x, val_p = object_frame_training_arrays(held, None, False, models)
    std = Standardizer.fit(train_x)
    stats = (std.mean.float(), std.std.float())
    results = {"data": args.data, "train_rows": int(train_x.shape[0]), "held_out_pairs": int(val_x.shape[0]),
               "steps": args.steps, "encoders": {}}
    for kind in args.types.split(","):
        model_cfg = dict(doc["model"])
        model_cfg["object_encoder"] = {**model_cfg["object_encoder"], "type": kind}
        tcfg = TrainConfig.from_dict({**doc["train"], "sample_every_epochs": 100000, "checkpoint_every": 100000})
        steps_per_epoch = train_x.shape[0] // tcfg.batch_size
        tcfg = dataclasses.replace(tcfg, epochs=-(-args.steps // steps_per_epoch))
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.time()
            train(model_cfg, tcfg, std.transform(train_x).float(), None, *stats, Path(tmp) / "run", progress=False,
                  train_points=train_p, max_steps=args.steps)
            seconds = time.time() - t0
            net = build_network(read_model(Path(tmp) / "run" / "checkpoint.pt"))
        zx = std.transform(val_x).float()
        with_obj = held_out_loss(net, zx, val_p, stats, tcfg, 0.0)
        without = held_out_loss(net, zx, val_p, stats, tcfg, 1.0)
        results["encoders"][kind] = {
            "held_out_loss_with_object": with_obj, "held_out_loss_null_object": without,
            "encoder_parameters": sum(p.numel() for p in net.encoder.parameters()),
            "train_seconds": seconds}
        print(kind, results["encoders"][kind], flush=True)
    atomic_write_bytes(args.out, (json.dumps(results, indent=2) + "\n").encode())


if __name__ == "__main__":
    main()
