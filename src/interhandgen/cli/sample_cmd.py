"""`interhandgen sample`: cascaded sampling of two-hand interactions."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from interhandgen.cli._args import positive_int
from interhandgen.cli._sampling_opts import (DEFAULTS, add_sampler_options, hand_model_from_args, settings_from_args,
                                            temperature_of)
from interhandgen.cli.sample_object import add_object_options, wants_object

# Upper bounds per pair for the --num check: the .npz stores 2 x 61 float32 hand numbers (488 B) plus labels;
# in memory the canonical [N, 64] float32 vectors and the world-frame arrays (float32 and the float64 copies).
SAMPLE_DISK_BYTES = 512
SAMPLE_MEMORY_BYTES = 2048


def register(sub) -> None:
    p = sub.add_parser(
        "sample",
        help="sample two-hand interactions (anchor, then partner) with CFG and anti-penetration guidance",
        description=(
            "Cascaded sampling: the left (anchor) hand from the unconditional stage, then the right hand "
            "conditioned on it, with classifier-free guidance and anti-penetration guidance. Writes world-frame "
            "hand parameters in the documented .npz format (docs/data.md). Uses the bundled model unless "
            "--checkpoint is given. Under torchrun the batches are shared among the ranks and rank 0 writes one file."
        ),
    )
    p.add_argument("--num", type=positive_int, required=True, help="number of two-hand samples")
    p.add_argument("--out", required=True, help="output .npz (TwoHandSet format)")
    add_sampler_options(p)
    p.add_argument("--meshes", default=None, help="also write each sample's two meshes (.ply) into this folder")
    p.add_argument("--render", default=None, help="also write a PNG grid of (up to 16) samples")
    add_object_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Imports inside the commands keep `interhandgen --help` from loading torch (startup time, not cycles).
    import torch

    from interhandgen.generation import InterHandGen, Shards, load_model

    from interhandgen.io_guard import Out, check_outputs
    from interhandgen.limits import check_count

    check_outputs({"--out": Out(args.out, (".npz",)), "--render": Out(args.render, (".png",)),
                   "--meshes": Out(args.meshes, folder=True)}, {"--checkpoint": args.checkpoint})
    check_count("--num", args.num, out=args.out, disk_bytes_each=SAMPLE_DISK_BYTES, memory_bytes_each=SAMPLE_MEMORY_BYTES)
    settings = settings_from_args(args, DEFAULTS.apg_weight)
    if wants_object(args):
        return _run_with_object(args, settings)
    shards = Shards.from_env()
    device = args.device
    if shards.world > 1 and device == "cuda":
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"  # one GPU per process
    model = load_model(args.checkpoint, device=device)  # loaded once, whatever its kind
    hand_model = hand_model_from_args(args, model)
    if model.kind in ("joint", "vae", "joint_object"):  # joint_object without an object: its null object token
        return _run_single_stage(args, model, hand_model, shards)
    gen = InterHandGen(model, hand_model, device)
    if shards.world == 1:
        x = gen.sample_canonical(args.num, args.seed, settings, args.batch_size, progress=not args.no_progress)
    else:
        # Batch bi has the same size and seed (batch_offset) as in one process: the file does not depend on
        # the number of ranks.
        starts = list(range(0, args.num, args.batch_size))
        mine = {bi: gen.sample_canonical(min(args.batch_size, args.num - starts[bi]), args.seed, settings,
                                         args.batch_size, progress=False, batch_offset=bi).cpu()
                for bi in shards.mine(len(starts))}
        parts = shards.gather(mine, "sample")
        x = None if parts is None else torch.cat([p[bi] for bi in range(len(starts)) for p in parts if bi in p])
    if shards.rank == 0:
        two = gen.to_world(x, args.seed, settings, extra={"batch_size": args.batch_size, "num": args.num})
        out = two.save(args.out)
        print(f"wrote {len(two)} samples to {out}")
        _write_extras(two, gen.hands, args)
    shards.finish("sample")
    return 0


def _run_with_object(args: argparse.Namespace, settings) -> int:
    """Sampling around an object (--object / --object-family) with an object model (docs/objects_model.md)."""
    from interhandgen.cli.sample_object import (load_object_generator, object_sampler_settings,
                                                object_settings_from_args, write_object_extras)
    from interhandgen.exceptions import InputError
    from interhandgen.generation import Shards
    from interhandgen.generation.object_api import family_objects, user_object

    if Shards.from_env().world > 1:
        raise InputError("--object/--object-family: sharded sampling under torchrun is not available with objects")
    settings = object_sampler_settings(args, settings, DEFAULTS)
    object_settings = object_settings_from_args(args)
    gen = load_object_generator(args)
    if args.mano_dir is not None:
        gen = load_object_generator(args, hand_model_from_args(args, gen.model))
    scene = user_object(args.object) if args.object else \
        family_objects(args.object_family, args.num_objects, args.seed, gen.orientations)
    two = gen.sample(args.num, scene, seed=args.seed, settings=settings, object_settings=object_settings,
                     batch_size=args.batch_size, progress=not args.no_progress)
    out = two.save(args.out)
    print(f"wrote {len(two)} samples with {len(scene.library)} object(s) to {out}")
    write_object_extras(two, gen.hands, args)
    return 0


def _run_single_stage(args: argparse.Namespace, model, hand_model, shards) -> int:
    """Sampling of the single-stage baselines (joint diffusion, VAE): no cascade, so CFG and APG do not apply."""
    from interhandgen.exceptions import InputError
    from interhandgen.generation import SamplerSettings, sample_model

    kind, where = model.kind, f"--checkpoint {args.checkpoint}"
    if shards.world > 1:
        raise InputError(f"{where}: sharded sampling under torchrun supports the cascaded model kinds only, "
                         f"not {kind!r}")
    if (args.apg_weight is not None or args.cfg_scale != DEFAULTS.cfg_scale or args.contact_weight != DEFAULTS.contact_weight
            or args.apg_iters != DEFAULTS.apg_iters or args.apg_points != DEFAULTS.apg_points
            or args.apg_proxy_weight != DEFAULTS.apg_proxy_weight
            or args.contact_attract_mm != DEFAULTS.contact_attract_mm):
        raise InputError(f"{where} is a {kind!r} model: classifier-free, anti-penetration and contact guidance apply "
                         "to the cascaded model only; drop --cfg-scale/--apg-weight/--apg-iters/--apg-points/"
                         "--apg-proxy-weight/--contact-weight/--contact-attract-mm")
    if (args.settle_steps != DEFAULTS.settle_steps or args.settle_attract_mm != DEFAULTS.settle_attract_mm
            or args.resample_rounds != DEFAULTS.resample_rounds):
        raise InputError(f"{where} is a {kind!r} model: contact settling and resampling belong to the cascaded "
                         "sampler; drop --settle-steps/--settle-attract-mm/--resample-rounds")
    if args.anchor_steps is not None or args.anchor_solver is not None:
        raise InputError(f"{where} is a {kind!r} model: it has no anchor stage; drop --anchor-steps/--anchor-solver")
    if kind == "vae":
        if (args.steps != DEFAULTS.steps or args.eta != DEFAULTS.eta or args.update != "ddim"
                or args.temperature is not None):
            raise InputError(f"{where} is a VAE: --steps/--eta/--temperature/--update do not apply")
        settings = None
    else:
        settings = SamplerSettings(steps=args.steps, eta=args.eta, cfg_scale=0.0, apg_weight=0.0, update=args.update,
                                   settle_steps=0, resample_rounds=0, anchor_solver="ddim",
                                   temperature=temperature_of(args))
        settings.validate()
    two = sample_model(model, args.num, args.seed, settings=settings, batch_size=args.batch_size,
                       device=args.device, progress=not args.no_progress, hand_model=hand_model)
    out = two.save(args.out)
    print(f"wrote {len(two)} samples ({kind} baseline) to {out}")
    _write_extras(two, two.hand_models(device=args.device), args)
    return 0


def _write_extras(two, hands, args) -> None:
    if args.meshes:
        import trimesh

        folder = Path(args.meshes)
        folder.mkdir(parents=True, exist_ok=True)
        verts = two.vertices(hands)
        for i in range(len(two)):
            for side in ("left", "right"):
                mesh = trimesh.Trimesh(verts[side][i].cpu().numpy(), hands[side].faces_np, process=False)
                mesh.export(folder / f"{i:06d}_{side}.ply")
        print(f"wrote meshes to {folder}")
    if args.render:
        from interhandgen.viz import render

        render(two[: min(16, len(two))], out_path=args.render)
        print(f"wrote {args.render}")
