"""CPU thread policy: how many torch threads, and how idle OpenMP workers wait.

torch's CPU build runs its intra-op work on an OpenMP team (GNU libgomp in the x86-64 wheels). By default an idle
worker spins (busy-waits) before it sleeps, and every parallel region ends at a barrier that waits for all the
workers. When other programs keep the cores busy, a worker is often descheduled: the region then waits for the
OS to run it again while the spinning threads burn the time slices that the work needed. On the 2-core
development machine with two CPU-bound background programs this made ``interhandgen sample`` 9x slower with
torch's default two threads than with one (docs/threads.md has the measurements).

:func:`configure` sets ``OMP_WAIT_POLICY=PASSIVE`` (idle workers sleep at once) and, optionally, the thread count.
The wait policy does not change any result, only scheduling; the thread count can (MKL splits some matrix
products differently, docs/threads.md), so the default keeps torch's own thread count and the outputs of earlier
versions stay bit-identical.

The wait policy is read by the OpenMP runtime when torch loads it, so :func:`configure` must run BEFORE the first
``import torch`` for it to take effect; this module therefore does not import torch at import time. The CLI calls
it first thing in ``main``. API users who want the same::

    import interhandgen.threads
    interhandgen.threads.configure()          # before anything imports torch
    from interhandgen.generation import InterHandGen   # (or any other module that imports torch)

Importing the library has no such side effect; only :func:`configure` changes the process.
"""

from __future__ import annotations

import dataclasses
import os
import sys

from interhandgen.exceptions import InputError

WAIT_POLICY_ENV = "OMP_WAIT_POLICY"
# Set by a user who tuned the OpenMP waiting themselves: then the wait policy is left alone. GOMP_SPINCOUNT is
# libgomp's (the x86-64 wheels), KMP_BLOCKTIME the LLVM/Intel runtime's (macOS and some conda builds).
USER_WAIT_ENVS = (WAIT_POLICY_ENV, "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
DEFAULT_WAIT_POLICY = "PASSIVE"


@dataclasses.dataclass(frozen=True)
class ThreadSettings:
    """What :func:`configure` did.

    threads: the torch intra-op thread count in effect afterwards (None when torch was not imported yet and no
        count was asked for: torch then chooses at import, honouring ``OMP_NUM_THREADS``).
    wait_policy: the ``OMP_WAIT_POLICY`` value in the environment afterwards (None when unset).
    wait_policy_effective: False when torch (and so its OpenMP runtime) was already loaded before the policy was
        set: it then applies to child processes only.
    """

    threads: int | None
    wait_policy: str | None
    wait_policy_effective: bool


def validate_threads(threads, name: str = "threads") -> int | None:
    """``threads`` as an int >= 1 (None stays None); anything else raises :class:`InputError` naming ``name``."""
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int):
        raise InputError(f"{name} must be a whole number >= 1, got {threads!r}")
    if threads < 1:
        raise InputError(f"{name} must be >= 1, got {threads}")
    return threads


def default_threads(environ: dict | None = None, cpus: int | None = None) -> int | None:
    """Thread count the policy chooses when none is asked for; None means "keep torch's own choice".

    torch's own choice (one thread per available CPU, or ``OMP_NUM_THREADS``) is kept for a single process, so
    the outputs do not change. Under a launcher that starts several processes on one machine (torchrun:
    ``LOCAL_WORLD_SIZE`` > 1) without ``OMP_NUM_THREADS``, each process gets its share of the CPUs (at least 1)
    instead of all of them. (torchrun itself sets ``OMP_NUM_THREADS=1`` when it starts more than one process.)
    """
    env = os.environ if environ is None else environ
    if env.get("OMP_NUM_THREADS"):
        return None
    try:
        local_world = int(env.get("LOCAL_WORLD_SIZE", "1"))
    except ValueError:
        raise InputError(f"LOCAL_WORLD_SIZE must be an integer, got {env.get('LOCAL_WORLD_SIZE')!r}") from None
    if local_world <= 1:
        return None
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cpus // local_world)


def configure(threads: int | None = None, wait_policy: str | None = DEFAULT_WAIT_POLICY) -> ThreadSettings:
    """Apply the thread policy to this process (and the processes it starts).

    Args:
        threads: torch intra-op threads; None: :func:`default_threads` (torch's own choice for one process).
        wait_policy: ``OMP_WAIT_POLICY`` to set unless the user set one of ``OMP_WAIT_POLICY``,
            ``GOMP_SPINCOUNT`` or ``KMP_BLOCKTIME``; None leaves the environment alone.

    Call it before the first ``import torch`` for the wait policy to take effect (see the module docstring); the
    thread count works at any time.
    """
    threads = validate_threads(threads)
    if wait_policy is not None:
        if wait_policy.upper() not in ("PASSIVE", "ACTIVE"):
            raise InputError(f"wait_policy must be 'PASSIVE', 'ACTIVE' or None, got {wait_policy!r}")
        if not any(os.environ.get(k) for k in USER_WAIT_ENVS):
            os.environ[WAIT_POLICY_ENV] = wait_policy.upper()
    effective = "torch" not in sys.modules
    if threads is None:
        threads = default_threads()
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    elif "torch" in sys.modules:
        threads = sys.modules["torch"].get_num_threads()
    return ThreadSettings(threads=threads, wait_policy=os.environ.get(WAIT_POLICY_ENV),
                          wait_policy_effective=effective)
