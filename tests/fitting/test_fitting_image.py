"""`interhandgen fit --image`: the camera from EXIF (closed forms), and MediaPipe Hands on a rendered photo of two
hands (found, right handedness, keypoints where the hands are, nothing downloaded), end to end through the CLI."""

import math
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from interhandgen.cli import main
from interhandgen.data.format import HandModelSpec, TwoHandSet
from interhandgen.exceptions import InputError
from interhandgen.fitting import FitSettings, Fitter, make_prior, vectors_from_set
from interhandgen.fitting.image import DEFAULT_FOCAL_35MM, FULL_FRAME_DIAGONAL_MM, camera_from_exif, load_image
from interhandgen.fitting.overlay import shade_meshes
from interhandgen.hand.poses import hand_frame

SKIN = (224.0, 172.0, 138.0)
WALL = (60, 90, 120)
W, H, F = 640, 480, 600.0


def _exif(**tags) -> Image.Exif:
    exif = Image.Exif()
    ifd = exif.get_ifd(0x8769)
    for k, v in tags.items():
        ifd[int(k, 16)] = v
    return exif


def test_camera_from_exif_closed_forms():
    diag = math.hypot(W, H)
    cam = camera_from_exif(_exif(**{"0xA405": 35}), (W, H))
    assert cam.intrinsics.tolist() == pytest.approx([35 * diag / FULL_FRAME_DIAGONAL_MM] * 2 + [W / 2, H / 2])
    assert "35mm" in cam.source.replace(" ", "") or "35" in cam.source
    # 4.2 mm lens, 1000 pixels per cm on the sensor, stored image half the sensor's width: 210 px.
    cam = camera_from_exif(_exif(**{"0x920A": 4.2, "0xA20E": 1000.0, "0xA210": 3, "0xA002": 2 * W}), (W, H))
    assert float(cam.intrinsics[0]) == pytest.approx(4.2 * 100.0 * 0.5)
    cam = camera_from_exif(Image.Exif(), (W, H))
    assert float(cam.intrinsics[0]) == pytest.approx(DEFAULT_FOCAL_35MM * diag / FULL_FRAME_DIAGONAL_MM)
    assert math.degrees(2 * math.atan(diag / 2 / float(cam.intrinsics[0]))) == pytest.approx(79.5, abs=0.05)
    cam = camera_from_exif(_exif(**{"0xA405": 35}), (W, H), fov_degrees=90.0)
    assert float(cam.intrinsics[0]) == pytest.approx(W / 2)
    with pytest.raises(InputError, match="fov"):
        camera_from_exif(None, (W, H), fov_degrees=200.0)


def _photo_scene(palms_to_camera: bool = False):
    """Both hands in the rest pose held up side by side 0.45 m in front of the camera (fingers up), the right hand
    on the image's left as when a person faces the camera. Returns camera-frame vertices [2, V, 3], joints
    [2, 21, 3] (hands [left, right]) and the faces."""
    models = HandModelSpec.open_hand().load(pose_space="axis_angle", flat_hand_mean=True)
    verts, joints, faces = [], [], []
    for side, x in (("left", 0.075), ("right", -0.075)):
        m = models[side]
        frame = hand_frame(m)
        fwd = torch.tensor(frame["forward"], dtype=torch.float32)
        palm = torch.tensor(frame["palmar"], dtype=torch.float32)
        src = torch.stack([fwd, palm, torch.linalg.cross(fwd, palm)])
        up, face = torch.tensor([0.0, -1.0, 0.0]), torch.tensor([0.0, 0.0, -1.0 if palms_to_camera else 1.0])
        dst = torch.stack([up, face, torch.linalg.cross(up, face)])
        R = dst.T @ src  # forward -> up in the image, palmar -> towards / away from the camera
        out = m(hand_pose=torch.zeros(1, 45), global_orient=torch.zeros(1, 3), betas=torch.zeros(1, 10))
        c = out.joints[0, 4]
        place = torch.tensor([x, 0.0, 0.45])
        verts.append((out.vertices[0] - c) @ R.T + place)
        joints.append((out.joints[0] - c) @ R.T + place)
        faces.append(m.faces)
    return torch.stack(verts), torch.stack(joints), faces


def _write_photo(path: Path, verts, faces) -> Path:
    K = torch.tensor([F, F, W / 2, H / 2])
    rgb = shade_meshes([verts[0], verts[1]], faces, [SKIN, SKIN], K, (W, H), background=WALL, supersample=2)
    f35 = F * FULL_FRAME_DIAGONAL_MM / math.hypot(W, H)  # the 35 mm equivalent of the render's focal length
    Image.fromarray(rgb).save(path, exif=_exif(**{"0xA405": int(round(f35))}), quality=95)
    return path


@pytest.fixture
def no_network(monkeypatch):
    """Every Python-level connection attempt fails (mediapipe's model downloads go through urllib)."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def _package_files(package) -> dict:
    root = Path(package.__file__).parent
    return {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


@pytest.mark.parametrize("palms", [False, True])
def test_detector_finds_rendered_hands_offline(tmp_path, no_network, palms):
    mediapipe = pytest.importorskip("mediapipe")
    from interhandgen.fitting.image import detect_hands, observations_from_image

    before = _package_files(mediapipe)
    verts, joints, faces = _photo_scene(palms_to_camera=palms)
    path = _write_photo(tmp_path / "hands.jpg", verts, faces)
    obs, image, camera, found = observations_from_image(path)
    assert sorted(d["side"] for d in found) == ["left", "right"], found
    assert float(camera.intrinsics[0]) == pytest.approx(F, rel=0.02) and "EXIF" in camera.source
    truth = torch.stack([F * joints[..., 0] / joints[..., 2] + W / 2, F * joints[..., 1] / joints[..., 2] + H / 2], -1)
    err = (obs.keypoints_2d[0] - truth).norm(dim=-1)  # [2, 21] px; the hands are about 120 px wide
    assert bool((obs.confidence_2d == 1).all())
    assert float(err.median()) < 12.0 and float(err.max()) < 40.0, err
    # The same photo taken as mirrored keeps the detector's labels: the sides swap.
    kp, conf, _ = detect_hands(image, mirrored=True)
    assert torch.allclose(kp[[1, 0]], obs.keypoints_2d[0])
    assert _package_files(mediapipe) == before  # nothing written into the package (no model fetched)


def test_fit_image_cli_end_to_end(tmp_path, no_network):
    pytest.importorskip("mediapipe")
    verts, joints, faces = _photo_scene()
    path = _write_photo(tmp_path / "hands.jpg", verts, faces)
    out, png, obs_json = tmp_path / "fit.npz", tmp_path / "overlay.png", tmp_path / "obs.json"
    code = main(["fit", "--image", str(path), "--out", str(out), "--render", str(png), "--save-observations",
                 str(obs_json), "--prior", "gaussian", "--iterations", "80", "--no-progress"])
    assert code == 0
    fitted = TwoHandSet.load(out)
    assert len(fitted) == 1 and obs_json.is_file()
    module, mean, std = make_prior("none")
    fitter = Fitter(module, mean, std, settings=FitSettings(iterations=1))
    fj = fitter.body.joints(vectors_from_set(fitted, fitter.models))[0]
    uv = lambda j: torch.stack([F * j[..., 0] / j[..., 2] + W / 2, F * j[..., 1] / j[..., 2] + H / 2], -1)  # noqa: E731
    # Each fitted hand projects onto its true hand (a few px of detector bias), not onto the other one.
    err = (uv(fj) - uv(joints)).norm(dim=-1).mean(-1)
    assert float(err.max()) < 15.0, err
    overlay = np.asarray(Image.open(png))
    assert overlay.shape == (H, W, 3)
    photo, _, _ = load_image(path)
    assert np.abs(overlay.astype(int) - photo.astype(int)).max() > 50  # the meshes are drawn over the photo


def test_fit_image_cli_errors(tmp_path, capsys):
    blank = tmp_path / "blank.png"
    Image.new("RGB", (64, 48), WALL).save(blank)
    with pytest.raises(SystemExit) as exc:  # argparse: the two sources exclude each other
        main(["fit", "--observations", str(blank), "--image", str(blank), "--out", str(tmp_path / "x.npz")])
    assert exc.value.code == 2 and "not allowed with" in capsys.readouterr().err
    code = main(["fit", "--observations", str(blank), "--fov", "60", "--out", str(tmp_path / "x.npz")])
    assert code == 2 and "--fov" in capsys.readouterr().err
    code = main(["fit", "--image", str(tmp_path / "missing.jpg"), "--out", str(tmp_path / "x.npz")])
    assert code == 2 and "missing.jpg" in capsys.readouterr().err
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(InputError, match="bad.jpg"):
        load_image(bad)


def test_image_without_hands_is_an_error(tmp_path, no_network):
    pytest.importorskip("mediapipe")
    from interhandgen.fitting.image import observations_from_image

    blank = tmp_path / "blank.png"
    Image.new("RGB", (W, H), WALL).save(blank)
    with pytest.raises(InputError, match="found no hand"):
        observations_from_image(blank)
