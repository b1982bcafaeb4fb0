"""The bundled feature extractor and the data preparation for training one."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from interhandgen.exceptions import MissingFileError
from interhandgen.data.canonical import to_canonical
from interhandgen.data.format import TwoHandSet
from interhandgen.evaluation.features import load_feature_extractor, train_feature_extractor
from interhandgen.evaluation.object_features import OBJECT_POINTS, canonical_object_points
from interhandgen.exceptions import InputError
from interhandgen.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from interhandgen.evaluation.protocol import canonical_two_hand_vertices

#: Directory (config.json + model.safetensors, as written by ``save_feature_extractor``) of the evaluator for the
#: synthetic data set, built by ``interhandgen evaluator train --data data/synth.npz --out DIR --epochs 4
#: --max-samples 8000`` (see docs/bundled_model.md).
BUNDLED_EVALUATOR = "evaluator_open_hand_synth"


def bundled_evaluator_path() -> Path:
    """Directory of the bundled feature extractor (holds config.json and model.safetensors)."""
    path = Path(str(resources.files("interhandgen") / "evaluation" / "assets" / BUNDLED_EVALUATOR))
    missing = [name for name in ("config.json", "model.safetensors") if not (path / name).is_file()]
    if missing:
        raise MissingFileError(
            f"the bundled feature extractor {path} is missing {', '.join(missing)} in this installation; pass "
            "--evaluator PATH (train one with `interhandgen evaluator train --data DATA.npz --out DIR`)"
        )
    return path


def load_evaluator(path: str | Path | None = None, device: str | torch.device = "cpu"):
    """Load a feature extractor (directory or its config.json) in eval mode; ``None`` loads the bundled one."""

    return load_feature_extractor(bundled_evaluator_path() if path is None else Path(path), device=device)


def evaluator_training_arrays(two_hands, models=None, device="cpu", objects: bool = False):
    """(vertices [N, 2, V, 3] in the left hand's canonical frame, targets [N, 128] = both canonical 64-vectors);
    with ``objects``: (vertices, targets [N, 140] = the hands' 128 then the object's 12, object points [N, Q, 3])
    (:mod:`interhandgen.evaluation.object_features`)."""

    models = models or two_hands.hand_models(device=device)
    verts = canonical_two_hand_vertices(two_hands, models, device)
    x = to_canonical(two_hands, models, anchor="left", device=device, dtype=torch.float32).x
    targets = x.reshape(x.shape[0], 128)
    if not objects:
        return verts, targets
    points, obj_targets = canonical_object_points(two_hands, models, OBJECT_POINTS, device, "the training data",
                                                  with_targets=True)
    return verts, torch.cat([targets, obj_targets], dim=1), points


#: Object jitter of the evaluator's training copies (``object_augment``): Gaussian translation (m) per axis and
#: rotation (rad) per axis-angle component, about the object's origin.
OBJECT_JITTER_M = 0.02
OBJECT_JITTER_RAD = 0.25


def jitter_objects(two_hands, copies: int, seed: int = 0) -> TwoHandSet:
    """The set followed by ``copies`` copies of it whose objects are moved by seeded random rigid motions
    (:data:`OBJECT_JITTER_M`, :data:`OBJECT_JITTER_RAD`; R' = dR R, t' = t + dt), hands unchanged."""
    if isinstance(copies, bool) or not isinstance(copies, int) or copies < 0:
        raise InputError(f"argument 'copies' must be an integer >= 0, got {copies!r}")
    n = len(two_hands)
    out = two_hands[np.tile(np.arange(n), copies + 1)]
    if copies == 0:
        return out
    rng = np.random.default_rng(seed)
    pose = np.asarray(out.object_pose, dtype=np.float64).copy()
    m = copies * n
    pose[n:, 4:7] += rng.normal(0.0, OBJECT_JITTER_M, (m, 3))
    dR = axis_angle_to_matrix(torch.as_tensor(rng.normal(0.0, OBJECT_JITTER_RAD, (m, 3))))
    pose[n:, 1:4] = matrix_to_axis_angle(dR @ axis_angle_to_matrix(torch.as_tensor(pose[n:, 1:4]))).numpy()
    return out._replace(object_pose=pose.astype(out.object_pose.dtype))


def train_evaluator(data_path: str | Path, out: str | Path, epochs: int = 30, max_samples: int | None = None,
                    seed: int = 0, device: str = "cpu", progress: bool = True, objects: bool | None = None,
                    object_augment: int = 0, **kw: Any) -> dict[str, Any]:
    """Train the feature extractor on the train split of a TwoHandSet file (a seeded held-out 10% validates).

    ``objects``: train an object-aware extractor (object points as a third channel); None: when the file has an
    object library; True on a file without one raises. ``object_augment = K``: train an object-aware extractor
    on the pairs plus K copies with jittered objects (:func:`jitter_objects`; targets computed for the jittered
    objects), which teaches it where the object is on small grasp sets (the seeded 10 % validation split is then
    drawn from all copies).
    """

    data = TwoHandSet.load(data_path)
    if data.split is not None:
        data = data.select_split("train")
    if max_samples is not None and len(data) > max_samples:
        g = torch.Generator().manual_seed(seed)
        data = data[torch.randperm(len(data), generator=g)[:max_samples].sort().values.numpy()]
    if objects is None:
        objects = data.object_library is not None
    elif objects and data.object_library is None:
        raise InputError(f"{data_path}: no object library; an object-aware evaluator needs a set with objects")
    if object_augment:
        if not objects:
            raise InputError("object_augment needs an object-aware extractor (a set with objects, not hands-only)")
        data = jitter_objects(data, object_augment, seed)
    arrays = evaluator_training_arrays(data, device=device, objects=objects)
    return train_feature_extractor(arrays[0], arrays[1], epochs=epochs, seed=seed, out_path=out, progress=progress,
                                   device=device, object_points=arrays[2] if objects else None, **kw)
