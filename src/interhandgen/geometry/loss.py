"""Differentiable two-hand penetration penalty on the full meshes, for fitting and as a reference.

(Sampling-time anti-penetration guidance uses the cheaper :func:`interhandgen.generation.surface_penetration_loss`
on farthest-point surface subsets, with the depth below the nearest point's tangent plane: see docs/diffusion.md.)

Every vertex of one hand that lies inside the other (nearest vertex of the other hand + that vertex's
normal, as in the InterHandGen reference guidance) is penalised by a robust Geman-McClure function of its
distance to that nearest vertex; both directions are summed. The inside mask is piecewise constant, so
gradients flow through the distances to both vertex sets: each penetrating vertex is pulled towards the
surface it crossed and that surface towards it, which separates the hands.

Shapes: B batch, V/W vertices, F/G faces. Metres.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from interhandgen.geometry.mesh import check_pair, seal_torch
from interhandgen.geometry.queries import fast_inside
from interhandgen.exceptions import InputError

__all__ = ["geman_mcclure", "penetration_loss", "PenetrationLoss"]


def geman_mcclure(dist: torch.Tensor, rho: float) -> torch.Tensor:
    """Geman-McClure robust penalty ``rho^2 d^2 / (d^2 + rho^2)``: about ``d^2`` for d << rho, saturating at rho^2."""
    sq = dist * dist
    return rho * rho * sq / (sq + rho * rho)


def penetration_loss(
    verts_a: torch.Tensor,
    faces_a: Any,
    verts_b: torch.Tensor,
    faces_b: Any,
    rho: float = 0.05,
    reduction: str = "sum",
    both_directions: bool = True,
    vertex_stride: int = 1,
) -> torch.Tensor:
    """Robust penetration penalty per sample [B] (units m^2 before saturation), differentiable.

    Args:
        verts_a: [B, V, 3] and verts_b: [B, W, 3] in metres (any float dtype, any device; both require
            grad or not as the caller wishes).
        faces_a: [F, 3], faces_b: [G, 3]; open meshes are sealed (centroid caps) before the normal test so
            a vertex beyond MANO's wrist hole is not mistaken for an inside one.
        rho: Geman-McClure scale in metres (0.05 as in the reference guidance).
        reduction: "sum" over penetrating vertices, or "mean" (sum divided by the number of vertices tested).
        both_directions: also penalise vertices of a inside b (default); False penalises only b inside a,
            e.g. to push only the second (conditioned) hand out of the anchor.
        vertex_stride: k > 1 tests every k-th vertex against every k-th vertex of the other mesh (k^2 less
            work; the sum is scaled by k to estimate the full sum). For guidance, where speed matters more than
            the exact count of penetrating vertices; metrics use the exact functions. Strided index subsets are
            uneven and the vertex distance flags points just outside the other surface: this variant is not 0
            for hands a few centimetres apart (see :func:`interhandgen.generation.surface_penetration_loss`).
    Returns:
        [B] loss in the input dtype; 0 for a sample with no penetrating vertex.
    """
    verts_a, verts_b = check_pair(verts_a, verts_b)
    if not isinstance(rho, (int, float)) or not rho > 0:
        raise InputError(f"argument 'rho' must be a positive number of metres, got {rho!r}")
    if not isinstance(vertex_stride, int) or vertex_stride < 1:
        raise InputError(f"argument 'vertex_stride' must be a positive integer, got {vertex_stride!r}")
    if reduction not in ("sum", "mean"):
        raise InputError(f"argument 'reduction' must be 'sum' or 'mean', got {reduction!r}")
    sealed_a, fa = seal_torch(verts_a, faces_a, "faces_a")
    sealed_b, fb = seal_torch(verts_b, faces_b, "faces_b")

    def one_way(points: torch.Tensor, verts_sealed: torch.Tensor, faces_sealed: torch.Tensor) -> torch.Tensor:
        queries = points[:, ::vertex_stride]
        inside, dist = fast_inside(queries, verts_sealed, faces_sealed, target_stride=vertex_stride)
        penalty = torch.where(inside, geman_mcclure(dist, rho), torch.zeros_like(dist)).sum(dim=1)
        return penalty / queries.shape[1] if reduction == "mean" else penalty * vertex_stride

    loss = one_way(verts_b, sealed_a, fa)
    if both_directions:
        loss = loss + one_way(verts_a, sealed_b, fb)
    return loss


class PenetrationLoss(nn.Module):
    """Module wrapper of :func:`penetration_loss` holding the two faces arrays as buffers."""

    def __init__(self, faces_a: Any, faces_b: Any, rho: float = 0.05, reduction: str = "sum",
                 both_directions: bool = True) -> None:
        super().__init__()
        self.register_buffer("faces_a", torch.as_tensor(faces_a, dtype=torch.long), persistent=False)
        self.register_buffer("faces_b", torch.as_tensor(faces_b, dtype=torch.long), persistent=False)
        self.rho, self.reduction, self.both_directions = rho, reduction, both_directions

    def forward(self, verts_a: torch.Tensor, verts_b: torch.Tensor) -> torch.Tensor:
        return penetration_loss(verts_a, self.faces_a, verts_b, self.faces_b, self.rho, self.reduction,
                                self.both_directions)
