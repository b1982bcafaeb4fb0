"""ARCTIC object templates in `data convert`: files written in ARCTIC's exact schema, checked against hand-computed
vertex positions and against an independent placement with scipy's rotations (ARCTIC's quaternion path)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from interhandgen.data.arctic import load_arctic_sequences
from interhandgen.data.arctic_objects import arctic_object_world_vertices, read_arctic_template
from interhandgen.data.format import TwoHandSet
from interhandgen.exceptions import InputError
from interhandgen.objects.metrics import object_world_vertices

# A two-part "box" in millimetres: bottom tetrahedron (parts.json label 1) and a top tetrahedron (label 0, the
# articulated part in ARCTIC's object layer).
TEMPLATE_MM = np.array([[10, 0, -20], [0, 10, -20], [-10, -10, -20], [0, 0, -5],
                        [10, 0, 50], [0, 10, 50], [-10, -10, 50], [0, 0, 65]], dtype=np.float64)
LABELS = [1, 1, 1, 1, 0, 0, 0, 0]
FACES = [[0, 2, 1], [0, 1, 3], [1, 2, 3], [2, 0, 3]]
FACES = FACES + [[a + 4, b + 4, c + 4] for a, b, c in FACES]


def write_template(root, name="box", labels=LABELS):
    d = root / name
    d.mkdir(parents=True)
    lines = [f"v {x:.1f} {y:.1f} {z:.1f}" for x, y, z in TEMPLATE_MM] + [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in FACES]
    (d / "mesh.obj").write_text("\n".join(lines) + "\n")
    (d / "parts.json").write_text(json.dumps(labels))
    return d


def write_sequence(root, seq, obj):
    T = len(obj)
    rng = np.random.default_rng(0)
    mano = {side: {"rot": rng.normal(0, 1, (T, 3)).astype(np.float32), "pose": np.zeros((T, 45), np.float32),
                   "trans": rng.normal(0, 0.3, (T, 3)).astype(np.float32), "shape": np.zeros(10, np.float32),
                   "fitting_err": np.zeros(T, np.float32)} for side in ("right", "left")}
    (root / "s01").mkdir(parents=True, exist_ok=True)
    np.save(root / "s01" / f"{seq}.mano.npy", mano)  # a pickled dict, as ARCTIC ships it
    np.save(root / "s01" / f"{seq}.object.npy", np.asarray(obj, dtype=np.float32))


def test_known_articulation_rotation_translation_gives_known_vertices(tmp_path):
    templates = tmp_path / "meta" / "object_vtemplates"
    write_template(templates)
    raw = tmp_path / "raw_seqs"
    # frame 0: articulation pi/2, rotation pi/2 about x, translation (100, 200, 300) mm; frame 1: rest;
    # frame 2: the same angle as frame 0 (shares its library entry)
    obj = [[np.pi / 2, np.pi / 2, 0, 0, 100, 200, 300], [0, 0, 0, 0, 0, 0, 0], [np.pi / 2, 0, 0, 0, 0, 0, 0]]
    write_sequence(raw, "box_use_01", obj)
    s, _ = load_arctic_sequences(raw, object_templates=templates)
    s.save(tmp_path / "a.npz")
    s = TwoHandSet.load(tmp_path / "a.npz")
    lib = s.object_library
    angle = float(np.float32(np.pi / 2))
    assert lib.names == ("box", f"box@{angle!r}") and lib.families == ("box", "box")
    assert s.object_id.tolist() == [1, 0, 1] and np.all(s.object_pose[:, 0] == 0)
    world = object_world_vertices(lib.vertices[1], s.object_pose[:1].astype(np.float64))[0]
    # By hand: top vertex (10, 0, 50) mm turned 90 deg about -z -> (0, -10, 50); 90 deg about x: (x, y, z) ->
    # (x, -z, y) -> (0, -50, -10); + (100, 200, 300) -> (100, 150, 290) mm. Bottom vertex (10, 0, -20): not
    # articulated -> (10, 20, 0) -> (110, 220, 300) mm.
    np.testing.assert_allclose(world[4], [0.100, 0.150, 0.290], atol=1e-6)
    np.testing.assert_allclose(world[0], [0.110, 0.220, 0.300], atol=1e-6)
    rest = object_world_vertices(lib.vertices[0], s.object_pose[1:2].astype(np.float64))[0]
    np.testing.assert_allclose(rest, TEMPLATE_MM / 1000, atol=1e-12)
    assert json.loads(lib.params[1])["articulation_rad"] == angle
    assert all(len(p) == 0 for p in lib.parts)  # no convex decomposition from ARCTIC


def test_placement_matches_arctic_quaternion_path(tmp_path):
    """Random frames: top part rotated by the quaternion of (0, 0, -1) * angle, then the global quaternion, then
    translation / 1000 (ARCTIC's forward_7d_batch), computed here with scipy."""
    templates = tmp_path / "t"
    template = read_arctic_template(write_template(templates))
    rng = np.random.default_rng(1)
    p = np.concatenate([rng.uniform(-1.5, 1.5, (6, 1)), rng.normal(0, 1.2, (6, 3)), rng.normal(0, 400, (6, 3))], 1)
    got = arctic_object_world_vertices(template, p)
    top = np.array(LABELS) == 0
    for n in range(len(p)):
        v = TEMPLATE_MM / 1000
        v = np.where(top[:, None], Rotation.from_rotvec(np.array([0, 0, -1.0]) * p[n, 0]).apply(v), v)
        want = Rotation.from_rotvec(p[n, 1:4]).apply(v) + p[n, 4:7] / 1000
        np.testing.assert_allclose(got[n], want, atol=1e-12)
    # and the converted set places its library entries the same way
    raw = tmp_path / "raw"
    write_sequence(raw, "box_grab_01", p)
    s, _ = load_arctic_sequences(raw, object_templates=templates, dtype=np.float64)
    for n in range(len(p)):
        k = int(s.object_id[n])
        placed = object_world_vertices(s.object_library.vertices[k], s.object_pose[n:n + 1])[0]
        want = arctic_object_world_vertices(template, p[n:n + 1].astype(np.float32).astype(np.float64))[0]
        np.testing.assert_allclose(placed, want, atol=1e-9)


def test_template_errors_and_cli(tmp_path):
    templates = tmp_path / "t"
    boolean = read_arctic_template(write_template(tmp_path / "b", labels=[bool(x) for x in LABELS]))
    assert boolean.top.tolist() == [x == 0 for x in LABELS]  # JSON true/false labels read like 1/0
    write_template(templates, labels=LABELS[:-1])
    with pytest.raises(InputError, match="parts.json"):
        read_arctic_template(templates / "box")
    raw = tmp_path / "raw"
    write_sequence(raw, "laptop_use_01", [[0, 0, 0, 0, 0, 0, 0]])
    with pytest.raises(FileNotFoundError, match="laptop"):
        load_arctic_sequences(raw, object_templates=templates)
    write_template(templates, name="laptop")
    out = tmp_path / "o.npz"
    r = subprocess.run([sys.executable, "-m", "interhandgen", "data", "convert", "--format", "arctic", str(raw),
                        "--out", str(out), "--object-templates", str(templates), "--no-progress"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert TwoHandSet.load(out).object_library.names == ("laptop",)
    r = subprocess.run([sys.executable, "-m", "interhandgen", "data", "convert", "--format", "arctic", str(raw),
                        "--out", str(out), "--object-templates", str(templates), "--no-objects"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "--object-templates" in r.stderr
