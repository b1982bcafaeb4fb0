"""CPU time of the MuJoCo stability test per pair, by the two ways of building its scene, in ONE process.

The test (``interhandgen.objects.physics``) compiles one MuJoCo model per pair: both hands' 32 convex parts fixed,
the object free. ``numbers`` builds it as the test does (``build_model``: MuJoCo's model-editing API fed with the
parts' coordinates); ``xml`` writes the same scene as MJCF text and compiles it with MuJoCo's parser
(``build_model_xml``, the route before 2026-12-06). The scenes of each set are made once (hands posed, parts cut),
then each route simulates every pair, the routes alternating per repeat, so they share the process and the
machine's load. Recorded: CPU seconds per route and repeat, their ratio in the same repeat, and how many pairs the
two routes decide differently (held: moved < 2 cm in 1 s) and by how much the displacements of pairs held by both
differ (the XML's vertices carry 9 significant digits, the numbers route the float64 values). Then, with
``--workers``, the wall time of ``object_stability`` with that many threads simulating pairs at once (MuJoCo
releases the GIL), against one, in the same process, and whether the figures are the same. Run with nothing else
on the machine and ``--threads 1``.

    python benchmarks/object_physics_time.py --set data=obj_s1005.npz --set samples=default1000.npz \\
        --repeats 2 --threads 1 --workers 2 --out benchmarks/results/object_physics_time.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import torch

from interhandgen._atomic import atomic_write_bytes
from interhandgen.data.format import TwoHandSet
from interhandgen.objects.metrics import _physics_scenes, object_stability
from interhandgen.objects.physics import (HOLD_THRESHOLD, PhysicsConfig, build_model, build_model_xml,
                                          require_mujoco, step_checked)


def displacement(model, steps: int) -> float:
    mujoco = require_mujoco()
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    body = model.body("object").id
    start = data.xipos[body].copy()
    if not step_checked(mujoco, model, data, steps):
        return float("inf")
    return float(np.linalg.norm(data.xipos[body] - start))


def run_route(route: str, scenes: list, config: PhysicsConfig) -> tuple[np.ndarray, float]:
    mujoco = require_mujoco()
    steps = int(round(config.duration / config.timestep))
    out = np.empty(len(scenes))
    start = time.process_time()
    for i, (static, parts) in enumerate(scenes):
        model = (build_model(static, parts, config) if route == "numbers"
                 else mujoco.MjModel.from_xml_string(build_model_xml(static, parts, config)))
        out[i] = displacement(model, steps)
    return out, time.process_time() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", action="append", required=True, metavar="NAME=PATH",
                    help="a two-hand set with objects (repeatable)")
    ap.add_argument("--pairs", type=int, default=0, help="the first this many pairs of each set (0: all)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workers", type=int, default=0,
                    help="also time object_stability with this many threads against one (0: skip)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    if a.repeats < 1 or a.pairs < 0 or a.workers < 0:
        ap.error(f"--repeats must be >= 1, --pairs and --workers >= 0, got {a.repeats}, {a.pairs} and {a.workers}")
    torch.set_num_threads(a.threads)
    config = PhysicsConfig()
    result = {"command": "benchmarks/object_physics_time.py", "threads": a.threads, "sets": {}}
    for item in a.set:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            ap.error(f"--set must be NAME=PATH, got {item!r}")
        two = TwoHandSet.load(path)
        if a.pairs:
            two = two[np.arange(min(a.pairs, len(two)))]
        scenes = list(_physics_scenes(two, None))
        runs, disp = [], {}
        for r in range(a.repeats):
            order = ("numbers", "xml") if r % 2 == 0 else ("xml", "numbers")
            cpu = {}
            for route in order:
                disp[route], cpu[route] = run_route(route, scenes, config)
            runs.append({"cpu_seconds": cpu, "numbers_over_xml": cpu["numbers"] / cpu["xml"]})
            print(f"{name} repeat {r}: numbers {cpu['numbers']:.1f} s, xml {cpu['xml']:.1f} s of CPU "
                  f"for {len(scenes)} pairs", flush=True)
        held = {k: v < HOLD_THRESHOLD for k, v in disp.items()}
        both = held["numbers"] & held["xml"]
        diff = np.abs(disp["numbers"][both] - disp["xml"][both]) * 100.0
        result["sets"][name] = {
            "path": path, "pairs": len(scenes), "runs": runs,
            "held_fraction": {k: float(v.mean()) for k, v in held.items()},
            "decisions_differing": int((held["numbers"] != held["xml"]).sum()),
            "held_displacement_difference_cm": {"median": float(np.median(diff)) if diff.size else None,
                                                "max": float(diff.max()) if diff.size else None}}
        if a.workers:
            wall, figures = {}, {}
            for w in (1, a.workers):
                start = time.perf_counter()
                figures[w] = object_stability(two, config, workers=w)["displacement_cm"]
                wall[w] = time.perf_counter() - start
            result["sets"][name]["threads"] = {
                "workers": a.workers, "wall_seconds": {str(w): t for w, t in wall.items()},
                "one_over_many": wall[1] / wall[a.workers],
                "same_figures": bool(np.array_equal(figures[1], figures[a.workers]))}
            print(f"{name}: object_stability {wall[1]:.1f} s wall on one thread, {wall[a.workers]:.1f} s on "
                  f"{a.workers}", flush=True)
    result["load_average_end"] = os.getloadavg()
    result["machine"] = platform.processor() or platform.machine()
    atomic_write_bytes(a.out, (json.dumps(result, indent=2) + "\n").encode())


if __name__ == "__main__":
    main()
