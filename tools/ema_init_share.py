"""Rewrite a model file trained with an EMA that started from the random initial weights (``ema_warmup: false``) so
that its weights hold a chosen share of those initial weights.

With decay d and no warm-up the exported average after k steps is E = d^k W0 + (1 - d^k) T, where W0 are the
initial weights (``interhandgen.training.trainer.initial_network``, as the trainer makes them) and T the average
of the trained weights. This writes ``share W0 + (1 - share) T`` (``share`` = d^k gives the file back up to rounding):
the probe of docs/results_object.md, "What the fewer steps did: the initial weights in the average".

    python tools/ema_init_share.py runs/object_small/model.safetensors --share 0.165 --out mixed.safetensors
"""

from __future__ import annotations

import argparse
import json

from safetensors import safe_open
from safetensors.torch import save_file

from interhandgen.exceptions import InputError
from interhandgen.training.trainer import initial_network


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="model.safetensors written by interhandgen train")
    ap.add_argument("--share", type=float, required=True, help="share of the initial weights in [0, 1)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    if not 0.0 <= a.share < 1.0:
        raise InputError(f"--share must lie in [0, 1), got {a.share}")
    f = safe_open(a.model, "pt")
    meta = f.metadata()
    head = json.loads(meta["header"])
    prov = head.get("provenance", {})
    if "train_config" not in prov or "steps" not in prov:
        raise InputError(f"{a.model}: no training record (provenance.train_config, provenance.steps)")
    tc, steps = prov["train_config"], int(prov["steps"])
    if tc.get("ema_warmup", True):
        raise InputError(f"{a.model}: trained with the EMA warm-up, which forgets the initial weights; this applies "
                         "to ema_warmup: false only")
    kept = tc["ema_decay"] ** steps
    initial = {"net." + k: v for k, v in initial_network(head["model_config"], tc)[1].state_dict().items()}
    tensors = {k: f.get_tensor(k) for k in f.keys()}
    for k, v in tensors.items():
        if k in initial and v.is_floating_point():
            trained = (v.double() - kept * initial[k].double()) / (1.0 - kept)
            tensors[k] = (a.share * initial[k].double() + (1.0 - a.share) * trained).to(v.dtype)
    save_file(tensors, a.out, metadata=meta)
    print(f"{a.model}: {steps} steps, initial weights' share {kept:.4f} -> {a.share:.4f}; wrote {a.out}")


if __name__ == "__main__":
    main()
