"""Import checkpoints of the reference code (jyunlee/InterHandGen, class ``TwoHandDiff``) into :class:`Denoiser`.

The reference saves ``[model.state_dict(), optimizer.state_dict(), epoch, step(, ema)]`` from a DataParallel
wrapper, so keys start with ``module.``. Its names map onto ours as follows (H = hidden, E = width, D = data dim):

    fc_input.*            -> input_proj.*                 [H, D]
    temb.dense.{0,1}.*    -> time_mlp.fc{1,2}.*
    cemb.dense.{0,1}.*    -> cond_mlp.fc{1,2}.*
    iemb.dense.{0,1}.*    -> noisy_mlp.fc{1,2}.*
    trans_enc.layers.k.*  -> encoder.layers.k.*           (same nn.TransformerEncoderLayer)
    trans_out.*           -> token_merge.*                [H, 3E]
    fc_layers.i.weight    -> columns [h | input (skip layers only) | time | cond] split into
                             hidden_proj.i.weight, skip_proj.weight rows, context_proj.weight rows
    fc_layers.i.bias      -> context_proj.bias rows [i H, (i+1) H)
    fc_output.*           -> output_proj.*

The reference's null condition is an all-zero condition vector, so imported models use ``null_condition="zeros"``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Union

import torch

from interhandgen.models.config import DenoiserConfig
from interhandgen.models.denoiser import Denoiser, build_denoiser
from interhandgen.exceptions import InputError, MissingFileError

_MLPS = {"temb": "time_mlp", "cemb": "cond_mlp", "iemb": "noisy_mlp"}
_SIMPLE = {"fc_input": "input_proj", "trans_out": "token_merge", "fc_output": "output_proj"}


def reference_shapes(cfg: DenoiserConfig) -> dict[str, tuple[int, ...]]:
    """Key -> shape of the reference ``TwoHandDiff`` state dict for the architecture ``cfg`` (no ``module.``)."""
    D, H, E, F = cfg.data_dim, cfg.hidden_dim, cfg.embed_dim, cfg.ff_dim
    shapes: dict[str, tuple[int, ...]] = {
        "fc_input.weight": (H, D), "fc_input.bias": (H,),
        "fc_output.weight": (D, H), "fc_output.bias": (D,),
        "trans_out.weight": (H, 3 * E), "trans_out.bias": (H,),
        "temb.dense.0.weight": (H, E), "temb.dense.0.bias": (H,),
    }
    for name in ("cemb", "iemb"):
        shapes[f"{name}.dense.0.weight"], shapes[f"{name}.dense.0.bias"] = (H, D), (H,)
    for name in ("temb", "cemb", "iemb"):
        shapes[f"{name}.dense.1.weight"], shapes[f"{name}.dense.1.bias"] = (E, H), (E,)
    for i in range(cfg.num_layers):
        width = H + 2 * E + (H if i in cfg.skips else 0)
        shapes[f"fc_layers.{i}.weight"], shapes[f"fc_layers.{i}.bias"] = (H, width), (H,)
    for k in range(cfg.num_encoder_layers):
        p = f"trans_enc.layers.{k}."
        shapes.update({
            p + "self_attn.in_proj_weight": (3 * E, E), p + "self_attn.in_proj_bias": (3 * E,),
            p + "self_attn.out_proj.weight": (E, E), p + "self_attn.out_proj.bias": (E,),
            p + "linear1.weight": (F, E), p + "linear1.bias": (F,),
            p + "linear2.weight": (E, F), p + "linear2.bias": (E,),
            p + "norm1.weight": (E,), p + "norm1.bias": (E,),
            p + "norm2.weight": (E,), p + "norm2.bias": (E,),
        })
    return shapes


def _extract_state_dict(obj: Any, source: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, (list, tuple)):
        if not obj or not isinstance(obj[0], Mapping):
            raise InputError(f"{source}: expected the reference checkpoint list [model_state_dict, optimizer, epoch, "
                             f"step, ...] with a state dict first, got a {type(obj).__name__} starting with "
                             f"{type(obj[0]).__name__ if obj else 'nothing'}")
        obj = obj[0]
    if not isinstance(obj, Mapping):
        raise TypeError(f"{source}: expected a state dict (mapping of names to tensors), got {type(obj).__name__}")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise TypeError(f"{source}: state dict entries must map str -> Tensor; offending keys: {bad[:5]}")
    keys = list(obj)
    if keys and all(k.startswith("module.") for k in keys):  # saved from nn.DataParallel
        return {k[len("module."):]: v for k, v in obj.items()}
    return dict(obj)


def infer_reference_config(state: Mapping[str, torch.Tensor], num_heads: int = 4,
                           reference_compat: bool = True, source: str = "state dict") -> DenoiserConfig:
    """The :class:`DenoiserConfig` of a reference state dict, from its shapes (heads cannot be read from shapes)."""
    def shape(key: str) -> tuple[int, ...]:
        if key not in state:
            raise InputError(f"{source}: missing key {key!r}, needed to read the architecture; is this a "
                             f"TwoHandDiff state dict? (first keys: {list(state)[:6]})")
        return tuple(state[key].shape)

    H, D = shape("fc_input.weight")
    E = shape("temb.dense.0.weight")[1]
    layers = sorted({int(m.group(1)) for k in state if (m := re.match(r"fc_layers\.(\d+)\.", k))})
    enc = sorted({int(m.group(1)) for k in state if (m := re.match(r"trans_enc\.layers\.(\d+)\.", k))})
    if not layers or layers != list(range(len(layers))):
        raise InputError(f"{source}: fc_layers indices must be 0..L-1, got {layers}")
    if not enc or enc != list(range(len(enc))):
        raise InputError(f"{source}: trans_enc.layers indices must be 0..K-1, got {enc}")
    skips = []
    for i in layers:
        w = shape(f"fc_layers.{i}.weight")
        if w == (H, 2 * H + 2 * E):
            skips.append(i)
        elif w != (H, H + 2 * E):
            raise InputError(f"{source}: fc_layers.{i}.weight has shape {list(w)}; expected [{H}, {H + 2 * E}] "
                             f"(plain layer) or [{H}, {2 * H + 2 * E}] (skip layer) for hidden {H}, width {E}")
    F = shape("trans_enc.layers.0.linear1.weight")[0]
    return DenoiserConfig(data_dim=D, hidden_dim=H, embed_dim=E, num_layers=len(layers), skips=tuple(skips),
                          num_heads=num_heads, ff_dim=F, num_encoder_layers=len(enc), dropout=0.1,
                          null_condition="zeros", reference_compat=reference_compat)


def _check_against(state: Mapping[str, torch.Tensor], cfg: DenoiserConfig, source: str) -> None:
    expected = reference_shapes(cfg)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [f"{k}: checkpoint {list(state[k].shape)}, expected {list(s)}"
             for k, s in expected.items() if k in state and tuple(state[k].shape) != s]
    problems = []
    if missing:
        problems.append(f"missing keys {missing}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected}")
    if wrong:
        problems.append("shape mismatches: " + "; ".join(wrong))
    if problems:
        raise InputError(f"{source}: not a reference TwoHandDiff state dict for {cfg}: " + " | ".join(problems))
    bad = [k for k, v in state.items() if not v.is_floating_point() or not torch.isfinite(v).all()]
    if bad:
        raise InputError(f"{source}: non-finite or non-float values in {bad[:5]}")


def import_reference_checkpoint(
    path_or_state_dict: Union[str, Path, Mapping[str, torch.Tensor], list, tuple],
    *,
    reference_compat: bool = True,
    num_heads: int = 4,
) -> tuple[Denoiser, DenoiserConfig]:
    """Load a reference checkpoint (``ckpt.pth`` file, its loaded list, or a state dict) into our :class:`Denoiser`.

    Args:
        reference_compat: True (default) reproduces the reference outputs exactly, including its attention across
            the batch; False gives the batch-independent network with the same weights (outputs then differ, since
            the weights were trained under the defect).
        num_heads: attention heads (4 in the reference; not recoverable from shapes).
    Returns: (model in eval mode, float32, CPU; its config with ``null_condition="zeros"``).
    """
    if isinstance(path_or_state_dict, (str, Path)):
        path = Path(path_or_state_dict)
        if not path.is_file():
            raise MissingFileError(f"reference checkpoint not found: {path}")
        source = str(path)
        # weights_only: the reference list holds only tensors, dicts and ints, so no code needs unpickling.
        obj = torch.load(path, map_location="cpu", weights_only=True)
    else:
        source, obj = "state dict", path_or_state_dict
    state = _extract_state_dict(obj, source)
    cfg = infer_reference_config(state, num_heads=num_heads, reference_compat=reference_compat, source=source)
    _check_against(state, cfg, source)

    H, E = cfg.hidden_dim, cfg.embed_dim
    ours: dict[str, torch.Tensor] = {}
    for ref, name in _SIMPLE.items():
        for p in ("weight", "bias"):
            ours[f"{name}.{p}"] = state[f"{ref}.{p}"]
    for ref, name in _MLPS.items():
        for j in (0, 1):
            for p in ("weight", "bias"):
                ours[f"{name}.fc{j + 1}.{p}"] = state[f"{ref}.dense.{j}.{p}"]
    for k, v in state.items():
        if k.startswith("trans_enc.layers."):
            ours["encoder." + k[len("trans_enc."):]] = v
    context_w, context_b, skip_w = [], [], []
    for i in range(cfg.num_layers):
        w = state[f"fc_layers.{i}.weight"]
        ours[f"hidden_proj.{i}.weight"] = w[:, :H]
        if i in cfg.skips:
            skip_w.append(w[:, H:2 * H])
        context_w.append(w[:, -2 * E:])  # [time | cond], the reference's concatenation order
        context_b.append(state[f"fc_layers.{i}.bias"])
    ours["context_proj.weight"] = torch.cat(context_w)
    ours["context_proj.bias"] = torch.cat(context_b)
    if skip_w:
        ours["skip_proj.weight"] = torch.cat(skip_w)

    model = build_denoiser(cfg)
    model.load_state_dict({k: v.detach().to(torch.float32).contiguous() for k, v in ours.items()}, strict=True)
    return model.eval(), cfg


def to_reference_state_dict(model: Denoiser) -> dict[str, torch.Tensor]:
    """Our weights under the reference names (no ``module.`` prefix); inverse of the import.

    Raises for a model with a learned null embedding (the reference has none).
    """
    cfg = model.cfg
    if cfg.null_condition != "zeros":
        raise InputError("only models with null_condition='zeros' have a reference equivalent; this one has a "
                         "learned null embedding")
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    H = cfg.hidden_dim
    out: dict[str, torch.Tensor] = {}
    for ref, name in _SIMPLE.items():
        for p in ("weight", "bias"):
            out[f"{ref}.{p}"] = sd[f"{name}.{p}"]
    for ref, name in _MLPS.items():
        for j in (0, 1):
            for p in ("weight", "bias"):
                out[f"{ref}.dense.{j}.{p}"] = sd[f"{name}.fc{j + 1}.{p}"]
    for k, v in sd.items():
        if k.startswith("encoder.layers."):
            out["trans_enc." + k[len("encoder."):]] = v
    skips = sorted(cfg.skips)
    for i in range(cfg.num_layers):
        blocks = [sd[f"hidden_proj.{i}.weight"]]
        if i in skips:
            j = skips.index(i)
            blocks.append(sd["skip_proj.weight"][j * H:(j + 1) * H])
        blocks.append(sd["context_proj.weight"][i * H:(i + 1) * H])
        out[f"fc_layers.{i}.weight"] = torch.cat(blocks, dim=1)
        out[f"fc_layers.{i}.bias"] = sd["context_proj.bias"][i * H:(i + 1) * H]
    return out
