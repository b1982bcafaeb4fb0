"""CPU thread policy: how many torch threads, and how idle OpenMP workers wait.

torch's CPU build runs its intra-op work on an OpenMP team (GNU libgomp in the x86-64 wheels). By default an idle
worker spins (busy-waits) before it sleeps, and every parallel region ends at a barrier that waits for all the
workers. When other programs keep the cores busy, a worker is often descheduled: the region then waits for the
OS to run it again while the spinning threads burn the time slices that the work needed. On the 2-core
development machine with two CPU-bound background programs this made ``interhandgen sample`` 9x slower with
torch's default two threads than with one (docs/threads.md has the measurements).

:func:`configure` chooses how idle workers wait, once, at start, from how busy the machine is at that moment
(:func:`runnable_others`: the other runnable tasks in ``/proc/loadavg``): when this process's threads would have to
share the CPUs with other running programs, ``OMP_WAIT_POLICY=PASSIVE`` (idle workers sleep at once); when there
are enough idle CPUs, a short spin (``GOMP_SPINCOUNT=10000``, about 30x shorter than libgomp's default) so that
the many small parallel regions of the sampler do not pay a sleep/wake-up each, while a machine that becomes
busy later still costs little. The wait policy does not change any result, only scheduling; the thread count
can (MKL splits some matrix products differently, docs/threads.md), so the default keeps torch's own thread
count and the outputs of earlier versions stay bit-identical.

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
import time

from interhandgen.exceptions import InputError

WAIT_POLICY_ENV = "OMP_WAIT_POLICY"
# Set by a user who tuned the OpenMP waiting themselves: then the wait policy is left alone. GOMP_SPINCOUNT is
# libgomp's (the x86-64 wheels), KMP_BLOCKTIME the LLVM/Intel runtime's (macOS and some conda builds).
USER_WAIT_ENVS = (WAIT_POLICY_ENV, "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
SPIN_ENV = "GOMP_SPINCOUNT"
DEFAULT_WAIT_POLICY = "AUTO"
# Spin iterations of an idle libgomp worker before it sleeps when the CPUs are free at start. libgomp's own
# default is 300,000 (the 9x cliff once other programs take the cores); 10,000 kept `sample` at its quiet-machine
# speed and cost 1.1-1.3x under two hogs, against 1.0-1.2x for PASSIVE (docs/threads.md).
QUIET_SPINCOUNT = "10000"
LOADAVG_PATH = "/proc/loadavg"


@dataclasses.dataclass(frozen=True)
class ThreadSettings:
    """What :func:`configure` did.

    threads: the torch intra-op thread count in effect afterwards (None when torch was not imported yet and no
        count was asked for: torch then chooses at import, honouring ``OMP_NUM_THREADS``).
    wait_policy: the ``OMP_WAIT_POLICY`` value in the environment afterwards (None when unset).
    spin_count: the ``GOMP_SPINCOUNT`` value in the environment afterwards (None when unset).
    wait_policy_effective: False when torch (and so its OpenMP runtime) was already loaded before the policy was
        set: it then applies to child processes only.
    """

    threads: int | None
    wait_policy: str | None
    wait_policy_effective: bool
    spin_count: str | None = None


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
        cpus = available_cpus()
    return max(1, cpus // local_world)


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def runnable_others(path: str = LOADAVG_PATH, reads: int = 5, interval_s: float = 0.002) -> int | None:
    """Tasks runnable on the machine right now besides this one, or None where the OS does not say.

    The fourth field of Linux's ``/proc/loadavg`` is ``runnable/total`` scheduling entities at the moment of
    reading, this process (which is running while it reads) included. Unlike the load averages it has no lag.
    The median of ``reads`` readings ``interval_s`` apart smooths out a task that runs for an instant.
    """
    counts = []
    for i in range(reads):
        try:
            with open(path) as f:
                field = f.read().split()[3]
            counts.append(int(field.split("/")[0]) - 1)
        except (OSError, IndexError, ValueError):
            return None  # not Linux, or a kernel that formats it otherwise: the caller takes the safe policy
        if i + 1 < reads:
            time.sleep(interval_s)
    counts.sort()
    return max(0, counts[len(counts) // 2])


def choose_wait(threads: int, cpus: int, others: int | None) -> dict[str, str]:
    """The OpenMP waiting environment for ``threads`` workers on ``cpus`` CPUs with ``others`` runnable tasks.

    Returns ``{"OMP_WAIT_POLICY": "PASSIVE"}`` when the workers would share CPUs with other running tasks (or
    when that is unknown: ``others`` None), else ``{"GOMP_SPINCOUNT": QUIET_SPINCOUNT}``. One thread has no
    team to wait for; it gets PASSIVE, which only matters for the processes it starts.
    """
    if others is None or threads <= 1 or others + threads > cpus:
        return {WAIT_POLICY_ENV: "PASSIVE"}
    return {SPIN_ENV: QUIET_SPINCOUNT}


def _planned_threads(threads: int | None) -> int:
    """The intra-op thread count torch will use: the asked one, ``OMP_NUM_THREADS``, or one per CPU."""
    if threads is not None:
        return threads
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "")))
    except ValueError:
        return available_cpus()


def configure(threads: int | None = None, wait_policy: str | None = DEFAULT_WAIT_POLICY,
              planned_threads: int | None = None) -> ThreadSettings:
    """Apply the thread policy to this process (and the processes it starts).

    Args:
        threads: torch intra-op threads; None: :func:`default_threads` (torch's own choice for one process).
        wait_policy: ``"AUTO"`` (:func:`choose_wait` from the machine's load at this moment), ``"PASSIVE"`` or
            ``"ACTIVE"`` (``OMP_WAIT_POLICY``), applied unless the user set one of ``OMP_WAIT_POLICY``,
            ``GOMP_SPINCOUNT`` or ``KMP_BLOCKTIME``; None leaves the environment alone.
        planned_threads: for AUTO when ``threads`` is None, the count that will be set later (the CLI reads
            ``--threads`` from the command line before torch loads); default: ``OMP_NUM_THREADS`` or one per CPU.

    Call it before the first ``import torch`` for the wait policy to take effect (see the module docstring); the
    thread count works at any time.
    """
    threads = validate_threads(threads)
    planned_threads = validate_threads(planned_threads, "planned_threads")
    if wait_policy is not None:
        if not isinstance(wait_policy, str) or wait_policy.upper() not in ("AUTO", "PASSIVE", "ACTIVE"):
            raise InputError(f"wait_policy must be 'AUTO', 'PASSIVE', 'ACTIVE' or None, got {wait_policy!r}")
    effective = "torch" not in sys.modules
    if threads is None:
        threads = default_threads()
    if wait_policy is not None and not any(os.environ.get(k) for k in USER_WAIT_ENVS):
        if wait_policy.upper() == "AUTO":
            count = _planned_threads(threads if threads is not None else planned_threads)
            os.environ.update(choose_wait(count, available_cpus(), runnable_others()))
        else:
            os.environ[WAIT_POLICY_ENV] = wait_policy.upper()
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    elif "torch" in sys.modules:
        threads = sys.modules["torch"].get_num_threads()
    return ThreadSettings(threads=threads, wait_policy=os.environ.get(WAIT_POLICY_ENV),
                          wait_policy_effective=effective, spin_count=os.environ.get(SPIN_ENV))
