"""`interhandgen fit`: two-hand reconstruction from keypoints with a two-hand prior (docs/fitting.md)."""

from __future__ import annotations

import argparse
import dataclasses

from interhandgen.cli._args import positive_int


def register(sub) -> None:
    from interhandgen.fitting.priors import DIFFUSION_VARIANTS, PRIORS
    p = sub.add_parser(
        "fit",
        help="fit both hands to 2D/3D keypoints with a two-hand prior",
        description=(
            "Fit the pose, shape, rotation and translation of both hands to the keypoints of every frame of "
            "--observations (obs.json, format in docs/fitting.md) by optimisation with data terms, a prior and a "
            "hand-hand penetration term. Writes a TwoHandSet in the camera frame, one pair per frame, with "
            "per-frame diagnostics (reprojection error in pixels, prior value) in its metadata."
        ),
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--observations", help="obs.json: camera, joint_order and frames of keypoints")
    src.add_argument("--image", help="a photo (JPEG/PNG): 2D keypoints by MediaPipe Hands, camera from EXIF (needs "
                                     "pip install 'interhandgen[image]'; docs/fitting.md)")
    p.add_argument("--fov", type=float, default=None,
                   help="with --image: horizontal field of view in degrees (default: EXIF focal length, else a 26 mm "
                        "equivalent)")
    p.add_argument("--mirrored", action="store_true",
                   help="with --image: the photo is mirrored (a selfie preview); hands keep the detector's labels")
    p.add_argument("--save-observations", default=None,
                   help="with --image: also write the detected keypoints and camera as obs.json")
    p.add_argument("--initial", default=None,
                   help="a two-hand estimate to refine: a TwoHandSet .npz in the camera frame (e.g. another method's "
                        "output, or a previous fit), one pair per frame; with --observations or --image it is the "
                        "starting point and a soft 3D observation (FitSettings.sigma_init), alone the fit refines it "
                        "under the prior and the penetration terms")
    p.add_argument("--out", required=True, help="output .npz (TwoHandSet, camera frame)")
    p.add_argument("--prior", choices=PRIORS, default="interhandgen", help="default %(default)s")
    p.add_argument("--checkpoint", default=None,
                   help="model file of the prior (run folder, checkpoint.pt or .safetensors); default: the bundled "
                        "model (required for --prior vae)")
    p.add_argument("--variant", choices=DIFFUSION_VARIANTS, default=None,
                   help="form of the interhandgen prior term (default: dposer, see docs/fitting.md)")
    p.add_argument("--iterations", type=positive_int, default=None, help="default 600 (FitSettings.iterations)")
    p.add_argument("--prior-weight", type=float, default=None, help="default: the prior's tuned weight")
    p.add_argument("--placement-weight", type=float, default=None,
                   help="with --prior interhandgen or vae: weight of the second hand's placement relative to the "
                        "first in the prior's term (default: the prior's tuned weight, docs/fitting.md)")
    p.add_argument("--prior-weight-end", type=float, default=None,
                   help="prior weight at the end of the finger stage, linear from --prior-weight (default: the prior's "
                        "tuned schedule, docs/fitting.md)")
    p.add_argument("--contact-weight", type=float, default=None, help="default: FitSettings.contact_weight")
    p.add_argument("--penetration-weight", type=float, default=None, help="default 10 (FitSettings)")
    p.add_argument("--flip-hypotheses", action=argparse.BooleanOptionalAction, default=None,
                   help="also try each 2D-only hand's depth-mirrored orientation, chosen per frame by --flip-select "
                        "(default: FitSettings.flip_hypotheses)")
    p.add_argument("--flip-iterations", type=int, default=None,
                   help="stage-2 iterations run on every flip hypothesis before the choice (default: FitSettings)")
    p.add_argument("--flip-select", choices=("energy", "data"), default=None,
                   help="what the flip choice minimises: the fit's energy or the data term alone (default: FitSettings)")
    p.add_argument("--volume-weight", type=float, default=None,
                   help="weight of the volumetric (inscribed-sphere) penetration term (default: FitSettings)")
    p.add_argument("--guided", action=argparse.BooleanOptionalAction, default=None,
                   help="with --prior interhandgen: the ScoreHMR-style guided projection at 0.3 of the finger stage "
                        "(default: on; docs/fitting.md)")
    p.add_argument("--mano-dir", default=None, help="fit MANO hands (MANO_RIGHT.pkl / MANO_LEFT.pkl in this folder) "
                                                    "instead of the bundled open hand; the prior must match")
    p.add_argument("--render", default=None,
                   help="also write a PNG overlay of the fitted meshes on the keypoints (on the photo with --image)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu or cuda (default %(default)s)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from interhandgen.data.format import HandModelSpec
    from interhandgen.exceptions import InputError
    from interhandgen.fitting import (DEFAULT_VARIANT, Fitter, Observations, default_settings, load_observations,
                                      make_prior)
    from interhandgen.io_guard import Out, check_outputs

    check_outputs({"--out": Out(args.out, (".npz",)), "--render": Out(args.render, (".png",)),
                   "--save-observations": Out(args.save_observations, (".json",))},
                  {"--observations": args.observations, "--image": args.image, "--checkpoint": args.checkpoint,
                   "--initial": args.initial})
    if args.observations is None and args.image is None and args.initial is None:
        raise InputError("give what to fit: --observations obs.json, --image photo.jpg and/or --initial estimate.npz")
    if args.image is None and (args.fov is not None or args.mirrored or args.save_observations):
        raise InputError("--fov, --mirrored and --save-observations go with --image")

    variant = args.variant or DEFAULT_VARIANT
    photo = None
    if args.image:
        from interhandgen.fitting.image import observations_from_image

        obs, photo, camera, found = observations_from_image(args.image, mirrored=args.mirrored, fov_degrees=args.fov)
        hands = ", ".join(f"{h['side']} (detector label {h['label']}, score {h['score']:.2f})" for h in found)
        print(f"{args.image}: found {hands}; camera fx = fy = {float(camera.intrinsics[0]):.1f} px from {camera.source}")
        if args.save_observations:
            from interhandgen.fitting import save_observations

            print(f"wrote {save_observations(obs, args.save_observations)}")
    elif args.observations:
        obs, _ = load_observations(args.observations)
    else:
        obs = None
    spec = HandModelSpec.mano(args.mano_dir) if args.mano_dir else HandModelSpec.open_hand()
    if args.initial:
        initial = load_initial(args.initial, spec, None if obs is None else len(obs))
        obs = Observations(initial=initial) if obs is None else dataclasses.replace(obs, initial=initial)
    if args.render and obs.intrinsics is None:  # checked before the fit, not after it
        raise InputError("--render needs a camera: give one in the observations file (its 'camera' field)")
    settings = default_settings(args.prior, iterations=args.iterations, prior_weight=args.prior_weight,
                                prior_weight_end=args.prior_weight_end, penetration_weight=args.penetration_weight,
                                contact_weight=args.contact_weight, flip_hypotheses=args.flip_hypotheses,
                                flip_iterations=args.flip_iterations, flip_select=args.flip_select,
                                volume_weight=args.volume_weight, seed=args.seed, guided=args.guided)
    prior, mean, std = make_prior(args.prior, args.checkpoint, args.device, variant, spec,
                                  placement_weight=args.placement_weight)
    fitter = Fitter(prior, mean, std, spec, settings, args.device)
    result = fitter.fit(obs, progress=not args.no_progress)
    out = result.two_hands.save(args.out)
    rep = [e for e in result.diagnostics["reprojection_px"] if e is not None]
    summary = f", mean reprojection error {sum(rep) / len(rep):.2f} px" if rep else ""
    print(f"wrote {len(result.two_hands)} fitted pairs to {out}{summary}")
    if args.render:
        from interhandgen.fitting.overlay import save_overlay

        verts, joints = fitter.body.meshes(result.vectors)
        faces = (fitter.models["left"].faces, fitter.models["right"].faces)
        save_overlay(args.render, verts.detach(), faces, obs.intrinsics, obs.image_size, obs.keypoints_2d,
                     obs.confidence_2d, joints.detach(), photo=photo)
        print(f"wrote {args.render}")
    return 0


def load_initial(path: str, spec, frames: int | None):
    """The ``--initial`` estimate: a TwoHandSet of hands only, made with the fit's hand model, one pair per frame."""
    from interhandgen.data.format import TwoHandSet
    from interhandgen.exceptions import InputError

    initial = TwoHandSet.load(path)
    if initial.hand_model.kind != spec.kind:
        raise InputError(f"--initial {path}: its hands use the hand model {initial.hand_model.kind!r}, the fit "
                         f"{spec.kind!r} (" + ("drop --mano-dir" if spec.kind != "mano" else "give --mano-dir") +
                         " to fit the estimate's hand model)")
    if initial.object_pose is not None:
        raise InputError(f"--initial {path}: the set holds objects; the fit refines the two hands only (give a set "
                         "of hands)")
    if frames is not None and len(initial) != frames:
        raise InputError(f"--initial {path}: {len(initial)} pairs, but the observations have {frames} frames (one "
                         "pair per frame)")
    return initial.with_hand_model(spec)
