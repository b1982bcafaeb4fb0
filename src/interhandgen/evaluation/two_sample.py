"""Classifier two-sample test (C2ST; Lopez-Paz & Oquab, ICLR 2017) on feature vectors.

A classifier is trained to tell generated samples (label 1) from reference pairs (label 0); if the two sets come
from the same distribution, no classifier can beat chance on held-out data, so the held-out accuracy is 0.5 in
expectation, and any systematic excess is evidence that the distributions differ (and by how much: 1.0 = the sets
are separable). The AUC of the held-out scores is reported beside it (insensitive to the decision threshold).

Protocol (all seeded, so the same inputs and seed give the same numbers):

- n = min(N_a, N_b, ``max_per_class``), rounded down to a multiple of K, samples are drawn without replacement
  from each set (balanced classes: chance is exactly 0.5; equal folds let the K classifiers train together in
  batched matmuls).
- Stratified K-fold cross-validation: each class is permuted and dealt round-robin into K folds; the classifier
  of fold k is trained on the other K - 1 folds and scores fold k, so every sample is scored exactly once by a
  classifier that never saw it.
- Features are standardised with the training folds' mean and standard deviation (a constant feature carries no
  information and is left at 0 instead of divided by 0).
- Classifier: a 2-hidden-layer ReLU MLP (``hidden`` units) trained with Adam on the logistic loss for a fixed
  number of epochs in minibatches; chosen over logistic regression because it also sees non-linear differences
  (a shifted variance or a mode imbalance), and over gradient boosting because it is a few lines of torch,
  deterministic with a seed, and fast on one CPU core (measured in docs/evaluation.md).

Reported: accuracy and AUC per fold, their mean with a 95% Student-t interval over the K folds, the pooled
held-out accuracy over all 2n scored samples with the one-sided exact binomial p-value of "accuracy > 0.5" and
the half-width of the 95% chance band (the binomial spread of the pooled accuracy of a chance-level classifier).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import scipy.stats
import torch

from interhandgen.evaluation.metrics import _as_feature_tensor, _check_same_dim
from interhandgen.evaluation.replication import t_confidence_interval
from interhandgen.exceptions import InputError

__all__ = ["C2STSettings", "classifier_two_sample_test", "mann_whitney_auc", "stratified_folds"]


@dataclasses.dataclass(frozen=True)
class C2STSettings:
    """Settings of :func:`classifier_two_sample_test` (defaults measured in docs/evaluation.md)."""

    folds: int = 5
    hidden: int = 64
    epochs: int = 10
    batch_size: int = 512
    lr: float = 2e-3
    weight_decay: float = 1e-4
    max_per_class: int | None = 10000
    seed: int = 0

    def validate(self) -> None:
        for name in ("folds", "hidden", "epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"C2ST setting '{name}' must be a positive integer, got {value!r}")
        if self.folds < 2:
            raise InputError(f"C2ST setting 'folds' must be >= 2 (held-out scoring needs a split), got {self.folds}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise InputError(f"C2ST setting 'lr' must be a positive number, got {self.lr!r}")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise InputError(f"C2ST setting 'weight_decay' must be >= 0, got {self.weight_decay!r}")
        if self.max_per_class is not None and self.max_per_class < self.folds:
            raise InputError(f"C2ST setting 'max_per_class' must be None or >= folds ({self.folds}), "
                             f"got {self.max_per_class}")


def mann_whitney_auc(scores: Any, labels: Any) -> float:
    """Area under the ROC curve of ``scores`` [N] for binary ``labels`` [N] (1 = positive), ties counted 1/2.

    AUC = P(s_pos > s_neg) + P(s_pos = s_neg) / 2 = (R_pos - n_pos (n_pos + 1) / 2) / (n_pos n_neg), with R_pos
    the sum of the positives' mid-ranks among all scores (the Mann-Whitney U statistic over n_pos n_neg).
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1)
    if s.shape != y.shape:
        raise InputError(f"scores and labels must have the same length, got {s.shape[0]} and {y.shape[0]}")
    if not np.isfinite(s).all():
        raise InputError("scores contain NaN or inf")
    if not np.isin(y, (0, 1)).all():
        raise InputError("labels must be 0 or 1")
    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        raise InputError(f"the AUC needs both classes, got {n_pos} positive(s) and {n_neg} negative(s)")
    ranks = scipy.stats.rankdata(s)  # mid-ranks for ties
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def stratified_folds(n_per_class: int, folds: int, rng: np.random.Generator) -> np.ndarray:
    """Fold index [2 n] of each sample of two classes of n (class 1 first, then class 0): each class permuted and
    dealt round-robin, so every fold holds floor or ceil of n / folds samples of each class."""
    out = np.empty(2 * n_per_class, dtype=np.int64)
    for c in range(2):
        perm = rng.permutation(n_per_class)
        out[c * n_per_class + perm] = np.arange(n_per_class) % folds
    return out


def _init_mlp(dims: list[int], folds: int, gen: torch.Generator, device, dtype) -> list[torch.Tensor]:
    """Per fold, weights [K, in, out] and biases [K, 1, out] per layer, uniform(-1/sqrt(in), 1/sqrt(in)) as
    torch.nn.Linear initialises them."""
    params = []
    for fan_in, fan_out in zip(dims[:-1], dims[1:]):
        bound = 1.0 / math.sqrt(fan_in)
        w = (torch.rand(folds, fan_in, fan_out, generator=gen, dtype=dtype) * 2 - 1) * bound
        b = (torch.rand(folds, 1, fan_out, generator=gen, dtype=dtype) * 2 - 1) * bound
        params += [w.to(device).requires_grad_(), b.to(device).requires_grad_()]
    return params


def _mlp_logits(params: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Logits [K, B] of the K fold MLPs ``params`` on x [K, B, D] (one batched matmul per layer for all folds)."""
    h = x
    for i in range(0, len(params) - 2, 2):
        h = torch.relu(torch.baddbmm(params[i + 1], h, params[i]))
    return torch.baddbmm(params[-1], h, params[-2])[..., 0]


def _train_and_score(x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor, settings: C2STSettings,
                     gen: torch.Generator) -> torch.Tensor:
    """Train one MLP per fold on (x_train [K, M, D], y_train [K, M] in {0, 1}) and return the held-out logits
    [K, T] of x_test [K, T, D].

    The K models train together (batched matmuls, one Adam over the stacked parameters): the loss is the sum of
    the per-fold mean losses, so each fold's gradient, and Adam's element-wise update, is that of its own model.
    """
    mu = x_train.mean(1, keepdim=True)
    sd = x_train.std(1, keepdim=True)
    sd = torch.where(sd > 0, sd, torch.ones_like(sd))  # a constant feature stays 0 (it carries no information)
    xt, xs = (x_train - mu) / sd, (x_test - mu) / sd
    k, m, d = xt.shape
    params = _init_mlp([d, settings.hidden, settings.hidden, 1], k, gen, xt.device, xt.dtype)
    opt = torch.optim.Adam(params, lr=settings.lr, weight_decay=settings.weight_decay)
    for _ in range(settings.epochs):
        order = torch.argsort(torch.rand(k, m, generator=gen), dim=1).to(xt.device)  # a permutation per fold
        for start in range(0, m, settings.batch_size):
            idx = order[:, start:start + settings.batch_size]
            xb = torch.gather(xt, 1, idx[..., None].expand(-1, -1, d))
            yb = torch.gather(y_train, 1, idx)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                _mlp_logits(params, xb), yb, reduction="none").mean(1).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    with torch.no_grad():
        return _mlp_logits(params, xs)


def classifier_two_sample_test(a: Any, b: Any, settings: C2STSettings | None = None,
                               device: torch.device | str | None = None) -> dict[str, Any]:
    """C2ST between feature sets a [N_a, D] (label 1, e.g. generated) and b [N_b, D] (label 0, e.g. reference).

    Returns a JSON-ready dict: ``accuracy`` and ``auc`` (mean, ci_low, ci_high over the folds, per-fold
    ``values``), ``pooled_accuracy``, ``p_value`` (one-sided exact binomial test of pooled accuracy > 0.5),
    ``chance_halfwidth_95`` (1.96 * 0.5 / sqrt(2 n)), ``n_per_class``, ``folds``, ``dim``.
    """
    settings = settings or C2STSettings()
    settings.validate()
    if device is None:
        device = a.device if isinstance(a, torch.Tensor) else "cpu"
    fa = _as_feature_tensor(a, "a", min_samples=settings.folds, dtype=torch.float32, device=device)
    fb = _as_feature_tensor(b, "b", min_samples=settings.folds, dtype=torch.float32, device=device)
    _check_same_dim(fa, fb, "a", "b")
    n = min(fa.shape[0], fb.shape[0], settings.max_per_class or max(fa.shape[0], fb.shape[0]))
    n -= n % settings.folds  # equal folds, so the K classifiers train together on equal-sized sets
    rng = np.random.default_rng(settings.seed)
    ia = torch.from_numpy(np.sort(rng.choice(fa.shape[0], n, replace=False))).to(fa.device)
    ib = torch.from_numpy(np.sort(rng.choice(fb.shape[0], n, replace=False))).to(fb.device)
    x = torch.cat([fa[ia], fb[ib]])
    y = torch.cat([torch.ones(n), torch.zeros(n)]).to(device=x.device, dtype=x.dtype)
    fold = stratified_folds(n, settings.folds, rng)
    # [K, T] held-out and [K, M] training indices of each fold, from the fold assignment.
    test_idx = np.stack([np.nonzero(fold == k)[0] for k in range(settings.folds)])
    train_idx = np.stack([np.nonzero(fold != k)[0] for k in range(settings.folds)])
    te, tr = (torch.from_numpy(i).to(x.device) for i in (test_idx, train_idx))
    gen = torch.Generator().manual_seed(settings.seed)
    logits = _train_and_score(x[tr], y[tr], x[te], settings, gen)
    s_np, y_np = logits.cpu().numpy(), y[te].cpu().numpy()
    accs = [float(((s_np[k] > 0) == (y_np[k] == 1)).mean()) for k in range(settings.folds)]
    aucs = [mann_whitney_auc(s_np[k], y_np[k]) for k in range(settings.folds)]
    correct = int(((s_np > 0) == (y_np == 1)).sum())
    out: dict[str, Any] = {}
    for name, values in (("accuracy", accs), ("auc", aucs)):
        mean, _, lo, hi = t_confidence_interval(values)
        out[name] = {"mean": mean, "ci_low": lo, "ci_high": hi, "values": values}
    out.update(pooled_accuracy=correct / (2 * n), p_value=float(scipy.stats.binom.sf(correct - 1, 2 * n, 0.5)),
               chance_halfwidth_95=1.96 * 0.5 / math.sqrt(2 * n), n_per_class=int(n), folds=settings.folds,
               dim=int(x.shape[1]))
    return out
