"""Anti-penetration guidance (APG): push the conditioned hand out of the anchor during sampling.

The penalty (:func:`surface_penetration_loss`) works on a fixed farthest-point subset of each hand's vertices with
their outward normals (:class:`interhandgen.generation.SubsetHand`; the sampler's default is 192 of the open hand's
2,718 vertices, about 1.2 cm apart). Every subset point of one hand is tested against its nearest subset point of the other hand, as in the
reference guidance (nearest vertex + normal test), but the penalty is a robust function of its depth below that
vertex's TANGENT PLANE, not of its distance to the vertex: the plane distance is 0 on the surface, so the penalty
is continuous where a point crosses the surface, it does not flag points that lie just outside between two
sparse subset points, and its gradient is the surface normal. One distance matrix per pair serves both directions.
Pairs whose bounding boxes (grown by a margin) do not overlap cannot penetrate: they get an exact 0 and skip the
nearest-point search.

At every guided reverse step the predicted clean sample x0_hat (standardised 64-vector of the other hand) takes a
Polyak step on the penalty L: x0 <- x0 - w_k L / |grad L|^2 grad L, which removes the fraction w_k of L to first
order whatever the scale of the penalty, of the statistics or of the units. The fractions follow the reference
schedule shape ``weight * decay**steps_left`` (small while the sample is still mostly noise, largest at the end);
only the last ``last_steps`` steps are guided. A step longer than ``max_step`` (standardised units) is shortened to
it: a trust region for the rare sample whose penalty has saturated (Geman-McClure) and whose gradient vanishes.
Batched over all samples: one subset skinning, one distance matrix and one backward per guided step, no
per-sample loop, CPU or GPU.

Optional (off by default; docs/guidance.md measures them): ``iters`` Polyak steps per guided reverse step, an
attraction term for pairs that are close but do not touch (:func:`contact_gap_loss`, sharing the nearest search
with the penetration term in :func:`penetration_and_contact_loss`), and the overlap of the hands' inscribed
spheres (:func:`sphere_overlap_loss`) for hands deep inside each other, where the nearest-point test fails.
"""

from __future__ import annotations

import contextlib

import torch

from interhandgen.geometry.loss import geman_mcclure
from interhandgen.geometry.points import check_points, gather_rows_deterministic, mutual_nearest
from interhandgen.data.canonical import canonical_vertices
from interhandgen.generation.settle import hand_spheres
from interhandgen.generation.subset import SubsetHand
from interhandgen.geometry.proxy import sphere_overlap_energy
from interhandgen.exceptions import InputError

__all__ = ["boxes_overlap", "surface_penetration_loss", "contact_gap_loss", "penetration_and_contact_loss",
           "sphere_overlap_loss", "PolyakGuidance", "AntiPenetrationGuidance"]


def boxes_overlap(points_a: torch.Tensor, points_b: torch.Tensor, margin: float = 0.0) -> torch.Tensor:
    """[B] bool: do the axis-aligned bounding boxes of points_a [B, N, 3] and points_b [B, M, 3], each grown by
    ``margin`` metres on every side, intersect?"""
    check_points(points_a, "points_a")
    check_points(points_b, "points_b", points_a.shape[0])
    if not margin >= 0:
        raise InputError(f"margin must be >= 0 metres, got {margin}")
    a, b = points_a.detach(), points_b.detach()
    lo = torch.maximum(a.amin(1), b.amin(1))
    hi = torch.minimum(a.amax(1), b.amax(1))
    return (lo <= hi + 2.0 * margin).all(dim=1)


@contextlib.contextmanager
def deterministic_backward(device: torch.device | str | None = None):
    """Run a backward pass with PyTorch's deterministic algorithms (restoring the previous setting after), so that
    gradients accumulated from a gather are summed in a fixed order on CUDA too (same seed, same samples).
    ``device`` of type cpu: nothing to do (the CPU kernels used here are deterministic; switching the global mode
    costs about 20 ms of CPU per call, measured with torch 2.13)."""
    if device is not None and torch.device(device).type == "cpu":
        yield
        return
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


def _check_surfaces(points_a: torch.Tensor, normals_a: torch.Tensor, points_b: torch.Tensor,
                    normals_b: torch.Tensor) -> int:
    """Check two sampled surfaces (points [B, N, 3] / [B, M, 3] with normals of the same shapes); returns B."""
    check_points(points_a, "points_a")
    check_points(points_b, "points_b", points_a.shape[0])
    if normals_a.shape != points_a.shape or normals_b.shape != points_b.shape:
        raise InputError(f"normals must match their points: normals_a {list(normals_a.shape)} vs "
                         f"{list(points_a.shape)}, normals_b {list(normals_b.shape)} vs {list(points_b.shape)}")
    return points_a.shape[0]


def surface_penetration_loss(
    points_a: torch.Tensor,
    normals_a: torch.Tensor,
    points_b: torch.Tensor,
    normals_b: torch.Tensor,
    rho: float = 0.05,
    margin: float | None = 0.005,
) -> torch.Tensor:
    """Robust two-way penetration penalty of two sampled hand surfaces, per pair [B] (m^2 before saturation).

    For every point p of a, with q its nearest point of b and n_q the unit outward normal there, the depth is
    max(0, -(p - q) . n_q) (below q's tangent plane) and the penalty Geman-McClure(depth, rho); likewise for the
    points of b against a; the sum over all points. It is 0 when no point lies below its nearest neighbour's
    tangent plane (separated hands), grows like depth^2 for shallow penetration and saturates at rho^2 per point.

    Differentiable w.r.t. both point sets (the nearest-point choice and the normals are held fixed): the gradient
    moves a penetrating point out along the normal it crossed, and that surface point back along it.

    Args:
        points_a, normals_a: [B, N, 3]; points_b, normals_b: [B, M, 3]; metres, unit normals pointing out.
        rho: Geman-McClure scale in metres.
        margin: pairs whose bounding boxes, grown by ``margin`` metres, do not overlap get exactly 0 without a
            nearest-point search (they cannot penetrate); None searches every pair.
    """
    B = _check_surfaces(points_a, normals_a, points_b, normals_b)
    if not isinstance(rho, (int, float)) or not rho > 0:
        raise InputError(f"rho must be a positive number of metres, got {rho!r}")
    loss = points_a.new_zeros(B)
    if margin is None:
        rows = torch.arange(B, device=points_a.device)
    else:
        rows = boxes_overlap(points_a, points_b, float(margin)).nonzero().squeeze(1)
        if rows.numel() == 0:
            return loss
    pa, pb = points_a[rows], points_b[rows]
    idx_ab, idx_ba = mutual_nearest(pa.detach(), pb.detach())
    return loss.index_add(0, rows, _penetration(pa, normals_a[rows], pb, normals_b[rows], idx_ab, idx_ba, rho))


def _penetration(pa: torch.Tensor, na: torch.Tensor, pb: torch.Tensor, nb: torch.Tensor, idx_ab: torch.Tensor,
                 idx_ba: torch.Tensor, rho: float) -> torch.Tensor:
    """[B] the penalty of :func:`surface_penetration_loss` given both ways' nearest indices."""
    na, nb = na.detach(), nb.detach()

    def one_way(p: torch.Tensor, q_all: torch.Tensor, n_all: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        signed = ((p - gather_rows_deterministic(q_all, idx)) * gather_rows_deterministic(n_all, idx)).sum(-1)
        return geman_mcclure(torch.relu(-signed), rho).sum(dim=1)

    return one_way(pa, pb, nb, idx_ab) + one_way(pb, pa, na, idx_ba)


def _contact(pa: torch.Tensor, pb: torch.Tensor, idx_ab: torch.Tensor, touch: float, attract: float) -> torch.Tensor:
    """[B] the penalty of :func:`contact_gap_loss` given the nearest point of b of every point of a: the closest
    pair is chosen without a graph; only its distance is differentiated."""
    with torch.no_grad():
        d2 = ((pa - gather_rows_deterministic(pb, idx_ab)) ** 2).sum(-1)
    i = d2.argmin(dim=1, keepdim=True)
    gap = (gather_rows_deterministic(pa, i) - gather_rows_deterministic(pb, idx_ab.gather(1, i))).norm(dim=-1)[:, 0]
    return gap_pull(gap, touch, attract)


def gap_pull(gap: torch.Tensor, touch: float, attract: float) -> torch.Tensor:
    """[B] the contact rule on gaps [B] (metres): (gap - touch)^2 where touch < gap < attract, else exactly 0;
    differentiable through ``gap``."""
    pull = torch.relu(gap - touch) * (gap.detach() < attract).to(gap.dtype)
    return pull * pull


def contact_gap_loss(points_a: torch.Tensor, points_b: torch.Tensor, touch: float = 0.001,
                     attract: float = 0.02) -> torch.Tensor:
    """Attraction of two sampled hand surfaces that are close but not touching, per pair [B] (m^2).

    With gap the smallest distance between a point of a [B, N, 3] and a point of b [B, M, 3] (metres), the penalty
    is (gap - touch)^2 for the pairs with touch < gap < attract and exactly 0 for the others: a pair already
    touching, or farther apart than ``attract`` (a sample that does not intend contact), is left alone; the rule
    of contact settling's touch term (:mod:`interhandgen.generation.settle`), applied to the predicted x0.
    Differentiable w.r.t. both point sets (through the closest point pair). Pairs whose bounding boxes, grown by
    attract / 2 on every side, do not overlap are farther apart than ``attract`` and skip the search.

    On sparse surface subsets the closest-point distance overstates the surface gap by up to half the spacing,
    so pulling it to ``touch`` can push the surfaces slightly into each other between the points; the guidance
    pairs this term with the penetration penalty, which pushes them back. (A gap measured as the height above
    the nearest point's tangent plane, tried as the alternative, understates the gap beside an edge: on 300
    bundled-model pairs it gave a contact rate of 0.35 against 0.76 with this distance; docs/guidance.md.)
    """
    check_points(points_a, "points_a")
    check_points(points_b, "points_b", points_a.shape[0])
    if not (isinstance(touch, (int, float)) and isinstance(attract, (int, float)) and 0 <= touch < attract):
        raise InputError(f"touch and attract must be metres with 0 <= touch < attract, got {touch!r}, {attract!r}")
    loss = points_a.new_zeros(points_a.shape[0])
    rows = boxes_overlap(points_a, points_b, 0.5 * float(attract)).nonzero().squeeze(1)
    if rows.numel() == 0:
        return loss
    pa, pb = points_a[rows], points_b[rows]
    idx_ab, _ = mutual_nearest(pa.detach(), pb.detach(), both=False)
    return loss.index_add(0, rows, _contact(pa, pb, idx_ab, float(touch), float(attract)))


def penetration_and_contact_loss(points_a: torch.Tensor, normals_a: torch.Tensor, points_b: torch.Tensor,
                                 normals_b: torch.Tensor, contact_weight: float, rho: float = 0.05,
                                 margin: float | None = 0.005, touch: float = 0.001,
                                 attract: float = 0.02) -> torch.Tensor:
    """[B] surface_penetration_loss(..., rho, margin) + contact_weight * contact_gap_loss(..., touch, attract), with
    ONE nearest-point search per pair for both terms (shapes and units as there; margin None: no prefilter)."""
    B = _check_surfaces(points_a, normals_a, points_b, normals_b)
    if not (0 <= touch < attract) or not (margin is None or margin >= 0) or not contact_weight >= 0:
        raise InputError(f"need 0 <= touch < attract, margin >= 0 and contact_weight >= 0; got {touch}, {attract}, "
                         f"{margin}, {contact_weight}")
    loss = points_a.new_zeros(B)
    if margin is None:
        rows = torch.arange(B, device=points_a.device)
    else:
        rows = boxes_overlap(points_a, points_b, max(float(margin), 0.5 * float(attract))).nonzero().squeeze(1)
        if rows.numel() == 0:
            return loss
    pa, pb = points_a[rows], points_b[rows]
    idx_ab, idx_ba = mutual_nearest(pa.detach(), pb.detach())
    pen = _penetration(pa, normals_a[rows], pb, normals_b[rows], idx_ab, idx_ba, rho)
    if margin is not None:
        # The penetration term keeps its own prefilter: exactly 0 where the boxes grown by margin do not overlap.
        pen = torch.where(boxes_overlap(pa, pb, float(margin)), pen, torch.zeros_like(pen))
    return loss.index_add(0, rows, pen + contact_weight * _contact(pa, pb, idx_ab, float(touch), float(attract)))


def sphere_overlap_loss(centres_a: torch.Tensor, radii_a: torch.Tensor, centres_b: torch.Tensor,
                        radii_b: torch.Tensor) -> torch.Tensor:
    """[B] sum over every pair of spheres of the squared overlap relu(r_a + r_b - |c_a - c_b|)^2 (m^2), for the
    hands' inscribed-sphere proxies (centres [B, S, 3], radii [B, S]; :func:`interhandgen.generation.settle.hand_spheres`).
    Unlike the nearest-point test it sees hands deep inside each other (settling's proxy term, on x0)."""
    check_points(centres_a, "centres_a")
    check_points(centres_b, "centres_b", centres_a.shape[0])
    if radii_a.shape != centres_a.shape[:2] or radii_b.shape != centres_b.shape[:2]:
        raise InputError(f"radii must be [B, S] beside their centres: {list(radii_a.shape)} vs "
                         f"{list(centres_a.shape)}, {list(radii_b.shape)} vs {list(centres_b.shape)}")
    return sphere_overlap_energy(centres_a, radii_a, centres_b, radii_b)


class PolyakGuidance:
    """The guided x0 step shared by the guidance hooks: subclasses define ``loss(x_std) -> [B]``; at guided step k
    (fraction ``weight * decay**steps_left`` on the last ``last_steps`` steps) x0 takes the Polyak step
    x0 - w L / |grad L|^2 grad L, shortened to ``max_step`` (see the module docstring)."""

    weight: float
    decay: float
    num_steps: int
    last_steps: int | None
    max_step: float
    calls: int
    guided_calls: int
    iters: int = 1  # Polyak steps per guided reverse step (nearest points searched again before each)

    def loss(self, x_std: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def prepare(self, x0_hat: torch.Tensor) -> None:
        """Called once per guided reverse step before its Polyak steps (nothing by default)."""

    def step_weight(self, step_index: int) -> float:
        steps_left = self.num_steps - 1 - step_index
        if self.last_steps is not None and steps_left >= self.last_steps:
            return 0.0
        return self.weight * self.decay ** steps_left

    def __call__(self, x0_hat: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, step_index: int) -> torch.Tensor:
        self.calls += 1
        w = self.step_weight(step_index)
        if w == 0.0:
            return x0_hat
        self.guided_calls += 1
        self.prepare(x0_hat)
        with deterministic_backward(x0_hat.device):
            for _ in range(self.iters):
                x0_hat = self._polyak_step(x0_hat, w)
        return x0_hat

    def _polyak_step(self, x0_hat: torch.Tensor, w: float) -> torch.Tensor:
        """One Polyak step of fraction ``w`` on :meth:`loss` from x0_hat [B, D], shortened to ``max_step``."""
        with torch.enable_grad():
            x = x0_hat.detach().requires_grad_(True)
            loss = self.loss(x)
            # No pair near: the loss is a constant 0 without a graph, and so is its gradient.
            if loss.requires_grad:
                grad = torch.autograd.grad(loss.sum(), x)[0]
            else:
                grad = torch.zeros_like(x)
        loss = loss.detach()
        grad_sq = (grad * grad).sum(dim=1)
        active = (loss > 0) & (grad_sq > 0)
        scale = torch.where(active, w * loss / torch.where(active, grad_sq, torch.ones_like(grad_sq)),
                            torch.zeros_like(loss))
        step = scale[:, None] * grad
        length = step.norm(dim=1, keepdim=True)
        step = step * torch.clamp(self.max_step / torch.where(length > 0, length, torch.ones_like(length)), max=1.0)
        return x0_hat - step


class AntiPenetrationGuidance(PolyakGuidance):
    """An ``x0_guidance`` hook for :func:`interhandgen.diffusion.ddim_sample` (see the module docstring).

    Args:
        anchor_points, anchor_normals: [B, N, 3] the anchor's subset surface in the canonical frame (fixed).
        other: :class:`SubsetHand` of the conditioned hand.
        mean, std: [64] statistics that standardise the conditioned hand's vector.
        weight: first-order fraction of the penalty removed by the last guided step (0 disables; at most 2,
            where the linearised penalty would reach 0 for a loss linear in the step).
        num_steps: number of reverse steps of the sampler (for the schedule).
        decay: the fraction at ``k`` steps before the last is ``weight * decay**k``.
        last_steps: guide only the last this many steps (None: all).
        rho: Geman-McClure scale in metres; margin: bounding-box prefilter in metres (see
            :func:`surface_penetration_loss`).
        max_step: longest step in standardised units (trust region).
        contact_weight: weight of the attraction term :func:`contact_gap_loss` beside the penetration penalty
            (0: penetration only, the paper's APG); touch, attract: its distances in metres.
        iters: Polyak steps per guided reverse step.
        proxy_weight: weight of :func:`sphere_overlap_loss` of the hands' inscribed spheres (deep overlaps; 0: off),
            on the pairs whose spheres overlap at the start of the guided step (:meth:`prepare`); anchor_spheres:
            the anchors' (centres [B, S, 3], radii [B, S]), required when proxy_weight > 0 (:meth:`from_anchors`
            computes them).
    """

    def __init__(self, anchor_points: torch.Tensor, anchor_normals: torch.Tensor, other: SubsetHand,
                 mean: torch.Tensor, std: torch.Tensor, weight: float, num_steps: int, decay: float = 0.9,
                 last_steps: int | None = 3, rho: float = 0.05, margin: float | None = 0.005,
                 max_step: float = 1.0, contact_weight: float = 0.0, touch: float = 0.001, attract: float = 0.02,
                 iters: int = 1, proxy_weight: float = 0.0,
                 anchor_spheres: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        if not isinstance(other, SubsetHand):
            raise TypeError(f"other must be a SubsetHand, got {type(other).__name__}")
        check_points(anchor_points, "anchor_points")
        if anchor_normals.shape != anchor_points.shape:
            raise InputError(f"anchor_normals {list(anchor_normals.shape)} must match anchor_points "
                             f"{list(anchor_points.shape)}")
        if not 0 <= weight <= 2:
            raise InputError(f"apg weight must lie in [0, 2], got {weight}")
        if not 0 < decay <= 1:
            raise InputError(f"apg decay must lie in (0, 1], got {decay}")
        if last_steps is not None and last_steps < 1:
            raise InputError(f"apg last_steps must be >= 1 or None, got {last_steps}")
        if not max_step > 0:
            raise InputError(f"apg max_step must be > 0, got {max_step}")
        if tuple(mean.shape) != (64,) or tuple(std.shape) != (64,):
            raise InputError(f"mean and std must have shape [64], got {list(mean.shape)} and {list(std.shape)}")
        if not contact_weight >= 0 or not 0 <= touch < attract:
            raise InputError(f"contact_weight must be >= 0 and 0 <= touch < attract (metres), got {contact_weight}, "
                             f"{touch}, {attract}")
        if isinstance(iters, bool) or not isinstance(iters, int) or iters < 1:
            raise InputError(f"apg iters must be an int >= 1, got {iters!r}")
        if not proxy_weight >= 0 or (proxy_weight > 0 and anchor_spheres is None):
            raise InputError(f"proxy_weight must be >= 0 (got {proxy_weight}) and needs anchor_spheres when > 0")
        self.proxy_weight = float(proxy_weight)
        self._proxy_rows = anchor_points.new_zeros(0, dtype=torch.long)
        self.anchor_spheres = None if anchor_spheres is None else tuple(t.detach() for t in anchor_spheres)
        self.contact_weight, self.touch, self.attract = float(contact_weight), float(touch), float(attract)
        self.iters = iters
        self.anchor_points, self.anchor_normals = anchor_points.detach(), anchor_normals.detach()
        self.other = other
        self.mean, self.std = mean, std
        self.weight, self.decay, self.num_steps = float(weight), float(decay), int(num_steps)
        self.last_steps = last_steps
        self.rho, self.margin, self.max_step = float(rho), margin, float(max_step)
        self.calls = 0
        self.guided_calls = 0

    @classmethod
    def from_anchors(cls, anchor_raw: torch.Tensor, anchor: SubsetHand, other: SubsetHand, mean: torch.Tensor,
                     std: torch.Tensor, **kwargs) -> "AntiPenetrationGuidance":
        """Build the hook for a batch of raw canonical anchor vectors [B, 64]."""
        with torch.no_grad():
            points, normals = anchor(anchor_raw)
            if kwargs.get("proxy_weight", 0.0) > 0:
                kwargs["anchor_spheres"] = hand_spheres(anchor, anchor_raw)
        return cls(points, normals, other, mean, std, **kwargs)

    def prepare(self, x0_hat: torch.Tensor) -> None:
        """The sphere term's rows for this guided step: the pairs whose inscribed spheres overlap at its x0
        (few: the spheres lie inside the surfaces, so touching hands have none)."""
        self._proxy_rows = x0_hat.new_zeros(0, dtype=torch.long)
        if self.proxy_weight == 0:
            return
        with torch.no_grad():
            x_raw = x0_hat * self.std + self.mean
            rows = boxes_overlap(self.anchor_points, self.other(x_raw)[0]).nonzero().squeeze(1)
            # A screen with the uncapped radii (no full mesh; never smaller) first, the capped test on its hits.
            for capped in (False, True):
                if rows.numel() == 0:
                    break
                centres, radii = hand_spheres(self.other, x_raw[rows], capped=capped)
                hit = sphere_overlap_loss(self.anchor_spheres[0][rows], self.anchor_spheres[1][rows], centres, radii)
                rows = rows[hit > 0]
            self._proxy_rows = rows

    def loss(self, x_std: torch.Tensor) -> torch.Tensor:
        """The penalty [B] of standardised other-hand vectors [B, 64] against the anchors."""
        x_raw = x_std * self.std + self.mean
        points, normals = self.other(x_raw)
        if self.contact_weight > 0:
            loss = penetration_and_contact_loss(self.anchor_points, self.anchor_normals, points, normals,
                                                self.contact_weight, rho=self.rho, margin=self.margin,
                                                touch=self.touch, attract=self.attract)
        else:
            loss = surface_penetration_loss(self.anchor_points, self.anchor_normals, points, normals, rho=self.rho,
                                            margin=self.margin)
        if self.proxy_weight > 0:
            rows = self._proxy_rows
            if rows.numel():
                centres, radii = hand_spheres(self.other, x_raw[rows])
                # The radii (capped by the posed mesh) are held fixed; the centres carry the gradient.
                overlap = sphere_overlap_loss(self.anchor_spheres[0][rows], self.anchor_spheres[1][rows], centres,
                                              radii.detach())
                loss = loss.index_add(0, rows, self.proxy_weight * overlap)
        return loss
