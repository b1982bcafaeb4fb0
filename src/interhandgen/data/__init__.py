"""Two-hand data: the sample format, the model's canonical representation, and loaders of real data sets.

- :class:`TwoHandSet` (format.py): N two-hand samples in the world frame, saved as a documented .npz.
- canonical.py: the 2 x 64 canonical vectors the model learns, mirroring, standardisation.
- interhand.py / arctic.py: exact loaders of InterHand2.6M (NeuralAnnot MANO json, IntagHand's anno/*.pkl) and
  ARCTIC (raw_seqs/*.mano.npy, *.object.npy); convert.py dispatches between them.

See docs/data.md.
"""

from interhandgen.data.canonical import (
    HAND_DIM,
    CanonicalPairs,
    Standardizer,
    load_training_arrays,
    mirror,
    mirror_canonical,
    mirror_error,
    to_canonical,
    to_world,
)
from interhandgen.data.format import (
    FORMAT_VERSION,
    HAND_SIDES,
    POSE_SPACES,
    HandModelSpec,
    HandParams,
    TwoHandSet,
    axis_angle_to_pca,
    concatenate,
    pca_to_axis_angle,
)

__all__ = [
    "FORMAT_VERSION", "HAND_SIDES", "POSE_SPACES", "HAND_DIM", "HandModelSpec", "HandParams", "TwoHandSet",
    "concatenate", "axis_angle_to_pca", "pca_to_axis_angle", "CanonicalPairs", "to_canonical", "to_world", "mirror",
    "mirror_canonical", "mirror_error", "Standardizer", "load_training_arrays",
]
