"""The x0-predicting denoiser shared by both stages of the cascade (anchor: no condition; other hand: conditioned
on the anchor).

Design (the reference architecture, jyunlee/InterHandGen models/twohand_diff.py):

    tokens:   time   = MLP_t(sinusoid(t))        each MLP: Linear(in, hidden) -> swish -> Linear(hidden, width)
              cond   = MLP_c(cond)   (or the null condition)
              noisy  = MLP_x(x_t)
    encoder:  Transformer encoder over the 3 tokens (+ optional extra tokens), post-norm, ReLU feed-forward
    merge:    h = Linear(3 width -> hidden)(flatten of the 3 token outputs)
    stack:    for i in 0..L-1:  h = relu(W_i [h, (input_proj(x_t) if i in skips), time, cond] + b_i)
    output:   x0_hat = Linear(hidden -> data_dim)(h)

Implementation notes (same function as the concatenating definition, cheaper):
  * Each stack layer's weight is split by input block; the blocks' products are accumulated in place into one
    [B, hidden] buffer per layer (GEMMs with beta = 1): no concatenated inputs, no extra copies.
  * ``input_proj`` is linear, so the skip blocks act on x_t through the product W_skip @ W_input ([L_s hidden, D]):
    for batches larger than ~D rows this folded product is cheaper than projecting to the hidden width first
    (saves ~16M of ~88M multiply-adds per sample of the paper net). Both routes are kept; the cheaper is chosen
    per call.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from interhandgen.models.config import DenoiserConfig
from interhandgen.exceptions import InputError


#: Conventions of :func:`timestep_embedding`; each network keeps the one it was trained with.
EMBEDDING_CONVENTIONS = ("sin_cos", "cos_sin")


def timestep_embedding(t: torch.Tensor, dim: int, dtype: torch.dtype = torch.float32, *,
                       convention: str = "sin_cos", max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding [B, dim] of integer timesteps [B].

    ``convention``:
    - ``"sin_cos"`` (the shared denoiser; the reference code's): [sin(t w_k), cos(t w_k)],
      w_k = max_period^(-k/(dim/2-1)), k = 0..dim/2-1 (frequencies from 1 down to 1/max_period, both included);
    - ``"cos_sin"`` (the baseline networks; the guided-diffusion convention): [cos(t w_k), sin(t w_k)],
      w_k = max_period^(-k/(dim/2)), with one zero column appended for an odd ``dim``.
    The two give different numbers; a trained network must keep the convention it was trained with.
    """
    half = dim // 2
    if convention == "sin_cos":
        freqs = torch.exp(torch.arange(half, dtype=torch.float32, device=t.device) * (-math.log(max_period) / (half - 1)))
        angles = t.to(torch.float32)[:, None] * freqs[None, :]
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1).to(dtype)
    if convention == "cos_sin":
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
        args = t.float()[:, None] * freqs[None]
        emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1) if dim % 2 else emb
        return emb.to(dtype)
    raise InputError(f"convention must be one of {EMBEDDING_CONVENTIONS}, got {convention!r}")


class TokenMLP(nn.Module):
    """Linear(in, hidden) -> swish -> Linear(hidden, out): embeds one input into a token."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.silu(self.fc1(x)))


class Denoiser(nn.Module):
    """x0-prediction network; see the module docstring and :class:`DenoiserConfig`.

    ``forward(x_t [B, D], t [B] int64, cond [B, D], cond_mask [B] bool, extra_tokens [B, K, width] | None)``
    returns x0_hat [B, D] (a ``prediction: v`` network converts its v output to x0 with its schedule) in x_t's dtype, on x_t's device (the module must already be there).
    """

    def __init__(self, cfg: DenoiserConfig) -> None:
        super().__init__()
        self.cfg = cfg
        D, H, E, L = cfg.data_dim, cfg.hidden_dim, cfg.embed_dim, cfg.num_layers
        self.skip_layers = tuple(sorted(cfg.skips))
        self.time_mlp = TokenMLP(E, H, E)
        self.cond_mlp = TokenMLP(D, H, E)
        self.noisy_mlp = TokenMLP(D, H, E)
        if cfg.null_condition == "learned":
            self.null_cond_embedding = nn.Parameter(torch.empty(E))
        else:
            self.register_parameter("null_cond_embedding", None)
        layer = nn.TransformerEncoderLayer(E, cfg.num_heads, dim_feedforward=cfg.ff_dim, dropout=cfg.dropout,
                                           batch_first=not cfg.reference_compat)
        self.encoder = nn.TransformerEncoder(layer, cfg.num_encoder_layers, enable_nested_tensor=False)
        self.token_merge = nn.Linear(3 * E, H)
        self.input_proj = nn.Linear(D, H)
        # Stack layer i = hidden_proj[i] (its h block) + context_proj rows [i H, (i+1) H) (its [time, cond] block,
        # holding the layer's bias) + for skip layers skip_proj rows [j H, (j+1) H) (its input_proj block).
        self.hidden_proj = nn.ModuleList([nn.Linear(H, H, bias=False) for _ in range(L)])
        self.context_proj = nn.Linear(2 * E, L * H)
        self.skip_proj = nn.Linear(H, len(self.skip_layers) * H, bias=False) if self.skip_layers else None
        self.output_proj = nn.Linear(H, D)
        # v-prediction: sqrt(abar_t) and sqrt(1 - abar_t) per timestep (set_schedule; not saved: the model file
        # carries the schedule).
        self.register_buffer("v_coef", None, persistent=False)
        self.reset_parameters()

    def set_schedule(self, schedule) -> None:
        """Give a v-predicting network its noise schedule (:class:`interhandgen.diffusion.Schedule`); x0 networks
        ignore it."""
        if self.cfg.prediction == "x0":
            return
        self.v_coef = v_coefficients(schedule, self.output_proj.weight)

    @property
    def mixes_batch(self) -> bool:
        """True in reference-compat mode: outputs depend on the other rows of the batch."""
        return self.cfg.reference_compat

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """PyTorch's default Linear init, computed with the fan-in of each FULL (concatenated) stack layer, so that
        the initial function is distributed as the reference's."""
        H, E = self.cfg.hidden_dim, self.cfg.embed_dim
        if self.null_cond_embedding is not None:
            nn.init.normal_(self.null_cond_embedding, std=0.02)
        for i in range(self.cfg.num_layers):
            fan_in = H + 2 * E + (H if i in self.skip_layers else 0)
            bound = 1.0 / math.sqrt(fan_in)
            self.hidden_proj[i].weight.uniform_(-bound, bound)
            self.context_proj.weight[i * H:(i + 1) * H].uniform_(-bound, bound)
            self.context_proj.bias[i * H:(i + 1) * H].uniform_(-bound, bound)
            if i in self.skip_layers:
                j = self.skip_layers.index(i)
                self.skip_proj.weight[j * H:(j + 1) * H].uniform_(-bound, bound)

    def _check_inputs(self, x_t, t, cond, cond_mask, extra_tokens) -> None:
        D, E = self.cfg.data_dim, self.cfg.embed_dim
        if not isinstance(x_t, torch.Tensor) or x_t.dim() != 2 or x_t.shape[1] != D:
            raise InputError(f"x_t must have shape [B, {D}], got "
                             f"{list(x_t.shape) if isinstance(x_t, torch.Tensor) else type(x_t).__name__}")
        B = x_t.shape[0]
        weight = self.output_proj.weight
        if x_t.dtype != weight.dtype:
            raise TypeError(f"x_t has dtype {x_t.dtype} but the model's parameters are {weight.dtype}; "
                            f"convert one of them (e.g. model.to({x_t.dtype}))")
        if x_t.device != weight.device:
            raise InputError(f"x_t is on {x_t.device} but the model is on {weight.device}; move one of them")
        if not isinstance(t, torch.Tensor) or t.shape != (B,):
            raise InputError(f"t must be a tensor of shape [{B}], got "
                             f"{list(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__}")
        if t.dtype.is_floating_point or t.dtype == torch.bool or t.is_complex():
            raise TypeError(f"t must hold integer timesteps (int64), got dtype {t.dtype}")
        if cond is None:
            if cond_mask is not None:
                raise InputError("cond_mask was given without cond; pass cond [B, D] too, or neither")
        else:
            if not isinstance(cond, torch.Tensor) or cond.shape != x_t.shape:
                raise InputError(f"cond must have the shape of x_t {list(x_t.shape)}, got "
                                 f"{list(cond.shape) if isinstance(cond, torch.Tensor) else type(cond).__name__}")
            if cond.dtype != x_t.dtype:
                raise TypeError(f"cond must have the dtype of x_t ({x_t.dtype}), got {cond.dtype}")
            if not isinstance(cond_mask, torch.Tensor) or cond_mask.shape != (B,) or cond_mask.dtype != torch.bool:
                raise InputError(f"cond_mask must be a bool tensor of shape [{B}] (False = no condition), got "
                                 f"{(cond_mask.dtype, list(cond_mask.shape)) if isinstance(cond_mask, torch.Tensor) else cond_mask!r}")
        if extra_tokens is not None:
            if self.cfg.reference_compat:
                raise InputError("extra_tokens are not supported in reference_compat mode (its attention runs across "
                                 "the batch)")
            if not isinstance(extra_tokens, torch.Tensor) or extra_tokens.dim() != 3 or \
                    extra_tokens.shape[0] != B or extra_tokens.shape[2] != E:
                raise InputError(f"extra_tokens must have shape [{B}, K, {E}], got "
                                 f"{list(extra_tokens.shape) if isinstance(extra_tokens, torch.Tensor) else type(extra_tokens).__name__}")
            if extra_tokens.dtype != x_t.dtype:
                raise TypeError(f"extra_tokens must have the dtype of x_t ({x_t.dtype}), got {extra_tokens.dtype}")

    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        cond: Optional[torch.Tensor],
        cond_mask: Optional[torch.Tensor],
        extra_tokens: Optional[torch.Tensor] = None,
        layer_bias: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Predict the clean sample.

        Args:
            x_t: noisy standardised hand vectors [B, D].
            t: integer timesteps [B].
            cond: condition hand vectors [B, D] (standardised anchor), or None for a fully unconditional batch.
            cond_mask: [B] bool; False rows use the null condition (their ``cond`` values are ignored).
            extra_tokens: optional [B, K, width] further condition tokens (e.g. an object point-cloud embedding);
                they take part in the attention, the flattened output keeps the 3 hand/time tokens.
            layer_bias: optional [B, num_layers * hidden_dim] added to the stack layers' pre-activations (layer i:
                columns [i H, (i + 1) H)), e.g. from an object token.
        Returns: x0_hat [B, D].
        """
        self._check_inputs(x_t, t, cond, cond_mask, extra_tokens)
        cfg = self.cfg
        B, H = x_t.shape[0], cfg.hidden_dim
        if layer_bias is not None and (layer_bias.shape != (B, cfg.num_layers * H) or layer_bias.dtype != x_t.dtype):
            raise InputError(f"layer_bias must be a [{B}, {cfg.num_layers * H}] tensor of x_t's dtype, got "
                             f"{list(layer_bias.shape)} {layer_bias.dtype}")
        if cond is None:
            cond = torch.zeros_like(x_t)
            cond_mask = torch.zeros(B, dtype=torch.bool, device=x_t.device)
        # Null rows get a zero condition vector: the reference's null, and it keeps NaN/inf in ignored rows out of
        # the gradients of the learned variant.
        cond = torch.where(cond_mask[:, None], cond, torch.zeros((), dtype=cond.dtype, device=cond.device))

        # A sampler's batch shares one timestep, and the anchor stage one (null) condition: such a token is computed
        # once and broadcast, and its part of every stack layer's context product becomes a bias row (the same
        # function; about a fifth of the anchor stage's multiply-adds, a tenth of the partner stage's).
        same_t = bool((t == t[:1]).all())
        null_only = not bool(cond_mask.any())
        time_tok = self.time_mlp(timestep_embedding(t[:1] if same_t else t, cfg.embed_dim, x_t.dtype))
        cond_tok = self.cond_mlp(cond[:1] if null_only else cond)
        if self.null_cond_embedding is not None:
            cond_tok = torch.where(cond_mask[:1, None] if null_only else cond_mask[:, None], cond_tok,
                                   self.null_cond_embedding.to(cond_tok.dtype))
        time_row, cond_row = time_tok, cond_tok  # [1, E] where shared, else [B, E]
        time_tok, cond_tok = time_tok.expand(B, -1), cond_tok.expand(B, -1)
        noisy_tok = self.noisy_mlp(x_t)

        tokens = torch.stack([time_tok, cond_tok, noisy_tok], dim=1)  # [B, 3, E]
        if extra_tokens is not None:
            tokens = torch.cat([tokens, extra_tokens], dim=1)
        # reference_compat: the encoder was built with batch_first=False, so it reads [B, 3, E] as
        # [sequence = B, batch = 3, E] -- the reference defect, reproduced on purpose.
        encoded = self.encoder(tokens)[:, :3]
        h = self.token_merge(encoded.reshape(B, -1))

        D, E = cfg.data_dim, cfg.embed_dim
        fold = B * (H - D) > H * D  # folding input_proj into the skip blocks is cheaper for batches beyond ~D rows
        init = None if (fold or not self.skip_layers) else self.input_proj(x_t)
        ctx_w, ctx_b = self.context_proj.weight, self.context_proj.bias
        # The context product [time, cond] W^T + b of all layers at once where it is shared by every row ([1, L H]),
        # or its shared time part as the bias of the per-row cond part (same_t only), or per row.
        if same_t and null_only:
            shared = torch.addmm(ctx_b, torch.cat([time_row, cond_row], dim=1), ctx_w.t())
        elif same_t:
            shared = torch.addmm(ctx_b, time_row, ctx_w[:, :E].t())
        else:
            context = torch.cat([time_tok, cond_tok], dim=1)  # [B, 2E]
        for i in range(cfg.num_layers):
            rows = slice(i * H, (i + 1) * H)
            # Each layer accumulates its blocks in place into ONE fresh [B, H] buffer (no concatenated input):
            # time/cond block + bias, then the skip block, then the hidden block; in-place is autograd-safe here
            # because no backward needs these buffers before the final relu.
            if same_t and null_only:
                acc = torch.addmm(shared[0, rows], h, self.hidden_proj[i].weight.t())
            elif same_t:
                acc = torch.addmm(shared[0, rows], cond_tok, ctx_w[rows, E:].t())
            else:
                acc = torch.addmm(ctx_b[rows], context, ctx_w[rows].t())
            if i in self.skip_layers:
                j = self.skip_layers.index(i)
                w_skip = self.skip_proj.weight[j * H:(j + 1) * H]
                if fold:  # x_t @ (W_s W_in)^T + W_s b_in
                    acc.addmm_(x_t, (w_skip @ self.input_proj.weight).t())
                    acc.add_(w_skip @ self.input_proj.bias)
                else:
                    acc.addmm_(init, w_skip.t())
            if not (same_t and null_only):
                acc.addmm_(h, self.hidden_proj[i].weight.t())
            if layer_bias is not None:
                acc.add_(layer_bias[:, rows])
            h = acc.relu_()
        out = self.output_proj(h)
        if cfg.prediction == "x0":
            return out
        return x0_from_v(out, x_t, t, self.v_coef)

    @property
    def predicts_v(self) -> bool:
        return self.cfg.prediction == "v"


def v_coefficients(schedule, like: torch.Tensor) -> torch.Tensor:
    """[T, 2] sqrt(abar_t), sqrt(1 - abar_t) of a :class:`interhandgen.diffusion.Schedule`, on ``like``'s device
    and dtype."""
    coef = torch.stack([schedule.sqrt_alphas_cumprod, schedule.sqrt_one_minus_alphas_cumprod], 1)
    return coef.to(device=like.device, dtype=like.dtype)


def x0_from_v(v: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, v_coef: torch.Tensor | None) -> torch.Tensor:
    """x0 = sqrt(abar_t) x_t - sqrt(1 - abar_t) v for v [B, D], x_t [B, D], t [B]; ``v_coef`` from
    :func:`v_coefficients` (None: the network was built without its schedule)."""
    if v_coef is None:
        raise InputError("this network predicts v and has no noise schedule: build it with "
                         "interhandgen.models.build_model(config, schedule) or read it with read_model")
    if int(t.max()) >= v_coef.shape[0]:
        raise InputError(f"timestep {int(t.max())} is beyond the network's schedule of {v_coef.shape[0]} steps")
    a, s = v_coef[t].to(v.dtype).unbind(1)
    return a[:, None] * x_t - s[:, None] * v


def build_denoiser(cfg: DenoiserConfig) -> Denoiser:
    """The denoiser for ``cfg`` (float32, CPU, freshly initialised; move it with ``.to``)."""
    if not isinstance(cfg, DenoiserConfig):
        raise TypeError(f"cfg must be a DenoiserConfig, got {type(cfg).__name__} (use DenoiserConfig.from_dict)")
    return Denoiser(cfg)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
