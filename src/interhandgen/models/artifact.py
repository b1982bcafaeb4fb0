"""The saved-model format: everything needed to sample a trained model, in one safetensors file.

A model file (``.safetensors``) holds the EMA weights under ``net.*``, the standardisation statistics under
``stats.mean`` / ``stats.std`` ([2, 64]: anchor row, other row), and in its metadata:

- ``format``: ``interhandgen.model.v2`` (``v1``: the earlier header without hand model, layout and conditioning);
- ``header``: JSON with ``kind``, ``model_config`` (network config), ``schedule`` (noise schedule:
  ``schedule``, ``num_timesteps``, ``beta_start``, ``beta_end``), ``hand_model`` (the
  :class:`~interhandgen.data.format.HandModelSpec` it was trained with: ``open_hand`` or ``mano`` with the files'
  SHA-256 and the shapedirs-fix flag; paths are not kept, they belong to the machine), ``layout_version`` (the
  canonical 64-number layout, :data:`interhandgen.data.canonical.LAYOUT_VERSION`), ``conditioning`` (the condition
  slots it was trained with: ``["hand"]``) and ``provenance`` (data fingerprint, command, commit, training config).

v1 files (the bundled ``small.safetensors`` among them) keep loading: their schedule comes from the training config
in their provenance, their layout is version 1 and their conditioning ``["hand"]``; they record no hand model, so
the hand model given by the caller is used (the bundled model was trained on the open hand).

A training checkpoint (``checkpoint.pt``) can be loaded in place of a model file (its EMA weights);
:func:`read_training_checkpoint` is the one reader of that format, so that inference need not import the trainer.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save as st_save

from interhandgen._atomic import atomic_write_bytes
from interhandgen.data.canonical import HAND_DIM, LAYOUT_VERSION
from interhandgen.data.format import HandModelSpec
from interhandgen.diffusion import Schedule
from interhandgen.exceptions import InputError, MissingFileError, ModelMismatchError
from interhandgen.limits import check_model_stats
from interhandgen.models.registry import build_model, model_kind, registered
from interhandgen.reproducible import canonical_safetensors
from interhandgen.safe_files import loads_json

MODEL_FORMAT = "interhandgen.model.v2"
MODEL_FORMAT_V1 = "interhandgen.model.v1"
CHECKPOINT_FORMAT = "interhandgen.train.v1"
CONDITIONING = ("hand",)
#: Condition slots this library can provide (an object model's file records ``["hand", "object"]``).
KNOWN_CONDITIONING = ("hand", "object")
SCHEDULE_KEYS = ("schedule", "num_timesteps", "beta_start", "beta_end")
_CHECKPOINT_FIELDS = ("step", "epoch", "next_batch", "model", "ema", "optimizer", "rng", "model_config",
                      "train_config", "stats", "data", "log_rows")


def hand_model_record(spec: HandModelSpec | None) -> dict[str, Any] | None:
    """What a model file keeps of a hand model: kind, file hashes, shapedirs flag (no machine-local paths)."""
    if spec is None:
        return None
    if spec.kind == "open_hand":
        return {"kind": "open_hand"}
    return {"kind": "mano", "mano_right_sha256": spec.mano_right_sha256, "mano_left_sha256": spec.mano_left_sha256,
            "fix_left_shapedirs": bool(spec.fix_left_shapedirs)}


def schedule_record(train_config: dict[str, Any]) -> dict[str, Any]:
    """The noise-schedule keys of a training config (defaults as in :class:`interhandgen.training.TrainConfig`)."""
    defaults = {"schedule": "linear", "num_timesteps": 129, "beta_start": 1e-4, "beta_end": 0.01}
    return {k: train_config.get(k, defaults[k]) for k in SCHEDULE_KEYS}


@dataclasses.dataclass
class ModelArtifact:
    """A trained model as stored: weights, statistics and the header (see the module docstring)."""

    state_dict: dict[str, torch.Tensor]
    model_config: dict[str, Any]
    stats_mean: torch.Tensor
    stats_std: torch.Tensor
    schedule: dict[str, Any]
    hand_model: dict[str, Any] | None = None
    layout_version: int = LAYOUT_VERSION
    conditioning: tuple[str, ...] = CONDITIONING
    provenance: dict[str, Any] = dataclasses.field(default_factory=dict)
    source: str = ""
    # Object models only: what they need to place an object of a family (``orientations``: per family, world
    # rotations (axis-angle) of the training objects; ``num_points``: surface points per object). None otherwise,
    # and then absent from the header, so two-hand model files keep their bytes.
    objects: dict[str, Any] | None = None

    @property
    def kind(self) -> str:
        return model_kind(self.model_config)

    @property
    def train_config(self) -> dict[str, Any]:
        return dict(self.provenance.get("train_config", {}))

    def header(self) -> dict[str, Any]:
        h = {"kind": self.kind, "model_config": self.model_config, "schedule": self.schedule,
             "hand_model": self.hand_model, "layout_version": self.layout_version,
             "conditioning": list(self.conditioning), "provenance": self.provenance}
        if self.objects is not None:
            h["objects"] = self.objects
        return h

    def resolve_hand_model(self, given: HandModelSpec | None) -> HandModelSpec:
        """The hand model to decode this model's samples with.

        ``given`` None: the recorded open hand (or, for a file that records none, the open hand); a recorded MANO
        model needs its files, so that raises :class:`ModelMismatchError` saying what to pass. ``given`` set: it
        must be the recorded hand model (same kind, same file hashes, same shapedirs flag).
        """
        rec = self.hand_model
        where = self.source or "the model"
        if given is None:
            if rec is not None and rec["kind"] == "mano":
                raise ModelMismatchError(
                    f"{where} was trained with MANO hand models (MANO_RIGHT.pkl SHA-256 "
                    f"{rec['mano_right_sha256'][:12] or '?'}..., MANO_LEFT.pkl {rec['mano_left_sha256'][:12] or '?'}..., "
                    f"fix_left_shapedirs={rec['fix_left_shapedirs']}): pass --mano-dir DIR (the folder holding "
                    "those MANO_RIGHT.pkl / MANO_LEFT.pkl) or hand_model=HandModelSpec.mano(DIR, "
                    f"fix_left_shapedirs={rec['fix_left_shapedirs']})")
            return HandModelSpec.open_hand()
        if rec is None:
            return given
        if rec["kind"] != given.kind:
            raise ModelMismatchError(f"{where} was trained with hand model {rec['kind']!r}, but {given.kind!r} was "
                                     "given; decode it with the hand model it was trained with")
        if rec["kind"] == "mano":
            for side in ("right", "left"):
                want, got = rec[f"mano_{side}_sha256"], getattr(given, f"mano_{side}_sha256")
                if want and got and want != got:
                    raise ModelMismatchError(
                        f"{where} was trained with a MANO {side} model of SHA-256 {want[:12]}..., the given file "
                        f"{getattr(given, f'mano_{side}')} has {got[:12]}...")
            if bool(rec["fix_left_shapedirs"]) != bool(given.fix_left_shapedirs):
                raise ModelMismatchError(
                    f"{where} was trained with fix_left_shapedirs={rec['fix_left_shapedirs']}, the given MANO "
                    f"hand model has {given.fix_left_shapedirs}")
        return given


def export_model(
    state_dict: dict[str, torch.Tensor],
    model_config: dict[str, Any],
    stats_mean: torch.Tensor,
    stats_std: torch.Tensor,
    path: str | os.PathLike,
    provenance: dict[str, Any] | None = None,
    *,
    hand_model: HandModelSpec | None = None,
    conditioning: tuple[str, ...] = CONDITIONING,
    objects: dict[str, Any] | None = None,
) -> str:
    """Write a model file (format v2) atomically; returns its SHA-256.

    ``provenance`` should hold ``train_config`` (the schedule is taken from it), ``data`` (fingerprint),
    ``command`` and ``commit`` where known; ``hand_model`` the hand model the training data used; ``objects``
    (object models) the ``objects`` header field.
    """
    provenance = dict(provenance or {})
    model_kind(model_config)  # refuse an unknown kind before writing
    tensors = {f"net.{k}": v.detach().cpu().contiguous() for k, v in state_dict.items()}
    tensors["stats.mean"] = stats_mean.detach().cpu().float().contiguous()
    tensors["stats.std"] = stats_std.detach().cpu().float().contiguous()
    art = ModelArtifact({}, model_config, stats_mean, stats_std, schedule_record(provenance.get("train_config", {})),
                        hand_model_record(hand_model), LAYOUT_VERSION, tuple(conditioning), provenance,
                        objects=objects)
    metadata = {"format": MODEL_FORMAT, "header": json.dumps(art.header(), sort_keys=True)}
    payload = canonical_safetensors(st_save(tensors, metadata=metadata))  # same model, same bytes
    atomic_write_bytes(path, payload)
    return hashlib.sha256(payload).hexdigest()


def read_model_file(path: str | os.PathLike) -> ModelArtifact:
    """Read a model file (format v2 or v1) into a :class:`ModelArtifact`; errors name the file and the field."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"model file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as exc:  # safetensors raises several types for foreign or truncated files
        raise InputError(f"{path}: not a readable safetensors model file: {exc}") from None
    fmt = meta.get("format")
    if fmt not in (MODEL_FORMAT, MODEL_FORMAT_V1):
        raise InputError(f"{path}: expected model format {MODEL_FORMAT!r} (or {MODEL_FORMAT_V1!r}) in the metadata, "
                         f"found {fmt!r}")
    for key in ("stats.mean", "stats.std"):
        if key not in tensors:
            raise InputError(f"{path}: missing tensor {key!r}")
    state = {k[len("net."):]: v for k, v in tensors.items() if k.startswith("net.")}
    mean, std = tensors["stats.mean"], tensors["stats.std"]
    check_model_stats(str(path), mean, std)
    field = "model_config" if fmt == MODEL_FORMAT_V1 else "header"
    if field not in meta:
        raise InputError(f"{path}: missing metadata field {field!r}")
    try:
        if fmt == MODEL_FORMAT_V1:
            model_config = loads_json(meta["model_config"], f"{path}: metadata field 'model_config'", allow_nan=False)
            provenance = loads_json(meta.get("provenance", "{}"), f"{path}: metadata field 'provenance'")
            _require_objects(path, model_config=model_config, provenance=provenance)
            return ModelArtifact(state, model_config, mean, std, schedule_record(provenance.get("train_config", {})),
                                 None, 1, CONDITIONING, provenance, str(path))
        h = loads_json(meta["header"], f"{path}: metadata field 'header'", allow_nan=False)
        _require_objects(path, header=h)
        _require_objects(path, model_config=h["model_config"], schedule=h["schedule"], provenance=h["provenance"])
        if "objects" in h:
            _require_objects(path, objects=h["objects"])
        art = ModelArtifact(state, h["model_config"], mean, std, h["schedule"], h["hand_model"],
                            int(h["layout_version"]), tuple(h["conditioning"]), h["provenance"], str(path),
                            h.get("objects"))
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"{path}: malformed model header ({type(exc).__name__}: {exc})") from None
    if art.layout_version != LAYOUT_VERSION:
        raise ModelMismatchError(f"{path}: canonical layout version {art.layout_version}; this library reads "
                                 f"version {LAYOUT_VERSION}")
    unknown = sorted(set(art.conditioning) - set(KNOWN_CONDITIONING))
    if unknown:
        raise ModelMismatchError(f"{path}: conditioned on {unknown}, which this library cannot provide "
                                 f"(known: {list(KNOWN_CONDITIONING)})")
    return art


def _require_objects(path: Path, **fields: Any) -> None:
    for name, value in fields.items():
        if not isinstance(value, dict):
            raise InputError(f"{path}: metadata field '{name}' must be a JSON object, got {type(value).__name__}")


def read_training_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a training checkpoint (``checkpoint.pt`` or its run folder), with a clear error for missing, corrupt
    or foreign files."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise MissingFileError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated/corrupt files
        raise InputError(f"{path}: not a readable interhandgen checkpoint (corrupt or truncated?): {exc}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise InputError(f"{path}: expected checkpoint format {CHECKPOINT_FORMAT!r}, found {found!r}")
    missing = [k for k in _CHECKPOINT_FIELDS if k not in ckpt]
    if missing:
        raise InputError(f"{path}: checkpoint lacks field(s) {missing}")
    stats = ckpt["stats"]
    if not isinstance(stats, dict) or not all(isinstance(stats.get(k), torch.Tensor) for k in ("mean", "std")):
        raise InputError(f"{path}: field 'stats' must hold the tensors 'mean' and 'std'")
    if not isinstance(ckpt["model_config"], dict) or not isinstance(ckpt["train_config"], dict):
        raise InputError(f"{path}: fields 'model_config' and 'train_config' must be mappings")
    check_model_stats(str(path), stats["mean"], stats["std"])
    return ckpt


def read_model(path: str | os.PathLike) -> ModelArtifact:
    """A model from a model file (.safetensors), a training checkpoint (.pt; its EMA weights) or a run folder
    (its model.safetensors, else its checkpoint.pt)."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.safetensors" if (path / "model.safetensors").is_file() else path / "checkpoint.pt"
    if not path.exists():
        raise MissingFileError(f"model not found: {path}")
    if path.suffix == ".safetensors":
        return read_model_file(path)
    ckpt = read_training_checkpoint(path)
    return ModelArtifact(ckpt["ema"], ckpt["model_config"], ckpt["stats"]["mean"], ckpt["stats"]["std"],
                         schedule_record(ckpt["train_config"]), ckpt.get("hand_model"), LAYOUT_VERSION,
                         registered(ckpt["model_config"]).conditioning,
                         {"train_config": ckpt["train_config"], "data": ckpt["data"]}, str(path), ckpt.get("objects"))


def build_network(art: ModelArtifact, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The network of a model with its weights, in eval mode on ``device``."""
    try:
        schedule = Schedule.from_config(art.schedule) if art.model_config.get("prediction", "x0") != "x0" else None
        net = build_model(art.model_config, schedule)
    except (ValueError, TypeError, KeyError) as exc:  # the config comes from the file
        raise InputError(f"{art.source}: invalid model config: {exc}") from None
    try:
        net.load_state_dict(art.state_dict)
    except (RuntimeError, TypeError, AttributeError) as exc:  # a foreign or damaged state dict
        raise InputError(f"{art.source}: weights do not fit the model config stored with them: {exc}") from None
    for name, t in (("stats.mean", art.stats_mean), ("stats.std", art.stats_std)):
        if tuple(t.shape) != (2, HAND_DIM):
            raise InputError(f"{art.source}: {name} must have shape [2, {HAND_DIM}], got {list(t.shape)}")
    return net.to(device).eval()
