"""Denoiser callables built from a conditional network: plain conditional / unconditional use and classifier-free
guidance (CFG) on a chosen subset of the output dimensions.

A network here is a module ``net(x_t [B, D], t [B] int64, cond [B, D], cond_mask [B] bool) -> x0_hat [B, D]``
(:class:`interhandgen.models.Denoiser`): ``cond_mask`` False means "no condition" (the network substitutes its null
condition). The callables returned follow the sampler's protocol ``denoiser(x_t, t, cond) -> x0_hat``.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import torch
from torch import nn
from interhandgen.exceptions import InputError

Dims = Union[None, slice, tuple, Sequence[int], torch.Tensor]


def dims_mask(dims: Dims, size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """A bool mask [size] of the selected dimensions.

    ``dims`` is None (all), a slice, a (start, stop) pair of the half-open range [start, stop), a sequence of
    indices, or a bool mask [size].
    """
    mask = torch.zeros(size, dtype=torch.bool)
    if dims is None:
        mask[:] = True
    elif isinstance(dims, slice):
        mask[dims] = True
    elif isinstance(dims, torch.Tensor) and dims.dtype == torch.bool:
        if dims.shape != (size,):
            raise InputError(f"dims as a bool mask must have shape [{size}], got {list(dims.shape)}")
        mask = dims.clone().cpu()
    elif isinstance(dims, tuple) and len(dims) == 2 and all(isinstance(v, int) for v in dims):
        start, stop = dims
        if not 0 <= start < stop <= size:
            raise InputError(f"dims (start, stop) must satisfy 0 <= start < stop <= {size}, got {dims}")
        mask[start:stop] = True
    else:
        idx = torch.as_tensor(list(dims) if not isinstance(dims, torch.Tensor) else dims, dtype=torch.int64)
        if idx.dim() != 1 or (idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= size)):
            raise InputError(f"dims must be indices in 0..{size - 1}, got {idx.tolist()}")
        mask[idx] = True
    if not mask.any():
        raise InputError(f"dims selects no dimension of {size}: {dims!r}")
    return mask.to(device)


def _check_cond(cond: torch.Tensor, x_t: torch.Tensor) -> None:
    if not isinstance(cond, torch.Tensor):
        raise TypeError(f"cond must be a tensor [B, D], got {type(cond).__name__}")
    if cond.shape != x_t.shape:
        raise InputError(f"cond must have the shape of x_t {list(x_t.shape)}, got {list(cond.shape)}")


def unconditional(network: nn.Module) -> Callable:
    """Denoiser that always uses the network's null condition (the anchor stage); ignores ``cond``."""

    def denoise(x_t: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        mask = torch.zeros(x_t.shape[0], dtype=torch.bool, device=x_t.device)
        return network(x_t, t, torch.zeros_like(x_t), mask)

    return denoise


def conditional(network: nn.Module) -> Callable:
    """Denoiser conditioned on ``cond`` [B, D] (the sampler's ``cond`` argument), without guidance."""

    def denoise(x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        _check_cond(cond, x_t)
        return network(x_t, t, cond, torch.ones(x_t.shape[0], dtype=torch.bool, device=x_t.device))

    return denoise


def classifier_free_guidance(network: nn.Module, scale: float, dims: Dims = None,
                             separate_forwards: Optional[bool] = None) -> Callable:
    """Denoiser with classifier-free guidance x0 = c + scale (c - u) on ``dims``, x0 = c elsewhere.

    c and u are the network's conditional and unconditional predictions. The reference guides only the last 9
    numbers (relative rotation and translation) with scale 0.1: ``classifier_free_guidance(net, 0.1, (55, 64))``.
    The condition is the sampler's ``cond`` argument [B, D].

    Args:
        separate_forwards: evaluate c and u in two forwards of B rows instead of ONE forward of 2B rows. Default:
            only for networks whose rows interact (``network.mixes_batch``, the reference-compatible attention over
            the batch), where a 2B batch would change every output and the reference's two calls are reproduced.
    """
    scale = float(scale)
    if scale < 0:
        raise InputError(f"scale must be >= 0, got {scale}")
    separate = bool(getattr(network, "mixes_batch", False)) if separate_forwards is None else bool(separate_forwards)

    def denoise(x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        _check_cond(cond, x_t)
        B = x_t.shape[0]
        on = torch.ones(B, dtype=torch.bool, device=x_t.device)
        if separate:
            c = network(x_t, t, cond, on)
            u = network(x_t, t, torch.zeros_like(cond), ~on)
        else:
            out = network(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([cond, torch.zeros_like(cond)]),
                          torch.cat([on, ~on]))
            c, u = out[:B], out[B:]
        guided = dims_mask(dims, x_t.shape[-1], x_t.device)
        return torch.where(guided, c + scale * (c - u), c)

    return denoise
