"""`interhandgen hand`: export one posed hand mesh (OBJ/PLY/GLB, metres), optionally with a picture."""

from __future__ import annotations

import argparse
from pathlib import Path
from interhandgen.exceptions import InputError, MissingFileError

POSES = ("rest", "random", "fist", "pinch", "spread")


def register(sub) -> None:
    p = sub.add_parser(
        "hand",
        help="export a posed hand mesh (open hand or MANO) as .obj/.ply/.glb",
        description=(
            "Pose one hand of the bundled open hand (default) or of a MANO model file and export the mesh with "
            "trimesh, vertices in metres, in the model's own frame (zero global rotation and translation). Named "
            "poses are built from joint axes derived from the model's rest skeleton (interhandgen.hand.poses); "
            "'random' draws the first 6 pose-PCA coefficients from N(0, 1). With --seed, random betas are drawn "
            "first, then the random pose."
        ),
    )
    p.add_argument("--side", choices=["right", "left"], default="right", help="hand side (default %(default)s)")
    p.add_argument("--pose", choices=POSES, default="rest", help="named pose (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of --pose random and --betas random (default %(default)s)")
    p.add_argument("--betas", choices=["zero", "random"], default="zero",
                   help="shape: the mean shape, or 10 betas ~ N(0, 1) (default %(default)s)")
    p.add_argument("--model", default="open",
                   help="'open' (the bundled open hand, default) or a MANO model file (MANO_RIGHT.pkl / "
                        "MANO_LEFT.pkl of mano_v1_2, or a HandModelData .npz)")
    p.add_argument("--seal", action="store_true", help="close the mesh's holes (MANO's open wrist) with centroid fans")
    p.add_argument("--out", required=True, help="output mesh: .obj, .ply or .glb")
    p.add_argument("--png", default=None, help="also write a picture of the hand (front, top and side views)")
    p.set_defaults(func=run)


def load_model_data(model: str, side: str):
    """HandModelData of ``model`` ('open' or a model file) for ``side``."""
    if model == "open":
        from interhandgen.hand.open_hand import open_hand_data

        return open_hand_data(side)
    from interhandgen.hand.mano_io import read_mano_data

    path = Path(model)
    if not path.is_file():
        raise MissingFileError(f"--model: no such file {path} (give 'open' or a MANO model file)")
    return read_mano_data(path, side=side)


def posed_hand(data, pose: str, seed: int, betas: str):
    """Vertices [V, 3] (numpy float64, metres) of ``data`` in the named pose; see :func:`register`'s help."""
    import numpy as np
    import torch

    from interhandgen.hand.layer import HandModel
    from interhandgen.hand.poses import named_pose, random_pose

    if pose not in POSES:
        raise InputError(f"pose must be one of {POSES}, got {pose!r}")
    if betas not in ("zero", "random"):
        raise InputError(f"betas must be 'zero' or 'random', got {betas!r}")
    rng = np.random.default_rng(seed)
    shape = rng.normal(size=data.num_betas) if betas == "random" else np.zeros(data.num_betas)
    local = random_pose(data, rng) if pose == "random" else named_pose(data, pose)
    layer = HandModel(data, use_pca=False, flat_hand_mean=True)
    with torch.no_grad():
        out = layer(betas=torch.as_tensor(shape[None], dtype=torch.float64),
                    hand_pose=torch.as_tensor(local[None], dtype=torch.float64))
    return out.vertices[0].numpy()


def run(args: argparse.Namespace) -> int:
    import trimesh

    from interhandgen.viz import LEFT_COLOUR, RIGHT_COLOUR, render_meshes
    from interhandgen.viz.mesh_io import MESH_FORMATS, export_mesh

    from interhandgen.io_guard import Out, check_outputs

    out = Path(args.out)
    check_outputs({"--out": Out(out, tuple("." + f for f in MESH_FORMATS)), "--png": Out(args.png, (".png",))},
                  {"--model": None if args.model == "open" else args.model})
    data = load_model_data(args.model, args.side)
    verts = posed_hand(data, args.pose, args.seed, args.betas)
    faces = data.faces
    if args.seal:
        from interhandgen.geometry.sealing import seal, seal_faces

        sealed, faces = seal(verts[None], seal_faces(faces, len(verts)))
        verts = sealed[0]
    colour = RIGHT_COLOUR if args.side == "right" else LEFT_COLOUR
    export_mesh(out, verts, faces, colour=colour)
    mesh = trimesh.Trimesh(verts, faces, process=False)
    print(f"wrote {out}: {args.side} hand ({data.name}), pose {args.pose}, betas {args.betas}, "
          f"{len(verts)} vertices, {len(faces)} faces, watertight={mesh.is_watertight}")
    if args.png:
        render_meshes([(verts, faces, colour)], views=("front", "top", "side"),
                      title=f"{args.side} {data.name}: {args.pose}", out_path=args.png)
        print(f"wrote {args.png}")
    return 0
