"""Two-hand reconstruction by optimisation with a two-hand prior (docs/fitting.md).

    >>> from interhandgen.fitting import fit, load_observations
    >>> obs, order = load_observations("obs.json")
    >>> result = fit(obs, prior="interhandgen")          # result.two_hands: a TwoHandSet in the camera frame

Pure and batched over frames: observations (:class:`Observations`: 2D keypoints + pinhole camera, 3D joints,
masks, an initial TwoHandSet), the unknowns and the hands they pose (:mod:`.body`), priors (:mod:`.priors`), the
staged optimisation (:mod:`.fit`), evaluation metrics (:mod:`.metrics`), overlays (:mod:`.overlay`).
"""

from interhandgen.fitting.api import DEFAULT_PRIOR_WEIGHTS, DEFAULT_VARIANT, fit, make_prior
from interhandgen.fitting.body import TwoHandBody, canonical_from_camera, set_from_vectors, vectors_from_set
from interhandgen.fitting.camera import look_at, project
from interhandgen.fitting.fit import Fitter, FitResult, FitSettings, data_terms
from interhandgen.fitting.observations import (
    JOINT_ORDERS,
    Observations,
    from_mano21,
    load_observations,
    parse_observations,
    save_observations,
    to_mano21,
)
from interhandgen.fitting.priors import PRIORS, DiffusionPrior, GaussianPrior, NoPrior, VAEPrior

__all__ = [
    "DEFAULT_PRIOR_WEIGHTS", "DEFAULT_VARIANT", "fit", "make_prior", "TwoHandBody", "canonical_from_camera",
    "set_from_vectors", "vectors_from_set", "look_at", "project", "Fitter", "FitResult", "FitSettings", "data_terms",
    "JOINT_ORDERS", "Observations", "from_mano21", "load_observations", "parse_observations", "save_observations",
    "to_mano21", "PRIORS", "DiffusionPrior", "GaussianPrior", "NoPrior", "VAEPrior",
]
