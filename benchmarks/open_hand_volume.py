"""Volume change of the open hand's skinning under pose, and where it happens (docs/open_hand.md).

For random pose-PCA poses (coefficients z * scale * std_k, z ~ N(0, 1), std_k the per-component std of the
sidecar; hands_mean added) and, optionally, the poses of a data set, at the mean shape:

- the exact volume of the closed posed mesh (trimesh's signed volume, divergence theorem) over the rest volume
  (zero pose), with the pose correctives (the shipped layer) and without them (plain LBS, posedirs = 0);
- where it happens: each vertex follows the rigid transform of its dominant joint (largest skinning weight) in
  a rigid-parts hand; the skinned vertex differs from that by a displacement whose component along the posed
  vertex normal, times the vertex's area (1/3 of its faces'), is its local volume contribution. Summed per
  joint: cm^3 of bulge (+) or loss (-) attributed to the skin of that joint.

Writes JSON. Example:
    python benchmarks/open_hand_volume.py --poses 128 --scales 0.5,1.0 --data data.npz --out out.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch
import trimesh

from interhandgen._atomic import atomic_write_bytes
from interhandgen.hand import open_hand
from interhandgen.hand.joints import MANO_JOINT_NAMES
from interhandgen.hand.lbs import lbs, rigid_transforms
from interhandgen.hand.open_hand import open_hand_info
from interhandgen.rotations import axis_angle_to_matrix


def volumes_cm3(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Signed volume [B] in cm^3 of closed meshes verts [B, V, 3] (metres)."""
    return np.array([trimesh.Trimesh(v, faces, process=False).volume for v in verts]) * 1e6


def pose_and_parts(layer, full_pose: torch.Tensor, correctives: bool):
    """Skinned vertices [B, V, 3] and the rigid-parts vertices [B, V, 3] (each vertex moved by its dominant
    joint's transform), float64, metres, mean shape."""
    b = layer._buffers_like(torch.device("cpu"), torch.float64)
    B = full_pose.shape[0]
    posedirs = b["posedirs"] if correctives else torch.zeros_like(b["posedirs"])
    betas = torch.zeros(B, b["shapedirs"].shape[1], dtype=torch.float64)
    verts, _ = lbs(betas, full_pose, b["v_template"], b["shapedirs"], posedirs, b["J_regressor"], layer.parents,
                   b["lbs_weights"])
    joints = (b["J_regressor"] @ b["v_template"]).expand(B, -1, -1)
    rot = axis_angle_to_matrix(full_pose.view(B, -1, 3))
    _, T = rigid_transforms(rot, joints, layer.parents)  # [B, J, 3, 4]
    dom = b["lbs_weights"].argmax(1)  # [V]
    Td = T[:, dom]  # [B, V, 3, 4]
    rigid = (Td[..., :3] @ b["v_template"][None, :, :, None])[..., 0] + Td[..., 3]
    return verts, rigid, dom


def summary(x: np.ndarray) -> dict:
    return {"min": float(x.min()), "p5": float(np.percentile(x, 5)), "median": float(np.median(x)),
            "mean": float(x.mean()), "p95": float(np.percentile(x, 95)), "max": float(x.max())}


def analyse(layer, full_pose: torch.Tensor, faces: np.ndarray, rest_volume: float) -> dict:
    out = {}
    B, J = full_pose.shape[0], len(MANO_JOINT_NAMES)
    for name, corr in (("with_correctives", True), ("plain_lbs", False)):
        verts, rigid, dom = pose_and_parts(layer, full_pose, corr)
        vol = volumes_cm3(verts.numpy(), faces)
        single = torch.zeros(J - 1, B, full_pose.shape[1], dtype=torch.float64)
        for j in range(1, J):  # joint j alone; the root (joint 0) only moves the hand rigidly
            single[j - 1, :, 3 * j:3 * j + 3] = full_pose[:, 3 * j:3 * j + 3]
        single_vol = volumes_cm3(pose_and_parts(layer, single.reshape(-1, full_pose.shape[1]), corr)[0].numpy(),
                                 faces).reshape(J - 1, B) - rest_volume
        disp_mm = (verts - rigid).norm(dim=-1) * 1000
        max_disp = torch.zeros(B, J, dtype=torch.float64)
        max_disp.scatter_reduce_(1, dom.expand(B, -1), disp_mm, reduce="amax")
        ratio = vol / rest_volume
        worst = int(np.argmax(np.abs(ratio - 1)))
        names = MANO_JOINT_NAMES[1:]
        out[name] = {
            "volume_ratio": summary(ratio),
            "volume_change_cm3": summary(vol - rest_volume),
            "fraction_above_1.05": float((ratio > 1.05).mean()),
            "fraction_below_0.95": float((ratio < 0.95).mean()),
            "single_joint_volume_change_cm3_mean": {n: float(v) for n, v in zip(names, single_vol.mean(1))},
            "single_joint_volume_change_cm3_max_abs": {n: float(np.abs(v).max()) for n, v in zip(names, single_vol)},
            "single_joint_volume_change_cm3_worst_pose": {n: float(v) for n, v in zip(names, single_vol[:, worst])},
            "sum_of_single_joint_changes_vs_full": {
                "mean_sum_cm3": float(single_vol.sum(0).mean()), "mean_full_cm3": float((vol - rest_volume).mean()),
                "corr": float(np.corrcoef(single_vol.sum(0), vol - rest_volume)[0, 1]) if B > 2 else None},
            "per_joint_max_displacement_from_rigid_mm_median": {
                n: float(v) for n, v in zip(MANO_JOINT_NAMES, max_disp.median(0).values)},
            "worst_pose_ratio": float(ratio[worst]),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--poses", type=int, default=128)
    ap.add_argument("--scales", default="0.5,1.0", help="comma-separated multiples of the per-component std")
    ap.add_argument("--absolute-scales", default="0.5",
                    help="comma-separated std of coefficients drawn N(0, s^2) for every component alike (the "
                         "common 'randn * s' check, far outside the pose space for the small components)")
    ap.add_argument("--data", default=None, help="a TwoHandSet .npz whose right-hand poses are also measured")
    ap.add_argument("--data-poses", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    layer = open_hand("right", use_pca=True, flat_hand_mean=False)
    faces = layer.faces_np
    std = torch.as_tensor(open_hand_info()["pose_pca_std"], dtype=torch.float64)
    rest = volumes_cm3(pose_and_parts(layer, torch.zeros(1, 48, dtype=torch.float64), True)[0].numpy(), faces)[0]
    comps = layer.hand_components.double()
    mean = layer.pose_mean.double()
    rng = np.random.default_rng(args.seed)
    result = {"command": "python benchmarks/open_hand_volume.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None),
        "rest_volume_cm3": float(rest), "platform": platform.platform(), "sets": {}}

    def full(coeffs: torch.Tensor) -> torch.Tensor:
        hand = mean + coeffs @ comps
        return torch.cat([torch.zeros(coeffs.shape[0], 3, dtype=torch.float64), hand], dim=1)

    for s in [float(v) for v in args.scales.split(",")]:
        z = torch.as_tensor(rng.standard_normal((args.poses, 45)))
        result["sets"][f"pca_{s:g}_std"] = analyse(layer, full(z * s * std), faces, rest)
    for s in [float(v) for v in args.absolute_scales.split(",") if v]:
        z = torch.as_tensor(rng.standard_normal((args.poses, 45)))
        result["sets"][f"pca_absolute_{s:g}"] = analyse(layer, full(z * s), faces, rest)
    result["sets"]["hands_mean"] = analyse(layer, full(torch.zeros(1, 45, dtype=torch.float64)), faces, rest)
    if args.data:
        from interhandgen.data.format import TwoHandSet

        data = TwoHandSet.load(args.data).converted(pose_space="pca", flat_hand_mean=False)
        idx = np.sort(rng.choice(len(data), min(args.data_poses, len(data)), replace=False))
        coeffs = torch.as_tensor(data.right.pose[idx], dtype=torch.float64)
        result["sets"]["data_right_hands"] = analyse(layer, full(coeffs), faces, rest)
        result["data"] = {"file": args.data, "poses": int(len(idx))}
    result["wall_s"] = time.perf_counter() - t0
    atomic_write_bytes(args.out, json.dumps(result, indent=2).encode())
    for name, r in result["sets"].items():
        for var, v in r.items():
            print(name, var, {k: round(x, 3) for k, x in v["volume_ratio"].items()})


if __name__ == "__main__":
    main()
