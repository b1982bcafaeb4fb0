"""Two-hand reconstruction by optimisation with a two-hand prior (docs/fitting.md).

    >>> from interhandgen.fitting import fit, load_observations
    >>> obs, order = load_observations("obs.json")
    >>> result = fit(obs, prior="interhandgen")          # result.two_hands: a TwoHandSet in the camera frame

Pure and batched over frames: observations (:class:`Observations`: 2D keypoints + pinhole camera, 3D joints,
masks, an initial TwoHandSet), the unknowns and the hands they pose (:mod:`.body`), priors (:mod:`.priors`), the
staged optimisation (:mod:`.fit`), evaluation metrics (:mod:`.metrics`), overlays (:mod:`.overlay`).
"""

import importlib

# Lazy attributes (PEP 562): `interhandgen fit --help` and importing one submodule stay light.
_EXPORTS = {
    "api": ("DEFAULT_PLACEMENT_WEIGHTS", "DEFAULT_PRIOR_FIELDS", "DEFAULT_PRIOR_WEIGHTS", "DEFAULT_PRIOR_WEIGHTS_END",
            "DEFAULT_VARIANT", "default_settings", "fit", "make_prior"),
    "body": ("TwoHandBody", "canonical_from_camera", "set_from_vectors", "vectors_from_set"),
    "camera": ("look_at", "project"),
    "fit": ("Fitter", "FitResult", "FitSettings", "data_terms"),
    "observations": ("JOINT_ORDERS", "Observations", "from_mano21", "load_observations", "parse_observations",
                     "save_observations", "to_mano21"),
    "priors": ("PRIORS", "DiffusionPrior", "GaussianPrior", "NoPrior", "VAEPrior"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"interhandgen.fitting.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'interhandgen.fitting' has no attribute {name!r}")


__all__ = [
    "DEFAULT_PLACEMENT_WEIGHTS", "DEFAULT_PRIOR_FIELDS", "DEFAULT_PRIOR_WEIGHTS", "DEFAULT_PRIOR_WEIGHTS_END",
    "DEFAULT_VARIANT", "default_settings", "fit", "make_prior", "TwoHandBody", "canonical_from_camera",
    "set_from_vectors", "vectors_from_set", "look_at", "project", "Fitter", "FitResult", "FitSettings", "data_terms",
    "JOINT_ORDERS", "Observations", "from_mano21", "load_observations", "parse_observations", "save_observations",
    "to_mano21", "PRIORS", "DiffusionPrior", "GaussianPrior", "NoPrior", "VAEPrior",
]
