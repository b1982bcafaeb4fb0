"""Draw docs/img/object_frame.png: a bimanual grasp in the world frame and in the object model's frame.

Run from the repository root:  python docs/img/object_frame.py
One grasp of the synthetic generator (interhandgen.objects.grasps, category grip_and_support, a mug). Left: the
world (gravity -z). Right: the object frame (origin at the object's centre of mass, the world's axes): the anchor
(left hand) is stored by its rotation and its centre joint relative to the origin (solid arrow), the right hand by
its rotation and centre joint relative to the anchor (dashed), as without an object (docs/objects_model.md).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from interhandgen.data.canonical import to_world  # noqa: E402
from interhandgen.data.format import TwoHandSet  # noqa: E402
from interhandgen.data.object_library import ObjectLibrary  # noqa: E402
from interhandgen.data.synth.kinematics import HandKinematics  # noqa: E402
from interhandgen.hand import CENTER_JOINT, open_hand  # noqa: E402
from interhandgen.objects.frame import anchor_world_pose, to_object_frame  # noqa: E402
from interhandgen.objects.grasps import CATEGORIES, generate_object_grasps  # noqa: E402
from interhandgen.objects.library import sample_object  # noqa: E402
from interhandgen.objects.metrics import object_world_vertices  # noqa: E402

OUT = Path(__file__).with_suffix(".png")
COLORS = {"left": "#1f77b4", "right": "#d62728", "object": "#6eaf5f"}


def example() -> TwoHandSet:
    kin = {s: HandKinematics(getattr(open_hand(s), "data", open_hand(s))) for s in ("left", "right")}
    obj = sample_object("mug", np.random.default_rng(1))
    res = generate_object_grasps(CATEGORIES["grip_and_support"], obj, kin["left"], kin["right"], 1, seed=3, steps=16)
    fields = lambda h: {"pose": h.pose_pca, "betas": h.betas, "global_orient": h.global_orient,  # noqa: E731
                        "transl": h.transl}
    return TwoHandSet(fields(res.hand_a), fields(res.hand_b), pose_space="pca", flat_hand_mean=False,
                      object_id=np.zeros(1, dtype=int), object_names=["mug"], object_pose=res.object_pose,
                      object_library=ObjectLibrary.from_meshes(["mug"], [obj]))


def draw(ax, verts: dict, faces: dict, title: str) -> None:
    for key in ("object", "left", "right"):
        ax.plot_trisurf(*verts[key].T, triangles=faces[key], color=COLORS[key], alpha=0.25, linewidth=0)
    pts = np.concatenate(list(verts.values()))
    c, r = pts.mean(0), (pts.max(0) - pts.min(0)).max() / 2
    for setter, ci in zip((ax.set_xlim, ax.set_ylim, ax.set_zlim), c):
        setter(ci - r, ci + r)
    ax.set_box_aspect((1, 1, 1))
    ax.set_title(title, fontsize=10)
    ax.tick_params(labelsize=7)
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.set_zlabel("z (m)")


def main() -> None:
    two = example()
    models = two.hand_models()
    faces = {s: models[s].faces_np for s in ("left", "right")}
    faces["object"] = two.object_library.faces[0]
    world = {s: v[0].numpy() for s, v in two.vertices(models, dtype=torch.float64).items()}
    world["object"] = object_world_vertices(two.object_library.vertices[0], two.object_pose)[0]
    fig = plt.figure(figsize=(11, 5.2))
    ax = fig.add_subplot(1, 2, 1, projection="3d")
    draw(ax, world, faces, "world frame (gravity -z)")
    c = two.object_pose[0, 4:7]
    ax.quiver(*(c + [0, 0, 0.12]), 0, 0, -0.08, color="k", lw=2)
    ax.text(*(c + [0.01, 0, 0.12]), "g", fontsize=11)

    pairs = to_object_frame(two, models)
    x = pairs.x
    local = to_world(x, models, anchor_world=anchor_world_pose(x, torch.zeros(3, dtype=torch.float64)))
    obj_frame = {s: v[0].numpy() for s, v in local.vertices(models, dtype=torch.float64).items()}
    obj_frame["object"] = world["object"] - c
    ax = fig.add_subplot(1, 2, 2, projection="3d")
    draw(ax, obj_frame, faces, "object frame: origin = centre of mass, world axes")
    joints = {s: j[0, CENTER_JOINT].numpy() for s, j in local.joints(models, dtype=torch.float64).items()}
    for k, col in enumerate(("r", "g", "b")):
        ax.quiver(0, 0, 0, *(np.eye(3)[k] * 0.06), color=col, lw=1.5)
    ax.quiver(0, 0, 0, *joints["left"], color="k", lw=1.5, arrow_length_ratio=0.1)
    ax.text(*joints["left"], "  J_a - c (anchor slots)", fontsize=8)
    ax.plot(*np.stack([joints["left"], joints["right"]]).T, "k--", lw=1)
    ax.text(*joints["right"], "  R_a^T (J_o - J_a)", fontsize=8)
    fig.tight_layout()
    fig.savefig(OUT, dpi=110)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
