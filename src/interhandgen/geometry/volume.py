"""Exact penetration volume of two hand meshes: the volume of their boolean intersection (manifold3d).

Open meshes (MANO's wrist) are sealed first (:mod:`interhandgen.geometry.sealing`), so the volume is
always defined. Pairs whose axis-aligned bounding boxes do not overlap have an empty intersection and get
exactly 0 without a boolean; every other pair goes through manifold3d, in parallel worker processes.
A pair that manifold3d cannot measure raises an error naming its sample index: no pair ever reads 0
because it failed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

from interhandgen.geometry import _volume_worker as worker_lib
from interhandgen.geometry.sealing import check_faces, seal, seal_faces
from interhandgen.exceptions import InputError

__all__ = ["penetration_volume", "PenetrationVolumeError"]

_WORKER_SCRIPT = os.path.abspath(worker_lib.__file__)


class PenetrationVolumeError(RuntimeError):
    """manifold3d could not measure a pair (mesh rejected or boolean failed)."""


def _as_numpy_verts(verts: Any, name: str) -> np.ndarray:
    try:
        import torch

        if isinstance(verts, torch.Tensor):
            verts = verts.detach().cpu().numpy()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    if not isinstance(verts, np.ndarray):
        raise TypeError(f"argument '{name}' must be a numpy array or torch tensor [B, V, 3], got {type(verts).__name__}")
    if not np.issubdtype(verts.dtype, np.floating):
        raise TypeError(f"argument '{name}' must be floating point, got dtype {verts.dtype}")
    if verts.ndim != 3 or verts.shape[2] != 3 or verts.shape[1] == 0:
        raise InputError(f"argument '{name}' must have shape [B, V, 3], got {tuple(verts.shape)}")
    finite = np.isfinite(verts).all(axis=(1, 2))
    if not finite.all():
        raise InputError(f"argument '{name}' has non-finite vertices in sample {int(np.flatnonzero(~finite)[0])}")
    return verts


def _describe_status(code: int) -> str:
    import manifold3d as m3

    which = {1: "mesh a", 2: "mesh b", 3: "the intersection"}.get(code // 1000, "?")
    err = code % 1000
    names = {(int(e.value) if hasattr(e, "value") else int(e)): e.name for e in m3.Error.__members__.values()} \
        if hasattr(m3.Error, "__members__") else {}
    return f"manifold3d rejected {which} with status {names.get(err, err)}"


def _check_topology(verts_sealed: np.ndarray, faces_sealed: np.ndarray, name: str) -> None:
    """Build one manifold for the topology so a bad mesh raises even if every pair is an early-out."""
    import manifold3d as m3

    mesh = m3.Manifold(m3.Mesh64(vert_properties=np.ascontiguousarray(verts_sealed[0], dtype=np.float64),
                                 tri_verts=np.ascontiguousarray(faces_sealed, dtype=np.uint64)))
    code = worker_lib._code(mesh.status())
    if code != worker_lib._code(m3.Error.NoError):
        raise PenetrationVolumeError(
            f"argument '{name}': the sealed mesh is not a manifold3d manifold ({_describe_status(1000 + code)} "
            f"for sample 0); the penetration volume cannot be measured"
        )


def penetration_volume(
    verts_a: Any,
    faces_a: Any,
    verts_b: Any,
    faces_b: Any,
    num_workers: int | None = None,
    progress: bool = False,
    chunk_size: int | None = None,
    return_bounds: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Intersection volume of two (sealed) meshes per sample, in cm^3.

    Args:
        verts_a: [B, V, 3] vertices of hand a in metres (numpy or torch; float32 or float64).
        faces_a: [F, 3] faces of hand a (shared by the batch); open boundaries are sealed with centroid caps.
        verts_b: [B, W, 3] vertices of hand b in metres.
        faces_b: [G, 3] faces of hand b.
        num_workers: worker processes; default: the CPUs this process may run on. 1 computes in-process.
        progress: show a tqdm progress bar.
        chunk_size: pairs per unit of work; default picks about 8 chunks per worker (at most 64 pairs).
        return_bounds: also return the axis-aligned bounding box of each intersection solid.
    Returns:
        [B] float64 volumes in cm^3. Pairs with disjoint bounding boxes are exactly 0.
        With ``return_bounds``: (volumes, bounds [B, 2, 3] float64 metres: min and max corner of the boolean
        intersection, NaN where the volume is 0). Every vertex of one hand strictly inside the other lies in
        the intersection solid, hence in its box (used to cull the exact penetration depth).
    Raises:
        ValueError/TypeError: bad shapes, non-finite vertices (naming the sample), non-manifold faces.
        PenetrationVolumeError: manifold3d rejected a mesh or a boolean (naming the sample index).
    """
    verts_a = _as_numpy_verts(verts_a, "verts_a")
    verts_b = _as_numpy_verts(verts_b, "verts_b")
    if verts_a.shape[0] != verts_b.shape[0]:
        raise InputError(f"'verts_a' has {verts_a.shape[0]} samples but 'verts_b' has {verts_b.shape[0]}")
    if num_workers is None:
        num_workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if not isinstance(num_workers, int) or num_workers < 1:
        raise InputError(f"argument 'num_workers' must be a positive integer, got {num_workers!r}")
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise InputError(f"argument 'chunk_size' must be a positive integer, got {chunk_size!r}")

    def plan_for(faces, verts, name):
        faces = check_faces(faces, verts.shape[1], name)
        try:
            return seal_faces(faces, verts.shape[1])
        except ValueError as exc:
            raise InputError(f"argument '{name}': {exc}") from exc

    plan_a, plan_b = plan_for(faces_a, verts_a, "faces_a"), plan_for(faces_b, verts_b, "faces_b")
    num_pairs = verts_a.shape[0]
    volumes = np.zeros(num_pairs, dtype=np.float64)
    boxes = np.full((num_pairs, 2, 3), np.nan)
    finish = (lambda: (volumes, boxes)) if return_bounds else (lambda: volumes)  # noqa: E731
    if num_pairs == 0:
        return finish()

    # Closed meshes with disjoint boxes cannot intersect; the caps lie in the convex hull of their loops.
    lo_a, hi_a = verts_a.min(axis=1), verts_a.max(axis=1)
    lo_b, hi_b = verts_b.min(axis=1), verts_b.max(axis=1)
    overlap = ((hi_a > lo_b) & (hi_b > lo_a)).all(axis=1)
    rows = np.flatnonzero(overlap)

    sealed_a0, faces_sealed_a = seal(verts_a[:1].astype(np.float64), plan_a)
    sealed_b0, faces_sealed_b = seal(verts_b[:1].astype(np.float64), plan_b)
    _check_topology(sealed_a0, faces_sealed_a, "faces_a")
    _check_topology(sealed_b0, faces_sealed_b, "faces_b")
    if rows.size == 0:
        return finish()

    num_workers = min(num_workers, rows.size)
    if chunk_size is None:
        chunk_size = int(max(1, min(64, -(-rows.size // (8 * num_workers)))))

    folder = tempfile.mkdtemp(prefix="ihg_penvol_", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    try:
        def create(name, shape, dtype, fill=None):
            arr = np.lib.format.open_memmap(os.path.join(folder, name + ".npy"), mode="w+", dtype=dtype, shape=shape)
            if fill is not None:
                arr[...] = fill
            return arr

        dtype = np.result_type(verts_a.dtype, verts_b.dtype)
        va = create("verts_a", (rows.size, plan_a.num_verts_sealed, 3), dtype)
        vb = create("verts_b", (rows.size, plan_b.num_verts_sealed, 3), dtype)
        # Seal in slices to bound the temporary memory for large batches.
        for s in range(0, rows.size, 1024):
            idx = rows[s:s + 1024]
            va[s:s + idx.size] = seal(verts_a[idx], plan_a)[0]
            vb[s:s + idx.size] = seal(verts_b[idx], plan_b)[0]
        create("faces_a", faces_sealed_a.shape, np.int64, faces_sealed_a)
        create("faces_b", faces_sealed_b.shape, np.int64, faces_sealed_b)
        out = create("out", (rows.size,), np.float64, 0.0)
        status = create("status", (rows.size,), np.int32, worker_lib.NOT_COMPUTED)
        bounds = create("bounds", (rows.size, 6), np.float64, np.nan) if return_bounds else None
        done = create("done", (num_workers,), np.int64, 0)
        for arr in (va, vb):
            arr.flush()

        if num_workers == 1:
            worker_lib.intersection_volumes(va, faces_sealed_a, vb, faces_sealed_b, out, status, range(rows.size),
                                            bounds)
        else:
            _run_workers(folder, num_workers, chunk_size, done, rows.size, progress)

        bad = np.flatnonzero(status != 0)
        if bad.size:
            i = int(bad[0])
            sample = int(rows[i])
            if status[i] == worker_lib.NOT_COMPUTED:
                raise PenetrationVolumeError(f"penetration volume of sample {sample} was not computed")
            raise PenetrationVolumeError(
                f"penetration volume of sample {sample} cannot be measured: {_describe_status(int(status[i]))} "
                f"({bad.size} sample(s) failed in all)"
            )
        volumes[rows] = out
        if bounds is not None:
            boxes[rows] = np.asarray(bounds).reshape(-1, 2, 3)
        del va, vb, out, status, done, bounds
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return finish()


def _run_workers(folder: str, num_workers: int, chunk_size: int, done: np.ndarray, total: int, progress: bool) -> None:
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    pin = len(cpus) >= num_workers
    procs, logs = [], []
    for k in range(num_workers):
        spec = {"folder": folder, "worker": k, "num_workers": num_workers, "chunk": chunk_size,
                "cpu": cpus[k] if pin else None}
        # stderr goes to a file: a pipe nobody reads while polling could fill up and block the worker.
        logs.append(open(os.path.join(folder, f"worker{k}.log"), "wb"))
        procs.append(subprocess.Popen([sys.executable, _WORKER_SCRIPT, json.dumps(spec)],
                                      stdout=subprocess.DEVNULL, stderr=logs[-1]))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="penetration volume", unit="pair")
    try:
        while any(p.poll() is None for p in procs):
            if bar is not None:
                bar.n = int(done.sum())
                bar.refresh()
            time.sleep(0.1)
        if bar is not None:
            bar.n = int(done.sum())
            bar.refresh()
    except BaseException:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        raise
    finally:
        if bar is not None:
            bar.close()
        for log in logs:
            log.close()
    for k, p in enumerate(procs):
        if p.returncode != 0:
            with open(os.path.join(folder, f"worker{k}.log"), "rb") as fh:
                err = fh.read().decode(errors="replace")
            raise PenetrationVolumeError(
                f"penetration-volume worker {k} exited with code {p.returncode}: {err.strip()[-2000:]}"
            )
