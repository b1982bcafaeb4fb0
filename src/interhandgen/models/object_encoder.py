"""The object-conditioned shared denoiser: an object encoder whose token conditions BOTH cascade stages.

``ObjectConditionedDenoiser`` = the shared :class:`interhandgen.models.Denoiser` + an object encoder of the
object's surface points with normals ([B, P, 6], object frame, see :mod:`interhandgen.objects.frame`) giving ONE
token of the denoiser's width, which takes part in the denoiser's attention as an extra token
(``extra_tokens``) in both stages. Rows without an object use a learned null object token (object-token dropout in
training), so one network serves with and without an object.

Encoders (``object_encoder.type``):
- ``pointnet``: a shared per-point MLP (6 -> width -> width -> 2 width) and a max-pool over the points (PointNet),
  then an MLP to the token. Permutation-invariant by construction.
- ``bps``: a basis point set (Prokudin et al. 2019): ``basis`` fixed points drawn uniformly in a ball of
  ``bps_radius`` metres (seeded, stored in the weights); per basis point, the signed distance to the object
  sampled by its surface points, (b - q) . n_q with q the nearest surface point and n_q its normal, then an MLP
  of the [basis] features to the token.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from interhandgen.exceptions import InputError
from interhandgen.models.baselines import JointDenoiser
from interhandgen.models.config import DenoiserConfig
from interhandgen.models.denoiser import Denoiser, TokenMLP

ENCODER_TYPES = ("pointnet", "bps")


@dataclasses.dataclass(frozen=True)
class ObjectEncoderConfig:
    """The ``object_encoder:`` mapping of an object model's config.

    type: ``pointnet`` or ``bps``; width: hidden width of the per-point MLP (pointnet) or of the feature MLP (bps);
    basis: basis points (bps); bps_radius: radius of the basis ball (metres; the objects' largest extent is 40 cm);
    seed: draws the basis; num_points: surface points per object expected in the input; stack_bias: the token also
    conditions every layer of the denoiser's stack directly, as a per-layer bias (a linear map of the token), beside
    its place in the attention (False: the attention only, as in the bundled model).
    """

    type: str = "pointnet"
    width: int = 64
    basis: int = 256
    bps_radius: float = 0.25
    seed: int = 0
    num_points: int = 256
    stack_bias: bool = False

    def __post_init__(self) -> None:
        if self.type not in ENCODER_TYPES:
            raise InputError(f"model.object_encoder.type must be one of {ENCODER_TYPES}, got {self.type!r}")
        for name in ("width", "basis", "num_points"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise InputError(f"model.object_encoder.{name} must be a positive int, got {v!r}")
        if not (isinstance(self.bps_radius, (int, float)) and self.bps_radius > 0):
            raise InputError(f"model.object_encoder.bps_radius must be > 0 metres, got {self.bps_radius!r}")
        if not isinstance(self.stack_bias, bool):
            raise InputError(f"model.object_encoder.stack_bias must be true or false, got {self.stack_bias!r}")

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "ObjectEncoderConfig":
        d = dict(d or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise InputError(f"unknown key(s) {unknown} in model.object_encoder; known: {sorted(names)}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check_points(points: torch.Tensor) -> None:
    if not isinstance(points, torch.Tensor) or points.dim() != 3 or points.shape[-1] != 6:
        raise InputError("object points must have shape [B, P, 6] (points and unit normals), got "
                         f"{list(points.shape) if isinstance(points, torch.Tensor) else type(points).__name__}")


class PointNetEncoder(nn.Module):
    """[B, P, 6] -> [B, E]: shared point MLP, max-pool, token MLP. Points are scaled by 10 (decimetres), as the
    reference evaluator does for hand points, so that the first layer sees unit-order inputs."""

    def __init__(self, cfg: ObjectEncoderConfig, embed_dim: int, hidden_dim: int) -> None:
        super().__init__()
        w = cfg.width
        self.point_mlp = nn.Sequential(nn.Linear(6, w), nn.SiLU(), nn.Linear(w, w), nn.SiLU(), nn.Linear(w, 2 * w))
        self.out = TokenMLP(2 * w, hidden_dim, embed_dim)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        _check_points(points)
        x = torch.cat([points[..., :3] * 10.0, points[..., 3:]], -1)
        return self.out(self.point_mlp(x).amax(dim=1))


class BPSEncoder(nn.Module):
    """[B, P, 6] -> [B, E]: signed distances of fixed basis points to the sampled surface, then an MLP."""

    def __init__(self, cfg: ObjectEncoderConfig, embed_dim: int, hidden_dim: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(cfg.seed)
        direction = F.normalize(torch.randn(cfg.basis, 3, generator=g), dim=1)
        radius = cfg.bps_radius * torch.rand(cfg.basis, 1, generator=g) ** (1.0 / 3.0)
        self.register_buffer("basis", direction * radius)
        self.out = nn.Sequential(nn.Linear(cfg.basis, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, hidden_dim),
                                 nn.SiLU(), nn.Linear(hidden_dim, embed_dim))

    def features(self, points: torch.Tensor) -> torch.Tensor:
        """[B, P, 6] -> [B, basis] signed distances (metres) of the basis points to the sampled surface."""
        _check_points(points)
        basis = self.basis.to(points.dtype)
        idx = torch.cdist(basis.expand(points.shape[0], -1, -1), points[..., :3]).argmin(dim=2)  # [B, K]
        near = torch.gather(points, 1, idx[..., None].expand(-1, -1, 6))
        return ((basis[None] - near[..., :3]) * near[..., 3:]).sum(-1)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(points) * 10.0)


def row_tokens(null: torch.Tensor, object_token: torch.Tensor | None, object_mask: torch.Tensor | None
               ) -> torch.Tensor:
    """[B, E] each row's object token: ``object_token`` [B, E] where ``object_mask`` [B] (bool; None: every row) is
    True, else the null token (``null`` [B, E]); all null when ``object_token`` is None."""
    if object_token is None:
        return null
    B, E = null.shape
    if object_token.shape != (B, E):
        raise InputError(f"object_token must have shape [{B}, {E}], got {list(object_token.shape)}")
    token = object_token.to(null.dtype)
    if object_mask is None:
        return token
    if object_mask.shape != (B,) or object_mask.dtype != torch.bool:
        raise InputError(f"object_mask must be a bool tensor of shape [{B}]")
    return torch.where(object_mask[:, None], token, null)


class ObjectConditionedDenoiser(nn.Module):
    """The shared denoiser with an object token (module docstring).

    ``forward(x_t, t, cond, cond_mask, object_token=None, object_mask=None)``: ``object_token`` [B, E] (from
    :meth:`encode`) or None (no object for any row); ``object_mask`` [B] bool, False rows use the null object token.
    """

    def __init__(self, denoiser_cfg: DenoiserConfig, encoder_cfg: ObjectEncoderConfig) -> None:
        super().__init__()
        if denoiser_cfg.reference_compat:
            raise InputError("an object model cannot use reference_compat (its attention runs across the batch)")
        self.denoiser = Denoiser(denoiser_cfg)
        self.encoder_cfg = encoder_cfg
        E, H = denoiser_cfg.embed_dim, denoiser_cfg.hidden_dim
        self.encoder = (PointNetEncoder if encoder_cfg.type == "pointnet" else BPSEncoder)(encoder_cfg, E, H)
        self.null_object = nn.Parameter(torch.randn(E, generator=torch.Generator().manual_seed(1)) * 0.02)
        # stack_bias: a direct path from the token to every stack layer (the attention alone let the bundled model
        # all but ignore its object: docs/results_object.md, "What the object token buys")
        self.object_stack = nn.Linear(E, denoiser_cfg.num_layers * H) if encoder_cfg.stack_bias else None

    @property
    def mixes_batch(self) -> bool:
        return False

    @property
    def cfg(self) -> DenoiserConfig:
        return self.denoiser.cfg

    def encode(self, points: torch.Tensor) -> torch.Tensor:
        """[B, P, 6] object-frame surface points and normals -> [B, E] object tokens."""
        return self.encoder(points)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None, cond_mask: torch.Tensor | None,
                object_token: torch.Tensor | None = None, object_mask: torch.Tensor | None = None) -> torch.Tensor:
        token = row_tokens(self.null_object.to(x_t.dtype).expand(x_t.shape[0], -1), object_token, object_mask)
        layer_bias = None if self.object_stack is None else self.object_stack(token)
        return self.denoiser(x_t, t, cond, cond_mask, extra_tokens=token[:, None], layer_bias=layer_bias)


class BoundObject(nn.Module):
    """An object model with one object (token [1, E] or [B, E]) or none (None: the null object) bound to it: the
    plain ``net(x_t, t, cond, cond_mask)`` network the samplers call. A [1, E] token serves every row (also the 2B
    rows of classifier-free guidance and the rows of a resampling round)."""

    def __init__(self, net: ObjectConditionedDenoiser, token: torch.Tensor | None) -> None:
        super().__init__()
        self.net, self.token = net, token

    @property
    def mixes_batch(self) -> bool:
        return False

    def rows(self, x_t: torch.Tensor) -> torch.Tensor:
        """[B, E] the bound token for each row of ``x_t`` (a [1, E] token repeated)."""
        token = self.token.to(x_t.dtype)
        return token.expand(x_t.shape[0], -1) if token.shape[0] == 1 else token

    def forward(self, x_t, t, cond, cond_mask):
        if self.token is None:
            return self.net(x_t, t, cond, cond_mask)
        return self.net(x_t, t, cond, cond_mask, object_token=self.rows(x_t))


class JointObjectDenoiser(nn.Module):
    """The joint-diffusion baseline with an object ("w/o decomposition" of the object model): ONE diffusion over both
    hands (anchor in the object frame, the other relative to it: the cascade's 128 numbers) whose time embedding
    is added the object's token (the same encoders as :class:`ObjectConditionedDenoiser`, token width = ``width``)
    or a learned null object token.

    ``forward(x_t [B, 128], t [B], cond=None, cond_mask=None, object_token=None, object_mask=None) -> x0 [B, 128]``
    (``cond`` and ``cond_mask`` exist for the samplers' calling convention and must be None).
    """

    def __init__(self, width: int = 512, depth: int = 4, time_dim: int = 128, prediction: str = "x0",
                 object_encoder: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.body = JointDenoiser(width, depth, time_dim, prediction)
        self.encoder_cfg = ObjectEncoderConfig.from_dict(object_encoder)
        self.encoder = (PointNetEncoder if self.encoder_cfg.type == "pointnet" else BPSEncoder)(
            self.encoder_cfg, width, max(width // 2, 64))
        self.null_object = nn.Parameter(torch.randn(width, generator=torch.Generator().manual_seed(1)) * 0.02)

    @property
    def mixes_batch(self) -> bool:
        return False

    def encode(self, points: torch.Tensor) -> torch.Tensor:
        """[B, P, 6] object-frame surface points and normals -> [B, width] object tokens."""
        return self.encoder(points)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond=None, cond_mask=None,
                object_token: torch.Tensor | None = None, object_mask: torch.Tensor | None = None) -> torch.Tensor:
        if cond is not None or cond_mask is not None:
            raise InputError("a joint object model denoises both hands at once: it takes no hand condition")
        token = row_tokens(self.null_object.to(x_t.dtype).expand(x_t.shape[0], -1), object_token, object_mask)
        return self.body.denoise(x_t, t, token)


def build_joint_object_denoiser(params: dict[str, Any]) -> JointObjectDenoiser:
    """From the network keys of a ``joint_object`` model config: JointDenoiser's keys plus ``object_encoder``."""
    return JointObjectDenoiser(**params)


def build_object_denoiser(params: dict[str, Any]) -> ObjectConditionedDenoiser:
    """From the network keys of an object model's config: the denoiser's keys plus ``object_encoder``."""
    params = dict(params)
    enc = ObjectEncoderConfig.from_dict(params.pop("object_encoder", None))
    return ObjectConditionedDenoiser(DenoiserConfig.from_dict(params), enc)
