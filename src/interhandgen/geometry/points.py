"""Point-set primitives shared by the synthetic-data optimiser, the sampler's guidance and settling, and the
evaluation: squared-distance matrices, nearest neighbours both ways, row gathers, farthest-point sampling.

Shapes: B batch, N and M points per set, C channels. Pure batched functions; device and dtype follow the inputs.
"""

from __future__ import annotations

import torch
from interhandgen.exceptions import InputError


def check_points(points: torch.Tensor, name: str, batch: int | None = None) -> None:
    if not isinstance(points, torch.Tensor) or points.dim() != 3 or points.shape[2] != 3 or points.shape[1] < 1:
        raise InputError(f"{name} must be a tensor [B, N, 3] with N >= 1, got "
                         f"{list(points.shape) if isinstance(points, torch.Tensor) else type(points).__name__}")
    if batch is not None and points.shape[0] != batch:
        raise InputError(f"{name} has batch size {points.shape[0]}, expected {batch}")


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[B, N, M] squared distances between point sets [B, N, 3] and [B, M, 3], one fused matrix product
    (centred first: the error of |a|^2 + |b|^2 - 2 a.b grows with the coordinates' magnitude)."""
    c = a.mean(1, keepdim=True)
    a, b = a - c, b - c
    d2 = torch.baddbmm((b * b).sum(-1)[:, None, :], a, b.transpose(1, 2), alpha=-2.0)
    return d2.add_((a * a).sum(-1)[:, :, None])


#: Distance-matrix entries computed per block of samples (~1 MB in float32): a block stays in cache between the
#: matrix product and the reductions that read it, about 2x faster than one batch-wide matrix on CPU.
BLOCK_ELEMS = 1 << 18


def sample_blocks(batch: int, n: int, m: int) -> list[slice]:
    """Slices of the batch whose [block, n, m] distance matrices hold at most about ``BLOCK_ELEMS`` entries."""
    step = max(1, BLOCK_ELEMS // max(1, n * m))
    return [slice(b, b + step) for b in range(0, batch, step)]


def nearest_both_ways(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Nearest neighbours of two point sets a [B, N, 3], b [B, M, 3], blocked over samples: squared distance
    and index of the nearest b of every a ([B, N] each) and of the nearest a of every b ([B, M] each)."""
    outs = []
    for blk in sample_blocks(a.shape[0], a.shape[1], b.shape[1]):
        d2 = squared_distances(a[blk], b[blk])
        outs.append((*d2.min(dim=2), *d2.min(dim=1)))
    return tuple(torch.cat(x) for x in zip(*outs))


def min_squared_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[B] smallest squared distance between point sets a [B, N, 3] and b [B, M, 3], blocked over samples."""
    return torch.cat([squared_distances(a[blk], b[blk]).amin(dim=(1, 2))
                      for blk in sample_blocks(a.shape[0], a.shape[1], b.shape[1])])


@torch.no_grad()
def _augmented(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """([p, 1] for p as a query, [-2 p, |p|^2] for p as a target)."""
    return (torch.cat([p, torch.ones_like(p[..., :1])], dim=-1),
            torch.cat([-2.0 * p, (p * p).sum(-1, keepdim=True)], dim=-1))


def mutual_nearest(points_a: torch.Tensor, points_b: torch.Tensor, chunk_elems: int = 1 << 18,
                   both: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Nearest point of b for every point of a, and of a for every point of b (exact, Euclidean).

    Each direction ranks the squared distance minus its per-query constant, |q|^2 - 2 p.q, as ONE batched product
    of augmented coordinates, [p, 1] . [-2 q, |q|^2], whose rows are reduced along their contiguous axis; this is
    faster than one full distance matrix reduced along both axes. Coordinates are centred first so the rounding of
    the expanded form stays far below the point spacing.

    Args:
        points_a: [B, N, 3]; points_b: [B, M, 3] (same dtype and device).
        chunk_elems: the batch is processed in chunks of at most this many (a, b) pairs (cache-sized by default).
        both: False searches a -> b only (idx_ba is then None; idx_ab is the same).
    Returns:
        idx_ab [B, N] int64 (index into b) and idx_ba [B, M] int64 (index into a).
    """
    check_points(points_a, "points_a")
    check_points(points_b, "points_b", points_a.shape[0])
    B, N, M = points_a.shape[0], points_a.shape[1], points_b.shape[1]
    centre = points_b.mean(dim=1, keepdim=True)
    a, b = points_a - centre, points_b - centre
    (a_query, a_target), (b_query, b_target) = _augmented(a), _augmented(b)
    b_target_t, a_target_t = b_target.transpose(1, 2), a_target.transpose(1, 2)
    idx_ab = torch.empty(B, N, dtype=torch.int64, device=a.device)
    idx_ba = torch.empty(B, M, dtype=torch.int64, device=a.device) if both else None
    step = max(1, chunk_elems // (N * M))
    for s in range(0, B, step):
        rows = slice(s, s + step)
        # min(dim).indices = argmin (first minimum), about 2x faster on the CPU (torch 2.13).
        idx_ab[rows] = torch.bmm(a_query[rows], b_target_t[rows]).min(dim=2).indices
        if both:
            idx_ba[rows] = torch.bmm(b_query[rows], a_target_t[rows]).min(dim=2).indices
    return idx_ab, idx_ba


@torch.no_grad()
def nearest_squared_distances(points_a: torch.Tensor, points_b: torch.Tensor, chunk_elems: int = 1 << 21
                              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared distance of every point of a [B, N, 3] to its nearest point of b [B, M, 3] ([B, N]) and of every
    point of b to its nearest of a ([B, M]); values only.

    The ranking product of :func:`mutual_nearest` ([p, 1] . [-2 q, |q|^2], centred coordinates) reduced with a
    plain minimum, which skips the index search (about 2.5x faster than :func:`mutual_nearest` on the CPU), plus
    |p|^2; clamped at 0 (the expanded form can round below it). Its rounding is that of
    :func:`squared_distances`: about 1e-7 of the squared coordinates. Chunks of ``chunk_elems`` pairs (several
    rows of two hands' points; one row per chunk was a quarter slower for its per-chunk overhead).
    """
    check_points(points_a, "points_a")
    check_points(points_b, "points_b", points_a.shape[0])
    B, N, M = points_a.shape[0], points_a.shape[1], points_b.shape[1]
    centre = points_b.mean(dim=1, keepdim=True)
    a, b = points_a - centre, points_b - centre
    a2, b2 = (a * a).sum(-1), (b * b).sum(-1)
    a_query, b_query = torch.cat([a, torch.ones_like(a[..., :1])], -1), torch.cat([b, torch.ones_like(b[..., :1])], -1)
    a_target_t = torch.cat([-2.0 * a, a2[..., None]], -1).transpose(1, 2)
    b_target_t = torch.cat([-2.0 * b, b2[..., None]], -1).transpose(1, 2)
    d_ab = torch.empty(B, N, dtype=a.dtype, device=a.device)
    d_ba = torch.empty(B, M, dtype=a.dtype, device=a.device)
    step = max(1, chunk_elems // (N * M))
    for s in range(0, B, step):
        rows = slice(s, s + step)
        d_ab[rows] = torch.bmm(a_query[rows], b_target_t[rows]).amin(dim=2)
        d_ba[rows] = torch.bmm(b_query[rows], a_target_t[rows]).amin(dim=2)
    return (d_ab + a2).clamp_min_(0), (d_ba + b2).clamp_min_(0)


@torch.no_grad()
def nearest_within(points_a: torch.Tensor, points_b: torch.Tensor, d_ab: torch.Tensor, d_ba: torch.Tensor,
                   radius_sq: float, chunk: int = 64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Nearest neighbours both ways, searched only for the points whose nearest squared distance (``d_ab`` [B, N],
    ``d_ba`` [B, M], from :func:`nearest_squared_distances`) is below ``radius_sq``.

    Exact for those points: the nearest partner q of such a point p lies within the radius of p, hence of the
    other set, so it is itself one of the searched points; the search runs over each pair's points within the
    radius only (padded, per chunk of pairs of similar counts, with their next-nearest points, which cannot
    change a minimum that a searched point attains). Pairs with no point within the radius are not searched.

    Returns (idx_ab [B, N], within_a [B, N] bool, idx_ba [B, M], within_b [B, M] bool): the index is that of
    :func:`mutual_nearest` where ``within`` is True and 0 elsewhere.
    """
    within_a, within_b = d_ab < radius_sq, d_ba < radius_sq
    idx_ab = torch.zeros(d_ab.shape, dtype=torch.int64, device=d_ab.device)
    idx_ba = torch.zeros(d_ba.shape, dtype=torch.int64, device=d_ba.device)
    count_a, count_b = within_a.sum(1), within_b.sum(1)
    size = count_a * points_b.shape[1] + count_b  # sort key: pairs of similar sizes share a padded chunk
    busy = torch.nonzero(count_a + count_b > 0).squeeze(1)
    busy = busy[torch.argsort(size[busy], stable=True)]
    for s in range(0, busy.numel(), chunk):
        rows = busy[s:s + chunk]
        ka, kb = max(1, int(count_a[rows].max())), max(1, int(count_b[rows].max()))
        sel_a = d_ab[rows].topk(ka, dim=1, largest=False, sorted=False).indices
        sel_b = d_ba[rows].topk(kb, dim=1, largest=False, sorted=False).indices
        j_ab, j_ba = mutual_nearest(gather_rows(points_a[rows], sel_a), gather_rows(points_b[rows], sel_b))
        idx_ab[rows] = idx_ab[rows].scatter(1, sel_a, sel_b.gather(1, j_ab))
        idx_ba[rows] = idx_ba[rows].scatter(1, sel_b, sel_a.gather(1, j_ba))
    return idx_ab * within_a, within_a, idx_ba * within_b, within_b


def gather_rows_deterministic(values: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """values [B, M, C], idx [B, N] -> [B, N, C], as a 1-D gather: its backward has a deterministic CUDA
    implementation under :func:`interhandgen.generation.apg.deterministic_backward` (a gather along dim 1 of a 3-D tensor has none)."""
    B, M, C = values.shape
    flat = (idx + M * torch.arange(B, device=idx.device)[:, None])[..., None] * C + torch.arange(C, device=idx.device)
    return values.reshape(-1).gather(0, flat.reshape(-1)).view(B, idx.shape[1], C)


def pairwise_sq_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances [B, M, N] between a [B, M, 3] and b [B, N, 3], via |a|^2 + |b|^2 - 2 a.b."""
    return a.square().sum(-1, keepdim=True) - 2.0 * (a @ b.transpose(1, 2)) + b.square().sum(-1)[:, None, :]


def farthest_point_sample(points: torch.Tensor, num_samples: int, start_index: int = 0,
                          sq_dist: torch.Tensor | None = None) -> torch.Tensor:
    """Farthest-point sampling, batched.

    Args:
        points: [B, N, 3].
        num_samples: M <= N.
        start_index: the first sample of every cloud (fixed, so the result is deterministic).
        sq_dist: optional precomputed [B, N, N] squared distances of ``points`` (see :func:`pairwise_sq_distances`);
            each step then reads one row instead of recomputing N distances.
    Returns:
        [B, M] long indices; sample i+1 is the point farthest from samples 0..i (first index on ties).
    """
    b, n, _ = points.shape
    if not 1 <= num_samples <= n:
        raise InputError(f"argument 'num_samples' must be in [1, {n}], got {num_samples}")
    batch = torch.arange(b, device=points.device)
    chosen = torch.empty(b, num_samples, dtype=torch.long, device=points.device)
    current = torch.full((b,), start_index, dtype=torch.long, device=points.device)
    min_sq_dist = torch.full((b, n), float("inf"), dtype=points.dtype, device=points.device)
    for i in range(num_samples):
        chosen[:, i] = current
        if sq_dist is not None:
            row = sq_dist[batch, current]
        else:
            row = (points - points[batch, current][:, None, :]).square().sum(dim=-1)
        min_sq_dist = torch.minimum(min_sq_dist, row)
        current = min_sq_dist.max(dim=1).indices  # = argmax (first maximum), about 3x faster on the CPU
    return chosen


def knn_indices(queries: torch.Tensor, points: torch.Tensor, k: int) -> torch.Tensor:
    """Indices [B, M, k] of the k nearest points [B, N, 3] to each query [B, M, 3], nearest first."""
    return torch.topk(pairwise_sq_distances(queries, points), k, dim=-1, largest=False, sorted=True).indices


def gather_rows(values: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Batched row gather: values [B, N, C], indices [B, *S] (in [0, N)) -> [B, *S, C]."""
    b, n, c = values.shape
    offsets = torch.arange(b, device=values.device).view(b, *([1] * (indices.ndim - 1))) * n
    flat = (indices + offsets).reshape(-1)
    return values.reshape(b * n, c).index_select(0, flat).reshape(*indices.shape, c)


def farthest_point_indices(points: torch.Tensor, num: int, start: int = 0) -> torch.Tensor:
    """Greedy farthest-point sampling: ``num`` indices into ``points`` [N, 3], each the point farthest from those
    chosen before it (Euclidean), starting at index ``start``. Deterministic (ties go to the lowest index).

    Returns int64 [num] on the device of ``points``.
    """
    if not isinstance(points, torch.Tensor) or points.dim() != 2 or points.shape[1] != 3:
        raise InputError(f"points must be a tensor [N, 3], got "
                         f"{list(points.shape) if isinstance(points, torch.Tensor) else type(points).__name__}")
    n = points.shape[0]
    if isinstance(num, bool) or not isinstance(num, int) or not 1 <= num <= n:
        raise InputError(f"num must be an int in 1..{n} (the number of points), got {num!r}")
    if not 0 <= start < n:
        raise InputError(f"start must index a point (0..{n - 1}), got {start}")
    return farthest_point_sample(points.detach().to(torch.float64)[None], num, start)[0]
