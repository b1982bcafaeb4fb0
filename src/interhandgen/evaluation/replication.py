"""Replicated evaluation: a metric on R random subsets, with mean, standard deviation and a t confidence interval.

A metric computed once on one sample set is a random number; its spread over subsets shows how much of a
difference between two models is noise. :func:`replicate` draws R subsets of N samples from each feature set
(seeded), evaluates the metric on each, and reports

    mean = (1/R) sum_r m_r,   std = sqrt(sum_r (m_r - mean)^2 / (R - 1)),
    CI   = mean -/+ t_{(1+confidence)/2, R-1} * std / sqrt(R)      (Student t, R - 1 degrees of freedom).

What the interval covers: the expected metric value at subset size N (metrics such as FID are biased and
depend on N). It is a valid interval for that expectation under the population only when the replications
are independent, i.e. with ``disjoint=True`` (each sample used at most once over all replications, needs
R * N <= pool size). With overlapping subsets (``disjoint=False``, the default when the pool is small) the
replications are correlated through shared samples; the interval then describes the spread over subsets of
this pool and is too narrow for population claims.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np
import scipy.stats
import torch
from interhandgen.exceptions import InputError

__all__ = ["ReplicationResult", "replicate", "t_confidence_interval"]


@dataclasses.dataclass(frozen=True)
class ReplicationResult:
    """Summary of R replications of a metric."""

    mean: float
    std: float  # sample standard deviation (divisor R - 1)
    ci_low: float
    ci_high: float
    confidence: float
    num_replications: int
    subset_size: int
    disjoint: bool
    values: tuple[float, ...]

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["values"] = list(self.values)
        return out


def t_confidence_interval(values: Any, confidence: float = 0.95) -> tuple[float, float, float, float]:
    """Mean, sample std (divisor R - 1) and two-sided Student-t confidence interval of R >= 2 values.

    Returns (mean, std, ci_low, ci_high).
    """
    if not isinstance(confidence, (float, int)) or not 0.0 < float(confidence) < 1.0:
        raise InputError(f"argument 'confidence' must be in (0, 1), got {confidence!r}")
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1:
        raise InputError(f"argument 'values' must be one-dimensional, got shape {list(v.shape)}")
    if v.shape[0] < 2:
        raise InputError(f"argument 'values' needs at least 2 replications for a confidence interval, got {v.shape[0]}")
    if not np.isfinite(v).all():
        raise InputError("argument 'values' contains NaN or inf")
    r = v.shape[0]
    mean = float(v.mean())
    std = float(v.std(ddof=1))
    half = float(scipy.stats.t.ppf(0.5 + 0.5 * float(confidence), df=r - 1)) * std / np.sqrt(r)
    return mean, std, mean - half, mean + half


def _num_samples(x: Any, index: int) -> int:
    if not isinstance(x, (np.ndarray, torch.Tensor)):
        raise TypeError(f"feature set {index} must be a numpy array or torch tensor of shape [N, D], got {type(x).__name__}")
    if x.ndim < 1:
        raise InputError(f"feature set {index} must have a leading sample dimension, got a scalar")
    return int(x.shape[0])


def _take(x: Any, idx: np.ndarray) -> Any:
    if isinstance(x, torch.Tensor):
        return x[torch.from_numpy(idx).to(x.device)]
    return x[idx]


def replicate(
    metric: Callable[..., float],
    *feature_sets: Any,
    num_replications: int = 10,
    subset_size: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    disjoint: bool = False,
    progress: bool = False,
) -> ReplicationResult:
    """Evaluate ``metric(*subsets)`` on ``num_replications`` random subsets and summarise.

    Args:
        metric: a function of one or more feature arrays returning a float, e.g. ``fid``, ``diversity`` or
            ``functools.partial(kid, degree=1)``. Its own randomness (a ``seed`` argument) stays as given.
        *feature_sets: one or more arrays [N_i, ...] (numpy or torch); each replication draws ``subset_size``
            rows from each set, without replacement inside a subset, independently per set.
        num_replications: R >= 2.
        subset_size: N, rows per subset; must not exceed any set's size (and R * N with ``disjoint``).
        seed: seeds numpy's default_rng; the same seed gives the same subsets.
        confidence: two-sided confidence level of the t interval.
        disjoint: if True, the R subsets of each set are disjoint (independent replications).
        progress: show a tqdm bar over replications.
    Returns:
        A :class:`ReplicationResult`.
    """
    if not callable(metric):
        raise TypeError(f"argument 'metric' must be callable, got {type(metric).__name__}")
    if not feature_sets:
        raise InputError("replicate needs at least one feature set after 'metric'")
    if isinstance(num_replications, bool) or not isinstance(num_replications, (int, np.integer)) or num_replications < 2:
        raise InputError(f"argument 'num_replications' must be an integer >= 2, got {num_replications!r}")
    if isinstance(subset_size, bool) or not isinstance(subset_size, (int, np.integer)) or subset_size < 1:
        raise InputError(f"argument 'subset_size' must be a positive integer, got {subset_size!r}")
    sizes = [_num_samples(x, i) for i, x in enumerate(feature_sets)]
    needed = subset_size * num_replications if disjoint else subset_size
    for i, n in enumerate(sizes):
        if needed > n:
            what = "num_replications * subset_size" if disjoint else "subset_size"
            raise InputError(
                f"argument 'subset_size' too large: {what} = {needed} exceeds the {n} samples of feature set {i}"
            )
    rng = np.random.default_rng(seed)
    if disjoint:
        perms = [rng.permutation(n)[:needed].reshape(num_replications, subset_size) for n in sizes]
        index_sets = [[perm[r] for perm in perms] for r in range(num_replications)]
    else:
        index_sets = [[rng.choice(n, subset_size, replace=False) for n in sizes] for _ in range(num_replications)]
    iterator = index_sets
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(index_sets, desc="replications", unit="rep")
    values = []
    for indices in iterator:
        value = metric(*(_take(x, idx) for x, idx in zip(feature_sets, indices)))
        value = float(value)
        if not np.isfinite(value):
            raise InputError(f"metric returned a non-finite value ({value}) on replication {len(values)}")
        values.append(value)
    mean, std, low, high = t_confidence_interval(values, confidence)
    return ReplicationResult(
        mean=mean, std=std, ci_low=low, ci_high=high, confidence=float(confidence),
        num_replications=int(num_replications), subset_size=int(subset_size), disjoint=bool(disjoint),
        values=tuple(values),
    )
