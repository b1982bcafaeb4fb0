"""Point-cloud feature extractor for evaluating two-hand samples (the embedding behind FHID, KHID, ...).

In the spirit of the paper's evaluator (PointNet++ with multi-scale grouping that regresses hand parameters
from the two-hand point cloud, feature = its 256-d penultimate activation), rebuilt in pure torch so that it
trains and runs on a CPU:

- Input: vertices of both hands ``verts`` [B, 2, V, 3] in metres, slot 0 = left hand, slot 1 = right hand,
  in the data's canonical frame. A fixed, stored set of P vertex indices (``config.vertex_indices``, the same
  for both hands) is taken from each hand, giving 2P points; coordinates are multiplied by
  ``config.input_scale`` (10, as in the paper). Each point carries a one-hot side channel: (1, 0) for the left
  hand, (0, 1) for the right hand.
- Set abstraction 1 (multi-scale): ``sa1_centroids`` centroids by farthest-point sampling (FPS, starting at
  point 0, i.e. deterministic); around each, the k nearest points for each k in ``sa1_neighbours`` (nested
  neighbourhoods instead of PointNet++'s radius balls: no empty or truncated groups, one top-k serves all
  scales); a shared MLP per scale on [point - centroid, point features], max-pooled; scales concatenated.
- Set abstraction 2 (multi-scale): the same on the SA1 centroids and their features.
- Global set abstraction: shared MLP on [centroid xyz, features] of the SA2 centroids, max-pooled.
- Head: Linear -> BatchNorm -> ReLU -> Dropout -> Linear(feature_dim) -> BatchNorm  ==> **feature** [B, 256]
  -> ReLU -> Dropout -> Linear(num_outputs) ==> standardised parameters [B, 128] (left hand's 64, then
  right hand's 64).

The feature is the batch-normalised output of the second fully connected layer, before its ReLU, which is
the activation the reference evaluator reads. In eval mode everything is deterministic and each sample's
output is independent of the rest of the batch (BatchNorm uses its running statistics).

Object-aware variant (``config.object_points = Q > 0``): Q surface points of the object, in the same canonical
frame, join the cloud as a third channel (one-hot (0, 0, 1); the hands get (1, 0, 0) and (0, 1, 0)), so the
embedding sees where the hands are relative to the object, not only to each other. Every call then takes
``object_points`` [B, Q, 3] beside the vertices (:mod:`interhandgen.evaluation.object_features` builds them).

Mirroring: the side channel makes a sample and its mirror image (reflect x, swap the slots; see
:func:`mirror_two_hands`) different inputs, on purpose: an interaction and its mirror image differ in
chirality, and an evaluator that cannot tell them apart would not notice a generator that produces the wrong
handedness. The network is therefore not mirror-invariant; :func:`mirror_feature_gap` measures how far a
sample's feature moves under mirroring, relative to the typical distance between samples.

Speed trick: the first layer of each grouped MLP is linear in [point - centroid, point features], so it is
evaluated once per point and once per centroid and then gathered, instead of once per (centroid, neighbour)
pair; this is exactly the same function with K times fewer multiply-adds in the widest layer.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from interhandgen._atomic import atomic_write_bytes
from interhandgen.geometry.points import farthest_point_sample, gather_rows, knn_indices, pairwise_sq_distances
from interhandgen.exceptions import InputError, MissingFileError
from interhandgen.safe_files import read_json

__all__ = [
    "FeatureExtractorConfig",
    "TwoHandPointNet",
    "farthest_point_sample",
    "pairwise_sq_distances",
    "knn_indices",
    "gather_rows",
    "select_vertex_indices",
    "mirror_two_hands",
    "extract_features",
    "mirror_feature_gap",
    "train_feature_extractor",
    "save_feature_extractor",
    "load_feature_extractor",
]

FORMAT_NAME = "interhandgen.feature_extractor"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


# ---------------------------------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class FeatureExtractorConfig:
    """Architecture and input convention of :class:`TwoHandPointNet`; stored as JSON beside the weights.

    Fields:
        num_vertices: V, vertices per hand expected at the input.
        vertex_indices: the P vertex indices (in [0, V)) used from EACH hand.
        num_outputs: regressed numbers (128 = 2 hands x 64 parameters).
        input_scale: multiplies coordinates in metres (10 as in the paper: hand-sized clouds span ~2 units).
        sa1_centroids / sa2_centroids: FPS centroids of the two set-abstraction levels.
        sa1_neighbours / sa2_neighbours: k of each scale (nested k-nearest-neighbour groups).
        sa1_mlps / sa2_mlps: channel widths of the shared MLP of each scale.
        global_mlp: widths of the shared MLP before the global max-pool.
        head_hidden: width of the first fully connected layer.
        feature_dim: width of the feature layer (256).
        dropout: dropout probability in the head (training only).
        object_points: Q, object surface points given beside the hands (0: a hands-only extractor).
    """

    num_vertices: int
    vertex_indices: tuple[int, ...]
    num_outputs: int = 128
    input_scale: float = 10.0
    sa1_centroids: int = 64
    sa1_neighbours: tuple[int, ...] = (8, 16, 32)
    sa1_mlps: tuple[tuple[int, ...], ...] = ((32, 32, 64), (32, 48, 64), (48, 64, 128))
    sa2_centroids: int = 16
    sa2_neighbours: tuple[int, ...] = (8, 16)
    sa2_mlps: tuple[tuple[int, ...], ...] = ((64, 64, 128), (96, 96, 192))
    global_mlp: tuple[int, ...] = (256, 512, 1024)
    head_hidden: int = 512
    feature_dim: int = 256
    dropout: float = 0.4
    object_points: int = 0  # Q object surface points as a third channel (0: hands only)

    def __post_init__(self) -> None:
        self.vertex_indices = tuple(int(i) for i in self.vertex_indices)
        self.sa1_neighbours = tuple(int(k) for k in self.sa1_neighbours)
        self.sa2_neighbours = tuple(int(k) for k in self.sa2_neighbours)
        self.sa1_mlps = tuple(tuple(int(c) for c in m) for m in self.sa1_mlps)
        self.sa2_mlps = tuple(tuple(int(c) for c in m) for m in self.sa2_mlps)
        self.global_mlp = tuple(int(c) for c in self.global_mlp)
        self.validate()

    @property
    def points_per_hand(self) -> int:
        return len(self.vertex_indices)

    def validate(self) -> None:
        """Raise ValueError naming the field if the configuration is inconsistent."""
        def positive(name: str, value: Any) -> None:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"feature extractor config: field '{name}' must be a positive integer, got {value!r}")

        for name in ("num_vertices", "num_outputs", "sa1_centroids", "sa2_centroids", "head_hidden", "feature_dim"):
            positive(name, getattr(self, name))
        if len(self.vertex_indices) < 1:
            raise InputError("feature extractor config: field 'vertex_indices' must not be empty")
        idx = np.asarray(self.vertex_indices)
        if idx.min() < 0 or idx.max() >= self.num_vertices:
            raise InputError(
                f"feature extractor config: field 'vertex_indices' must lie in [0, {self.num_vertices}), "
                f"got range [{idx.min()}, {idx.max()}]"
            )
        if len(np.unique(idx)) != len(idx):
            raise InputError("feature extractor config: field 'vertex_indices' contains duplicates")
        if not (isinstance(self.input_scale, (int, float)) and math.isfinite(self.input_scale) and self.input_scale > 0):
            raise InputError(f"feature extractor config: field 'input_scale' must be a positive number, got {self.input_scale!r}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise InputError(f"feature extractor config: field 'dropout' must be in [0, 1), got {self.dropout!r}")
        if isinstance(self.object_points, bool) or not isinstance(self.object_points, int) or self.object_points < 0:
            raise InputError(f"feature extractor config: field 'object_points' must be an integer >= 0, got "
                             f"{self.object_points!r}")
        num_points = 2 * self.points_per_hand + self.object_points
        if self.sa1_centroids > num_points:
            raise InputError(
                f"feature extractor config: field 'sa1_centroids' ({self.sa1_centroids}) exceeds the {num_points} "
                "input points (2 x len(vertex_indices) + object_points)"
            )
        if self.sa2_centroids > self.sa1_centroids:
            raise InputError("feature extractor config: field 'sa2_centroids' must not exceed 'sa1_centroids'")
        for level, pool in (("sa1", num_points), ("sa2", self.sa1_centroids)):
            ks, mlps = getattr(self, f"{level}_neighbours"), getattr(self, f"{level}_mlps")
            if len(ks) < 1 or len(ks) != len(mlps):
                raise InputError(
                    f"feature extractor config: fields '{level}_neighbours' and '{level}_mlps' must be non-empty "
                    f"and of equal length, got {len(ks)} and {len(mlps)}"
                )
            for k in ks:
                positive(f"{level}_neighbours", k)
                if k > pool:
                    raise InputError(
                        f"feature extractor config: field '{level}_neighbours' has k = {k} > {pool} available points"
                    )
            for widths in mlps:
                if len(widths) < 1:
                    raise InputError(f"feature extractor config: field '{level}_mlps' has an empty MLP")
                for c in widths:
                    positive(f"{level}_mlps", c)
        if len(self.global_mlp) < 1:
            raise InputError("feature extractor config: field 'global_mlp' must not be empty")
        for c in self.global_mlp:
            positive("global_mlp", c)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = [list(v) if isinstance(v, tuple) else v for v in value]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FeatureExtractorConfig":
        if not isinstance(data, dict):
            raise InputError(f"feature extractor config must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"feature extractor config: unknown field(s) {unknown}")
        missing = [name for name in ("num_vertices", "vertex_indices") if name not in data]
        if missing:
            raise InputError(f"feature extractor config: missing field(s) {missing}")
        return cls(**data)


# ---------------------------------------------------------------------------------------------------------------------
# Pure batched point-cloud operations
# ---------------------------------------------------------------------------------------------------------------------

def select_vertex_indices(reference_vertices: Any, num_points: int, start_index: int = 0) -> list[int]:
    """A well-spread fixed subset of vertex indices: FPS on one reference hand [V, 3] (e.g. the mean shape)."""
    ref = torch.as_tensor(np.asarray(reference_vertices, dtype=np.float64))
    if ref.ndim != 2 or ref.shape[1] != 3:
        raise InputError(f"argument 'reference_vertices' must have shape [V, 3], got {list(ref.shape)}")
    return farthest_point_sample(ref[None], num_points, start_index)[0].tolist()


def mirror_two_hands(verts: torch.Tensor) -> torch.Tensor:
    """Mirror image of two-hand vertices [B, 2, V, 3]: reflect x (x -> -x) and swap the left/right slots.

    The mirrored left hand becomes a right hand and vice versa, so the result is again [left, right];
    this is the same reflection (negate x) as the hand model's mirroring.
    """
    if verts.ndim != 4 or verts.shape[1] != 2 or verts.shape[3] != 3:
        raise InputError(f"argument 'verts' must have shape [B, 2, V, 3], got {list(verts.shape)}")
    reflect = torch.tensor([-1.0, 1.0, 1.0], dtype=verts.dtype, device=verts.device)
    return verts.flip(1) * reflect


# ---------------------------------------------------------------------------------------------------------------------
# Modules
# ---------------------------------------------------------------------------------------------------------------------

def _folded_linear_bn(linear: nn.Linear, norm: nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight [out, in] and bias [out] of Linear followed by BatchNorm in eval mode (running statistics)."""
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    bias = linear.bias if linear.bias is not None else torch.zeros_like(norm.running_mean)
    return linear.weight * scale[:, None], (bias - norm.running_mean) * scale + norm.bias


def _linear_bn_relu(h: torch.Tensor, linear: nn.Linear, norm: nn.BatchNorm1d, fold: bool) -> torch.Tensor:
    """ReLU(BatchNorm(Linear(h))) for h [R, in]; with ``fold`` (eval mode) one addmm with the BatchNorm folded in."""
    if not fold:
        return F.relu(norm(linear(h)))
    weight, bias = _folded_linear_bn(linear, norm)
    return torch.addmm(bias, h, weight.T).relu_()


def _fold_batchnorm(module: nn.Module) -> bool:
    """Fold BatchNorm into the preceding Linear in eval mode (same function, one memory pass fewer per layer);
    ``module.fold_batchnorm = False`` keeps the separate BatchNorm call (used to test the folding)."""
    return not module.training and getattr(module, "fold_batchnorm", True)


class GroupedPointMLP(nn.Module):
    """PointNet on each neighbourhood: shared MLP on [neighbour - centroid, neighbour features], max over neighbours."""

    def __init__(self, in_features: int, widths: Sequence[int]):
        super().__init__()
        self.first = nn.Linear(3 + in_features, widths[0])
        self.first_norm = nn.BatchNorm1d(widths[0])
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.norms = nn.ModuleList(nn.BatchNorm1d(c) for c in widths[1:])
        self.out_features = widths[-1]

    def forward(self, xyz: torch.Tensor, feats: torch.Tensor, centroids: torch.Tensor,
                neighbours: torch.Tensor) -> torch.Tensor:
        """xyz [B, N, 3], feats [B, N, C], centroids [B, M, 3], neighbours [B, M, K] -> [B, M, widths[-1]]."""
        b, m, k = neighbours.shape
        # First layer W [x - c; f] + bias = (W_x x + W_f f + bias) - W_x c: per point, then per centroid.
        fold = _fold_batchnorm(self)
        if fold:
            weight, bias = _folded_linear_bn(self.first, self.first_norm)
        else:
            weight, bias = self.first.weight, self.first.bias
        per_point = torch.cat([xyz, feats], dim=-1) @ weight.T + bias
        per_centroid = centroids @ weight[:, :3].T
        h = (gather_rows(per_point, neighbours) - per_centroid[:, :, None, :]).reshape(b * m * k, -1)
        h = h.relu_() if fold else F.relu(self.first_norm(h))
        for layer, norm in zip(self.layers, self.norms):
            h = _linear_bn_relu(h, layer, norm, fold)
        return h.reshape(b, m, k, -1).amax(dim=2)


class MultiScaleSetAbstraction(nn.Module):
    """FPS centroids + nested kNN groups at several scales, one grouped MLP per scale, outputs concatenated."""

    def __init__(self, num_centroids: int, neighbours: Sequence[int], in_features: int,
                 mlps: Sequence[Sequence[int]]):
        super().__init__()
        self.num_centroids = num_centroids
        self.neighbours = tuple(neighbours)
        self.branches = nn.ModuleList(GroupedPointMLP(in_features, w) for w in mlps)
        self.out_features = sum(branch.out_features for branch in self.branches)

    def forward(self, xyz: torch.Tensor, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """xyz [B, N, 3], feats [B, N, C] -> centroids [B, M, 3], features [B, M, out_features]."""
        # One N x N distance matrix serves both FPS and the neighbour search (its rows at the centroids).
        sq_dist = pairwise_sq_distances(xyz, xyz)
        centre_idx = farthest_point_sample(xyz, self.num_centroids, sq_dist=sq_dist)
        centroids = gather_rows(xyz, centre_idx)
        centre_rows = gather_rows(sq_dist, centre_idx)
        # Sorted, so each scale's neighbourhood is a prefix of the largest one.
        nearest = torch.topk(centre_rows, max(self.neighbours), dim=-1, largest=False, sorted=True).indices
        out = [branch(xyz, feats, centroids, nearest[..., :k]) for branch, k in zip(self.branches, self.neighbours)]
        return centroids, torch.cat(out, dim=-1)


class TwoHandPointNet(nn.Module):
    """Regresses both hands' standardised parameters from their vertices; ``features`` gives the 256-d embedding.

    Buffers stored with the weights: ``vertex_indices`` [P], and ``target_mean`` / ``target_std``
    [num_outputs] that map standardised outputs back to parameters (:meth:`predict_parameters`).
    """

    def __init__(self, config: FeatureExtractorConfig):
        super().__init__()
        if not isinstance(config, FeatureExtractorConfig):
            raise TypeError(f"argument 'config' must be a FeatureExtractorConfig, got {type(config).__name__}")
        self.config = config
        self.register_buffer("vertex_indices", torch.tensor(config.vertex_indices, dtype=torch.long))
        self.register_buffer("target_mean", torch.zeros(config.num_outputs))
        self.register_buffer("target_std", torch.ones(config.num_outputs))
        side_channels = 3 if config.object_points else 2
        self.sa1 = MultiScaleSetAbstraction(config.sa1_centroids, config.sa1_neighbours, side_channels, config.sa1_mlps)
        self.sa2 = MultiScaleSetAbstraction(config.sa2_centroids, config.sa2_neighbours, self.sa1.out_features,
                                            config.sa2_mlps)
        widths = (3 + self.sa2.out_features,) + config.global_mlp
        self.global_layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.global_norms = nn.ModuleList(nn.BatchNorm1d(c) for c in widths[1:])
        self.fc1 = nn.Linear(config.global_mlp[-1], config.head_hidden)
        self.bn1 = nn.BatchNorm1d(config.head_hidden)
        self.fc2 = nn.Linear(config.head_hidden, config.feature_dim)
        self.bn2 = nn.BatchNorm1d(config.feature_dim)
        self.fc3 = nn.Linear(config.feature_dim, config.num_outputs)
        self.dropout = nn.Dropout(config.dropout)

    # -- input -------------------------------------------------------------------------------------------------------

    def _check_verts(self, verts: Any) -> torch.Tensor:
        if not isinstance(verts, torch.Tensor):
            raise TypeError(f"argument 'verts' must be a torch tensor [B, 2, V, 3], got {type(verts).__name__}")
        v = self.config.num_vertices
        if verts.ndim != 4 or verts.shape[1] != 2 or verts.shape[2] != v or verts.shape[3] != 3:
            raise InputError(f"argument 'verts' must have shape [B, 2, {v}, 3], got {list(verts.shape)}")
        if not verts.is_floating_point():
            raise TypeError(f"argument 'verts' must be floating point, got {verts.dtype}")
        if not bool(torch.isfinite(verts).all()):
            raise InputError("argument 'verts' contains NaN or inf")
        return verts

    def select_points(self, verts: torch.Tensor) -> torch.Tensor:
        """The stored vertex subset of each hand: [B, 2, V, 3] -> [B, 2, P, 3] (still metres)."""
        return self._check_verts(verts).index_select(2, self.vertex_indices)

    def _check_object(self, object_points: torch.Tensor | None, batch: int) -> torch.Tensor | None:
        q = self.config.object_points
        if q == 0:
            if object_points is not None:
                raise InputError("this feature extractor sees hands only (config.object_points = 0); do not pass "
                                 "object_points")
            return None
        if object_points is None:
            raise InputError(f"this feature extractor is object-aware (config.object_points = {q}); pass "
                             f"object_points [B, {q}, 3]")
        if tuple(object_points.shape) != (batch, q, 3):
            raise InputError(f"argument 'object_points' must have shape [{batch}, {q}, 3], got "
                             f"{list(object_points.shape)}")
        if not bool(torch.isfinite(object_points).all()):
            raise InputError("argument 'object_points' contains NaN or inf")
        return object_points

    # -- network -----------------------------------------------------------------------------------------------------

    def forward_points(self, points: torch.Tensor, object_points: torch.Tensor | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """Selected points [B, 2, P, 3] in metres (and, for an object-aware extractor, object points [B, Q, 3])
        -> (standardised outputs [B, num_outputs], features [B, feature_dim])."""
        b, _, p, _ = points.shape
        obj = self._check_object(object_points, b)
        weight = self.fc1.weight
        q = 0 if obj is None else obj.shape[1]
        xyz = (points * self.config.input_scale).to(weight.dtype).reshape(b, 2 * p, 3)
        side = torch.zeros(2 * p + q, 3 if obj is not None else 2, dtype=weight.dtype, device=weight.device)
        side[:p, 0] = 1.0  # left hand
        side[p:2 * p, 1] = 1.0  # right hand
        if obj is not None:
            side[2 * p:, 2] = 1.0  # object
            xyz = torch.cat([xyz, (obj * self.config.input_scale).to(weight.dtype)], dim=1)
        side = side.expand(b, -1, -1)
        xyz1, feats1 = self.sa1(xyz, side)
        xyz2, feats2 = self.sa2(xyz1, feats1)
        h = torch.cat([xyz2, feats2], dim=-1)
        m = h.shape[1]
        h = h.reshape(b * m, -1)
        fold = _fold_batchnorm(self)
        for layer, norm in zip(self.global_layers, self.global_norms):
            h = _linear_bn_relu(h, layer, norm, fold)
        h = h.reshape(b, m, -1).amax(dim=1)
        h = self.dropout(_linear_bn_relu(h, self.fc1, self.bn1, fold))
        feature = self.bn2(self.fc2(h))
        out = self.fc3(self.dropout(F.relu(feature)))
        return out, feature

    def forward(self, verts: torch.Tensor, object_points: torch.Tensor | None = None) -> torch.Tensor:
        """verts [B, 2, V, 3] (metres; slot 0 left, slot 1 right) -> standardised parameters [B, num_outputs]."""
        return self.forward_points(self.select_points(verts), object_points)[0]

    def forward_with_features(self, verts: torch.Tensor, object_points: torch.Tensor | None = None
                              ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_points(self.select_points(verts), object_points)

    def features(self, verts: torch.Tensor, object_points: torch.Tensor | None = None) -> torch.Tensor:
        """The evaluation embedding [B, feature_dim]: bn2(fc2(.)), the penultimate activation before its ReLU."""
        return self.forward_points(self.select_points(verts), object_points)[1]

    def predict_parameters(self, verts: torch.Tensor, object_points: torch.Tensor | None = None) -> torch.Tensor:
        """Regressed parameters in their original units: outputs * target_std + target_mean, [B, num_outputs]."""
        return self(verts, object_points) * self.target_std + self.target_mean


# ---------------------------------------------------------------------------------------------------------------------
# Batched feature extraction and the mirror gap
# ---------------------------------------------------------------------------------------------------------------------

def _as_float_tensor(x: Any, name: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.asarray(x, dtype=np.float32))
    if isinstance(x, torch.Tensor):
        return x.detach()
    raise TypeError(f"argument '{name}' must be a numpy array or torch tensor, got {type(x).__name__}")


@torch.no_grad()
def extract_features(
    model: TwoHandPointNet,
    verts: Any,
    batch_size: int = 64,
    device: torch.device | str | None = None,
    progress: bool = True,
    object_points: Any = None,
) -> torch.Tensor:
    """Features [N, feature_dim] (float32, CPU) of two-hand vertices [N, 2, V, 3] in metres, in eval mode
    (with ``object_points`` [N, Q, 3] for an object-aware extractor).

    Batches of ``batch_size`` go to ``device`` (default: the model's); the model's train/eval mode is restored.
    """
    if not isinstance(model, TwoHandPointNet):
        raise TypeError(f"argument 'model' must be a TwoHandPointNet, got {type(model).__name__}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"argument 'batch_size' must be a positive integer, got {batch_size!r}")
    x = _as_float_tensor(verts, "verts")
    o = None if object_points is None else _as_float_tensor(object_points, "object_points")
    device = torch.device(device) if device is not None else model.fc1.weight.device
    if x.ndim != 4:
        raise InputError(f"argument 'verts' must have shape [N, 2, V, 3], got {list(x.shape)}")
    if o is not None and o.shape[0] != x.shape[0]:
        raise InputError(f"arguments 'verts' and 'object_points' must have the same N, got {x.shape[0]} and "
                         f"{o.shape[0]}")
    was_training = model.training
    model.eval()
    chunks = range(0, x.shape[0], batch_size)
    if progress:
        from tqdm.auto import tqdm

        chunks = tqdm(chunks, desc="features", unit="batch")
    out = []
    try:
        for start in chunks:
            batch = x[start:start + batch_size].to(device=device, dtype=model.fc1.weight.dtype)
            ob = None if o is None else o[start:start + batch_size].to(device=device, dtype=model.fc1.weight.dtype)
            out.append(model.features(batch, ob).float().cpu())
    finally:
        model.train(was_training)
    if not out:
        return torch.empty(0, model.config.feature_dim)
    return torch.cat(out)


def mirror_feature_gap(model: TwoHandPointNet, verts: Any, batch_size: int = 64) -> dict[str, float]:
    """How far mirroring moves features, relative to the spread of features.

    Returns ``mirror_distance`` = mean_i |f(x_i) - f(mirror(x_i))|, ``pairwise_distance`` = mean over i != j of
    |f(x_i) - f(x_j)|, and their ratio ``relative_gap`` (0: mirror-invariant; ~1: a mirrored sample is as far
    from its original as an unrelated sample). Needs N >= 2 samples [N, 2, V, 3].
    """
    x = _as_float_tensor(verts, "verts")
    if x.ndim != 4 or x.shape[0] < 2:
        raise InputError(f"argument 'verts' must have shape [N >= 2, 2, V, 3], got {list(x.shape)}")
    f = extract_features(model, x, batch_size=batch_size, progress=False).double()
    fm = extract_features(model, mirror_two_hands(x), batch_size=batch_size, progress=False).double()
    mirror_distance = float(torch.linalg.vector_norm(f - fm, dim=1).mean())
    n = f.shape[0]
    pairwise_distance = float(torch.cdist(f, f).sum() / (n * (n - 1)))
    return {
        "mirror_distance": mirror_distance,
        "pairwise_distance": pairwise_distance,
        "relative_gap": mirror_distance / pairwise_distance if pairwise_distance > 0 else float("nan"),
    }


# ---------------------------------------------------------------------------------------------------------------------
# Save / load
# ---------------------------------------------------------------------------------------------------------------------

def save_feature_extractor(model: TwoHandPointNet, out_path: str | os.PathLike,
                           training: dict[str, Any] | None = None) -> Path:
    """Write ``out_path/model.safetensors`` and ``out_path/config.json`` (config, SHA-256 of the weights file,
    optional training record), each atomically; the weights first, so a config never names missing weights.
    Returns the directory."""
    from safetensors.torch import save as safetensors_save

    if not isinstance(model, TwoHandPointNet):
        raise TypeError(f"argument 'model' must be a TwoHandPointNet, got {type(model).__name__}")
    out_dir = Path(out_path)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"argument 'out_path' must be a directory (it will hold {WEIGHTS_FILE} and {CONFIG_FILE}), "
                         f"got an existing file: {out_dir}")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    payload = safetensors_save(state, metadata={"format": FORMAT_NAME})
    digest = hashlib.sha256(payload).hexdigest()
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out_dir / WEIGHTS_FILE, payload)
    record = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "weights_file": WEIGHTS_FILE,
        "weights_sha256": digest,
        "training": training or {},
    }
    atomic_write_bytes(out_dir / CONFIG_FILE, (json.dumps(record, indent=2) + "\n").encode("utf-8"))
    return out_dir


def load_feature_extractor(path: str | os.PathLike, device: torch.device | str = "cpu") -> TwoHandPointNet:
    """Load a model saved by :func:`save_feature_extractor` / :func:`train_feature_extractor`, in eval mode.

    ``path`` is the directory, its config.json or its model.safetensors (then the config.json beside it is read
    and must name that weights file). The weights' SHA-256 must match the one in the config.
    """
    from safetensors.torch import load as safetensors_load

    path = Path(path)
    weights_given = path.suffix == ".safetensors" and not path.is_dir()
    config_path = path / CONFIG_FILE if path.is_dir() else path.parent / CONFIG_FILE if weights_given else path
    if not config_path.is_file():
        extra = f" (beside the weights {path})" if weights_given else ""
        raise MissingFileError(f"feature extractor config not found: {config_path}{extra}")
    record = read_json(config_path, "feature extractor config")
    if not isinstance(record, dict) or record.get("format") != FORMAT_NAME:
        raise InputError(f"{config_path}: field 'format' must be {FORMAT_NAME!r}")
    if record.get("format_version") != FORMAT_VERSION:
        raise InputError(f"{config_path}: field 'format_version' must be {FORMAT_VERSION}, got {record.get('format_version')!r}")
    for field in ("config", "weights_file", "weights_sha256"):
        if field not in record:
            raise InputError(f"{config_path}: missing field '{field}'")
    weights_path = config_path.parent / str(record["weights_file"])
    if weights_given and weights_path.name != path.name:
        raise InputError(f"{path}: the config {config_path} beside it names the weights file {weights_path.name}, "
                         "not this one; pass the folder instead")
    if not weights_path.is_file():
        raise MissingFileError(f"feature extractor weights not found: {weights_path}")
    payload = weights_path.read_bytes()
    digest = hashlib.sha256(payload).hexdigest()
    if digest != record["weights_sha256"]:
        raise InputError(
            f"{weights_path}: SHA-256 {digest} does not match field 'weights_sha256' {record['weights_sha256']} "
            f"in {config_path}; the files do not belong together or are corrupt"
        )
    config = FeatureExtractorConfig.from_dict(record["config"])
    model = TwoHandPointNet(config)
    model.load_state_dict(safetensors_load(payload), strict=True)
    return model.to(device).eval()


# ---------------------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------------------

def _batches(n: int, batch_size: int, order: torch.Tensor | None = None) -> list[torch.Tensor]:
    """Consecutive batches of ``order`` (default arange(n)); a final batch of one sample joins the previous one
    because BatchNorm cannot normalise a single sample in training mode."""
    order = order if order is not None else torch.arange(n)
    chunks = list(torch.split(order, batch_size))
    if len(chunks) > 1 and chunks[-1].numel() == 1:
        chunks[-2] = torch.cat([chunks[-2], chunks.pop()])
    return chunks


@torch.no_grad()
def _recalibrate_batchnorm(model: TwoHandPointNet, points: torch.Tensor, batch_size: int,
                           device: torch.device, objects: torch.Tensor | None = None) -> None:
    """Replace BatchNorm running statistics by exact averages over ``points`` under the current weights.

    The exponential running averages kept during training lag behind weights that change quickly (few steps,
    high learning rate), which makes eval-mode outputs much worse than train-mode ones; recomputing them
    ("precise BN") removes the lag. Dropout is off during the pass, so the statistics match eval-time inputs.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d)]
    momenta = [m.momentum for m in norms]
    was_training = model.training
    # Train mode so that every BatchNorm normalises with (and records) batch statistics; dropout off.
    model.train()
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    try:
        for idx in _batches(points.shape[0], batch_size):
            model.forward_points(points[idx].to(device), _rows(objects, idx, device))
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.train(was_training)


def _rows(objects: torch.Tensor | None, idx: torch.Tensor, device: torch.device) -> torch.Tensor | None:
    return None if objects is None else objects[idx].to(device)


@torch.no_grad()
def _mean_loss(model: TwoHandPointNet, points: torch.Tensor, targets: torch.Tensor, batch_size: int,
               device: torch.device, objects: torch.Tensor | None = None) -> float:
    model.eval()
    total = 0.0
    for idx in _batches(points.shape[0], batch_size):
        pred = model.forward_points(points[idx].to(device), _rows(objects, idx, device))[0]
        total += float(F.mse_loss(pred, targets[idx].to(device), reduction="sum"))
    return total / targets.numel()


def train_feature_extractor(
    verts: Any,
    targets: Any,
    val_split: float = 0.1,
    epochs: int = 30,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    out_path: str | os.PathLike = "feature_extractor",
    progress: bool = True,
    *,
    config: FeatureExtractorConfig | None = None,
    points_per_hand: int = 128,
    weight_decay: float = 1e-4,
    bn_calibration_samples: int = 4096,
    device: torch.device | str = "cpu",
    object_points: Any = None,
) -> dict[str, Any]:
    """Train :class:`TwoHandPointNet` to regress ``targets`` from ``verts`` and save it to ``out_path``.

    Procedure: a seeded random ``val_split`` fraction of the samples is held out; targets are standardised with
    the training split's per-dimension mean and standard deviation (a constant dimension, such as the anchor
    hand's canonical rotation, keeps std 1 and is only centred), stored in the model; AdamW (lr, weight_decay)
    with a cosine learning-rate decay to 0 over ``epochs``; MSE loss on standardised targets. After every epoch
    the BatchNorm running statistics are recomputed exactly ("precise BN", dropout off) on the first
    ``bn_calibration_samples`` training samples (in shuffled order), so eval-mode outputs do not suffer from
    the lag of exponential averages. The weights with
    the lowest validation loss (or the last ones without a validation split) are saved with
    :func:`save_feature_extractor`.

    Args:
        verts: [N, 2, V, 3] vertices in metres (slot 0 left hand, slot 1 right hand), numpy or torch.
        targets: [N, T] parameters to regress (T = 128: each hand's 64 numbers, left then right).
        object_points: None, or [N, Q, 3] object surface points (same frame as ``verts``): trains an
            object-aware extractor (default config with ``object_points = Q``).
        val_split: fraction in [0, 1) held out for validation.
        config: architecture; default ``FeatureExtractorConfig`` with ``num_vertices = V``, ``num_outputs = T``
            and ``vertex_indices`` = FPS (from vertex 0) of ``points_per_hand`` vertices on the mean left hand
            of the training split, each sample centred on its own vertex mean.
        device: where training runs.
    Returns:
        dict with per-epoch ``train_loss`` and ``val_loss`` lists, ``initial_val_loss`` (before training),
        ``best_epoch``, ``best_val_loss`` (None without validation), ``num_train``, ``num_val``, ``weights_sha256`` and ``out_path``.
    """
    x = _as_float_tensor(verts, "verts").float()
    y = _as_float_tensor(targets, "targets").double()
    if x.ndim != 4 or x.shape[1] != 2 or x.shape[3] != 3:
        raise InputError(f"argument 'verts' must have shape [N, 2, V, 3], got {list(x.shape)}")
    if y.ndim != 2:
        raise InputError(f"argument 'targets' must have shape [N, T], got {list(y.shape)}")
    if y.shape[0] != x.shape[0]:
        raise InputError(f"arguments 'verts' and 'targets' must have the same N, got {x.shape[0]} and {y.shape[0]}")
    if not bool(torch.isfinite(x).all()):
        raise InputError("argument 'verts' contains NaN or inf")
    if not bool(torch.isfinite(y).all()):
        raise InputError("argument 'targets' contains NaN or inf")
    obj = None if object_points is None else _as_float_tensor(object_points, "object_points").float()
    if obj is not None and (obj.ndim != 3 or obj.shape[0] != x.shape[0] or obj.shape[2] != 3
                            or not bool(torch.isfinite(obj).all())):
        raise InputError(f"argument 'object_points' must be finite with shape [{x.shape[0]}, Q, 3], got "
                         f"{list(obj.shape)}")
    if not isinstance(val_split, (int, float)) or not 0.0 <= float(val_split) < 1.0:
        raise InputError(f"argument 'val_split' must be in [0, 1), got {val_split!r}")
    for name, value, minimum in (("epochs", epochs, 1), ("batch_size", batch_size, 2),
                                 ("bn_calibration_samples", bn_calibration_samples, 2)):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise InputError(f"argument '{name}' must be an integer >= {minimum}, got {value!r}")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise InputError(f"argument 'lr' must be a positive number, got {lr!r}")
    n = x.shape[0]
    num_val = int(round(float(val_split) * n))
    num_train = n - num_val
    if num_train < 2:
        raise InputError(f"training split has {num_train} samples (N = {n}, val_split = {val_split}); need >= 2")
    if val_split > 0 and num_val < 1:
        raise InputError(f"val_split = {val_split} of N = {n} leaves no validation sample; raise val_split or N")
    device = torch.device(device)

    generator = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(n, generator=generator)
    train_idx, val_idx = perm[:num_train], perm[num_train:]

    if config is None:
        reference = x[train_idx, 0]
        reference = (reference - reference.mean(dim=1, keepdim=True)).mean(dim=0)
        config = FeatureExtractorConfig(
            num_vertices=int(x.shape[2]),
            vertex_indices=tuple(select_vertex_indices(reference.numpy(), points_per_hand)),
            num_outputs=int(y.shape[1]),
            object_points=0 if obj is None else int(obj.shape[1]),
        )
    else:
        if config.num_vertices != x.shape[2]:
            raise InputError(f"config.num_vertices = {config.num_vertices} but 'verts' has V = {x.shape[2]}")
        if config.num_outputs != y.shape[1]:
            raise InputError(f"config.num_outputs = {config.num_outputs} but 'targets' has T = {y.shape[1]}")
        if config.object_points != (0 if obj is None else obj.shape[1]):
            raise InputError(f"config.object_points = {config.object_points} but 'object_points' gives "
                             f"{0 if obj is None else obj.shape[1]}")

    target_mean = y[train_idx].mean(dim=0)
    target_std = y[train_idx].std(dim=0, unbiased=False)
    target_std = torch.where(target_std > 1e-12 * target_mean.abs().clamp_min(1.0), target_std, torch.ones_like(target_std))
    y_std = ((y - target_mean) / target_std).float()
    points = x.index_select(2, torch.tensor(config.vertex_indices, dtype=torch.long))

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = TwoHandPointNet(config)
        model.target_mean.copy_(target_mean.float())
        model.target_std.copy_(target_std.float())
        model.to(device)
        optimiser = torch.optim.AdamW(model.parameters(), lr=float(lr), weight_decay=float(weight_decay))
        steps_per_epoch = len(_batches(num_train, batch_size))
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=epochs * steps_per_epoch)

        train_points, train_targets = points[train_idx], y_std[train_idx]
        calibration_points = train_points[:bn_calibration_samples]
        val_points, val_targets = points[val_idx], y_std[val_idx]
        train_obj = None if obj is None else obj[train_idx]
        val_obj = None if obj is None else obj[val_idx]
        calibration_obj = None if obj is None else train_obj[:bn_calibration_samples]
        history: dict[str, Any] = {"train_loss": [], "val_loss": []}
        history["initial_val_loss"] = (
            _mean_loss(model, val_points, val_targets, 4 * batch_size, device, val_obj) if num_val else None
        )
        best_state, best_loss, best_epoch = None, float("inf"), -1
        epoch_iter = range(epochs)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            epoch_iter = bar = tqdm(epoch_iter, desc="feature extractor", unit="epoch")
        for epoch in epoch_iter:
            model.train()
            total = 0.0
            for idx in _batches(num_train, batch_size, torch.randperm(num_train, generator=generator)):
                pred = model.forward_points(train_points[idx].to(device), _rows(train_obj, idx, device))[0]
                loss = F.mse_loss(pred, train_targets[idx].to(device))
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                scheduler.step()
                total += float(loss.detach()) * idx.numel()
            history["train_loss"].append(total / num_train)
            _recalibrate_batchnorm(model, calibration_points, 4 * batch_size, device, calibration_obj)
            if num_val:
                val_loss = _mean_loss(model, val_points, val_targets, 4 * batch_size, device, val_obj)
                history["val_loss"].append(val_loss)
                if val_loss < best_loss:
                    best_loss, best_epoch = val_loss, epoch
                    best_state = copy.deepcopy(model.state_dict())
            if bar is not None:
                postfix = {"train": f"{history['train_loss'][-1]:.4f}"}
                if num_val:
                    postfix["val"] = f"{history['val_loss'][-1]:.4f}"
                bar.set_postfix(postfix)
        if best_state is not None:
            model.load_state_dict(best_state)
        else:
            best_epoch, best_loss = epochs - 1, None
    model.eval()
    history.update(best_epoch=best_epoch, best_val_loss=best_loss, num_train=num_train, num_val=num_val)
    training_record = {
        "epochs": epochs, "batch_size": batch_size, "lr": float(lr), "weight_decay": float(weight_decay),
        "seed": int(seed), "val_split": float(val_split), "optimizer": "AdamW", "loss": "mse",
        "schedule": "cosine", "bn_calibration_samples": int(bn_calibration_samples), **{k: history[k] for k in ("best_epoch", "best_val_loss", "initial_val_loss",
                                                         "num_train", "num_val")},
        "final_train_loss": history["train_loss"][-1],
    }
    out_dir = save_feature_extractor(model, out_path, training=training_record)
    history["weights_sha256"] = json.loads((out_dir / CONFIG_FILE).read_text())["weights_sha256"]
    history["out_path"] = str(out_dir)
    return history
