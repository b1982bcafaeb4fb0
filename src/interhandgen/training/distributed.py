"""torch.distributed helpers of the trainer (launch by torchrun: gloo on CPU, nccl on GPU)."""

from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist


def dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed_from_env(device: str) -> bool:
    """Initialise torch.distributed when launched by torchrun (WORLD_SIZE > 1). Returns True if it did."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or (dist.is_available() and dist.is_initialized()):
        return False
    backend = "nccl" if str(device).startswith("cuda") else "gloo"
    dist.init_process_group(backend=backend)
    if str(device).startswith("cuda"):
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return True


def exit_distributed(code: int = 0) -> None:
    """End a torchrun worker: wait for every rank, flush the output, and leave the process at once.

    Never returns. ``destroy_process_group`` and the interpreter's normal shutdown tear down gloo's threads, which now
    and then aborted a worker with "terminate called without an active exception" (seen in the 2-process CPU tests
    under load); once every rank has passed the barrier, nothing is left to communicate or to clean up, so the
    process ends with ``os._exit`` instead. Rank 0 has written its files before this point.
    """
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(int(code))
