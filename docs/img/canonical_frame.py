"""Draw docs/img/canonical_frame.png: a two-hand pair in the world frame and in the canonical frame.

Run from the repository root:  python docs/img/canonical_frame.py
Uses the bundled open hand (interhandgen.hand.open_hand). The pair is an arbitrary pose placed with a random
world rotation; the right panel is what interhandgen.data.to_canonical / to_world make of it.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy.spatial.transform import Rotation  # noqa: E402

from interhandgen.data import HandModelSpec, TwoHandSet, to_canonical, to_world  # noqa: E402
from interhandgen.hand import CENTER_JOINT, MANO_PARENTS  # noqa: E402

OUT = Path(__file__).with_suffix(".png")
COLORS = {"left": "#1f77b4", "right": "#d62728"}


def example_pair() -> TwoHandSet:
    rng = np.random.default_rng(4)
    world = Rotation.from_euler("xyz", [35, -50, 20], degrees=True)

    def hand(rot, transl):
        return {"pose": rng.normal(0, 0.25, (1, 45)), "betas": np.zeros((1, 10)),
                "global_orient": rot.as_rotvec()[None], "transl": np.asarray(transl, dtype=float)[None]}

    left = hand(world * Rotation.from_euler("y", 10, degrees=True), [0.25, 0.10, 0.30])
    right = hand(world * Rotation.from_euler("zy", [180, -20], degrees=True), [0.0, 0.0, 0.0])
    pair = TwoHandSet(left, right, pose_space="pca", flat_hand_mean=False, hand_model=HandModelSpec.open_hand())
    # Place the right hand's centre joint 11 cm from the left one's.
    J = pair.joints()
    offset = world.apply([0.0, -0.11, 0.0]) + J["left"][0, CENTER_JOINT].numpy() - J["right"][0, CENTER_JOINT].numpy()
    right["transl"] = right["transl"] + offset
    return TwoHandSet(left, right, pose_space="pca", flat_hand_mean=False, hand_model=HandModelSpec.open_hand())


def draw(ax, two: TwoHandSet, models, title: str, frame=None) -> None:
    out = two.forward(models, dtype=torch.float64)
    for side in ("left", "right"):
        verts, joints = (t[0].numpy() for t in out[side])
        ax.plot_trisurf(*verts.T, triangles=models[side].faces_np, color=COLORS[side], alpha=0.18, linewidth=0)
        for j, p in enumerate(MANO_PARENTS[1:], 1):
            ax.plot(*np.stack([joints[p], joints[j]]).T, color=COLORS[side], lw=1.2)
        for tip, base in zip(range(16, 21), (15, 3, 6, 12, 9)):
            ax.plot(*np.stack([joints[base], joints[tip]]).T, color=COLORS[side], lw=1.2)
        ax.scatter(*joints[CENTER_JOINT], s=40, color="k", marker="o", zorder=5)
        ax.text(*joints[CENTER_JOINT], f"  J ({side})", fontsize=8)
    if frame is not None:
        origin, R = frame
        for k, c in enumerate(("r", "g", "b")):
            ax.quiver(*origin, *(R[:, k] * 0.06), color=c, lw=1.5)
        J = {side: out[side][1][0, CENTER_JOINT].numpy() for side in ("left", "right")}
        ax.plot(*np.stack([J["left"], J["right"]]).T, "k--", lw=1)
    ax.set_title(title, fontsize=10)
    ax.tick_params(labelsize=7)
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.set_zlabel("z (m)")
    pts = np.concatenate([out[s][0][0].numpy() for s in ("left", "right")])
    c, r = pts.mean(0), (pts.max(0) - pts.min(0)).max() / 2
    for setter, ci in zip((ax.set_xlim, ax.set_ylim, ax.set_zlim), c):
        setter(ci - r, ci + r)
    ax.set_box_aspect((1, 1, 1))


def main() -> None:
    two = example_pair()
    models = two.hand_models()
    can = to_canonical(two, models, anchor="left")
    canon_set = to_world(can.x, models, anchor="left")
    fig = plt.figure(figsize=(11, 5.2))
    ax1 = fig.add_subplot(1, 2, 1, projection="3d")
    draw(ax1, two, models, "world frame: R_a, J_a (anchor = left)",
         frame=(can.anchor_center[0].numpy(), can.anchor_rotation[0].numpy()))
    ax2 = fig.add_subplot(1, 2, 2, projection="3d")
    t = can.x[0, 1, 61:].numpy()
    draw(ax2, canon_set, models,
         "canonical frame: anchor R = I, J = 0\n"
         f"other: R_rel = R_a^T R_o, t_rel = R_a^T (J_o - J_a) = [{t[0]:.3f}, {t[1]:.3f}, {t[2]:.3f}] m",
         frame=(np.zeros(3), np.eye(3)))
    fig.suptitle("Canonical two-hand frame (blue: left/anchor, red: right; black dots: middle-finger MCP joints)",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(OUT, dpi=130)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
