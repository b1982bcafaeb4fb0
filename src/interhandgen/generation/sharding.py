"""Work shared among the processes of a torchrun launch, gathered on rank 0 through the rendezvous store only.

Sampling needs no collective communication: every rank computes its own batches and rank 0 writes one file.
So the results travel through torchrun's key-value store (the c10d ``TCPStore`` behind ``env://``) and no
process group is created. A gloo process group was used before; its teardown aborted a worker now and then
("terminate called without an active exception", about 1 launch in 17 on a loaded 2-core CPU), which a
store-only exchange cannot do: it starts no communication threads.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
from datetime import timedelta
from typing import Any

#: How long a rank waits for another rank's part (sampling on a slow CPU can take hours; a rank that fails
#: makes torchrun stop the others long before this).
WAIT = timedelta(hours=12)


@dataclasses.dataclass
class Shards:
    """This process's place in a launch: ``rank`` of ``world`` processes, and the store they share (None alone)."""

    rank: int
    world: int
    store: Any = None

    @classmethod
    def from_env(cls) -> Shards:
        """From torchrun's environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT); one process without it."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls(0, 1)
        import torch.distributed as dist

        store, rank, world = next(dist.rendezvous("env://", timeout=WAIT))
        restart = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        return cls(rank, world, dist.PrefixStore(f"interhandgen/shards/{restart}/", store))

    def mine(self, num_items: int) -> range:
        """Indices of the ``num_items`` work items (batches) this rank computes: every ``world``-th from ``rank``."""
        return range(self.rank, num_items, self.world)

    def gather(self, part: Any, key: str) -> list[Any] | None:
        """Every rank's ``part`` (picklable), in rank order, on rank 0; None on the other ranks."""
        if self.world == 1:
            return [part]
        if self.rank != 0:
            self.store.set(f"{key}/{self.rank}", pickle.dumps(part, protocol=pickle.HIGHEST_PROTOCOL))
            return None
        return [part] + [pickle.loads(self.store.get(f"{key}/{r}")) for r in range(1, self.world)]

    def finish(self, key: str) -> None:
        """Return on every rank only once rank 0 has called it: rank 0's work (writing the file) is done before
        any rank exits, and rank 0, which may host the store, exits last (it waits until all ranks have seen)."""
        if self.world == 1:
            return
        if self.rank == 0:
            self.store.set(f"{key}/done", b"1")
            self.store.wait([f"{key}/seen/{r}" for r in range(1, self.world)], WAIT)
        else:
            self.store.wait([f"{key}/done"], WAIT)
            self.store.set(f"{key}/seen/{self.rank}", b"1")
