"""Observations from a photo: 2D hand keypoints by MediaPipe Hands and a pinhole camera from EXIF.

Optional extra ``pip install "interhandgen[image]"`` (mediapipe 0.10.14). Its legacy ``solutions.hands`` graph
runs the palm detector and the hand landmark model that ship inside the wheel (``mediapipe/modules/palm_detection``
and ``hand_landmark``): nothing is downloaded at run time. Later mediapipe releases no longer ship them.

- Keypoints: MediaPipe's 21 landmarks are in the OpenPose order (wrist, thumb CMC..tip, index MCP..tip, ...),
  normalised by the image width and height; pixels are ``u = x W``, ``v = y H`` (the project's convention: the
  top-left pixel's centre is (0.5, 0.5)). Every landmark of a detected hand gets confidence 1 (the detector keeps
  a hand only above ``min_confidence``; it reports no per-landmark confidence), a hand not detected is unobserved.
- Handedness: from the detector's classifier. MediaPipe assumes a mirrored (selfie) image, so for an ordinary
  photo its "Left" is the right hand and its "Right" the left hand (``mirrored=True`` takes the labels as they
  are). When both detections get the same label, the more confident one keeps it and the other takes the other
  side.
- Camera: principal point at the image centre, fx = fy from EXIF: ``FocalLengthIn35mmFilm`` (the 35 mm
  equivalent, defined by the diagonal: f_px = f_35 * diagonal_px / 43.27 mm), else ``FocalLength`` with
  ``FocalPlaneXResolution`` (sensor pixels per unit); else the default :data:`DEFAULT_FOCAL_35MM` = 26 mm
  equivalent (a phone's main camera: diagonal field of view 79.5 degrees). ``fov_degrees`` overrides all of them
  with a horizontal field of view.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from interhandgen.exceptions import InputError, MissingFileError
from interhandgen.fitting.observations import NUM_JOINTS, Observations, to_mano21

FULL_FRAME_DIAGONAL_MM = math.hypot(36.0, 24.0)  # 43.27 mm: the 35 mm film frame
DEFAULT_FOCAL_35MM = 26.0  # mm, 35 mm equivalent: diagonal field of view 2 atan(43.27 / 52) = 79.5 degrees
DETECTOR = "mediapipe 0.10.14 solutions.hands"
# EXIF tags (Exif IFD 0x8769)
_EXIF_IFD = 0x8769
_FOCAL_35MM, _FOCAL, _PLANE_X_RES, _PLANE_UNIT, _EXIF_WIDTH = 0xA405, 0x920A, 0xA20E, 0xA210, 0xA002
_MM_PER_UNIT = {2: 25.4, 3: 10.0}  # FocalPlaneResolutionUnit: inch, centimetre


@dataclasses.dataclass
class ImageCamera:
    """intrinsics [4] (fx, fy, cx, cy) in pixels, size (width, height), and where the focal length came from."""

    intrinsics: torch.Tensor
    size: tuple[int, int]
    source: str


def load_image(path: str | os.PathLike) -> tuple[np.ndarray, Image.Exif, tuple[int, int]]:
    """(RGB uint8 [H, W, 3] upright by its EXIF orientation, the EXIF data, the stored (width, height))."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"image not found: {path}")
    try:
        with Image.open(path) as im:
            exif = im.getexif()
            stored = im.size
            rgb = ImageOps.exif_transpose(im).convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"{path}: not a readable image: {exc}") from None
    return np.asarray(rgb), exif, stored


def _rational(value) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return v if math.isfinite(v) and v > 0 else None


def camera_from_exif(exif: Image.Exif | None, size: tuple[int, int], stored_size: tuple[int, int] | None = None,
                     fov_degrees: float | None = None) -> ImageCamera:
    """The pinhole camera of an image of ``size`` (width, height) (see the module docstring for the rules).

    stored_size: the (width, height) of the pixels as stored (before the EXIF orientation), which the focal-plane
    resolution refers to; default ``size``.
    """
    W, H = int(size[0]), int(size[1])
    if fov_degrees is not None:
        if not 0.0 < fov_degrees < 180.0:
            raise InputError(f"--fov must lie in (0, 180) degrees, got {fov_degrees}")
        f = 0.5 * W / math.tan(math.radians(fov_degrees) / 2.0)
        source = f"horizontal field of view {fov_degrees:g} degrees (given)"
    else:
        ifd = exif.get_ifd(_EXIF_IFD) if exif is not None else {}
        f35 = _rational(ifd.get(_FOCAL_35MM))
        focal = _rational(ifd.get(_FOCAL))
        xres = _rational(ifd.get(_PLANE_X_RES))
        unit = ifd.get(_PLANE_UNIT, 2)
        if f35 is not None:
            f = f35 * math.hypot(W, H) / FULL_FRAME_DIAGONAL_MM
            source = f"EXIF FocalLengthIn35mmFilm {f35:g} mm"
        elif focal is not None and xres is not None and unit in _MM_PER_UNIT:
            sw = (stored_size or size)[0]
            exif_w = _rational(ifd.get(_EXIF_WIDTH)) or sw
            # Pixels per mm on the sensor, scaled if the stored image was resized after capture.
            f = focal * xres / _MM_PER_UNIT[unit] * (sw / exif_w)
            source = f"EXIF FocalLength {focal:g} mm and FocalPlaneXResolution"
        else:
            f = DEFAULT_FOCAL_35MM * math.hypot(W, H) / FULL_FRAME_DIAGONAL_MM
            source = f"default: {DEFAULT_FOCAL_35MM:g} mm equivalent (no usable EXIF focal length)"
    K = torch.tensor([f, f, W / 2.0, H / 2.0], dtype=torch.float32)
    return ImageCamera(K, (W, H), source)


def _mediapipe_hands():
    try:
        from mediapipe.python.solutions import hands
    except ImportError as exc:  # the optional extra is missing
        raise InputError("--image needs the optional dependency mediapipe: pip install 'interhandgen[image]'") from exc
    return hands


def detect_hands(image: np.ndarray, mirrored: bool = False, min_confidence: float = 0.5,
                 model_complexity: int = 1) -> tuple[torch.Tensor, torch.Tensor, list[dict]]:
    """2D keypoints of up to two hands in an RGB uint8 image [H, W, 3].

    Returns keypoints [2, 21, 2] (pixels, MANO21 order, hands [left, right]), confidence [2, 21] (1 for a
    detected hand's landmarks, 0 for a hand not found) and one record per detection (side, detector label, score).
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise InputError(f"image must be RGB uint8 [H, W, 3], got {image.dtype} {list(image.shape)}")
    hands = _mediapipe_hands()
    H, W = image.shape[:2]
    with warnings.catch_warnings():  # mediapipe 0.10.14 calls a protobuf API that newer protobufs deprecate
        warnings.filterwarnings("ignore", message=".*GetPrototype.*", category=UserWarning)
        with hands.Hands(static_image_mode=True, max_num_hands=2, model_complexity=model_complexity,
                         min_detection_confidence=min_confidence) as detector:
            result = detector.process(np.ascontiguousarray(image))
    found = []
    for lm, hd in zip(result.multi_hand_landmarks or [], result.multi_handedness or []):
        cls = hd.classification[0]
        # MediaPipe labels as if the image were mirrored (a selfie): swap for an ordinary photo.
        side = {"Left": 0, "Right": 1}[cls.label]
        if not mirrored:
            side = 1 - side
        pts = np.array([[p.x * W, p.y * H] for p in lm.landmark], dtype=np.float64)
        found.append({"side": side, "label": cls.label, "score": float(cls.score), "points": pts})
    found.sort(key=lambda d: -d["score"])
    if len(found) == 2 and found[0]["side"] == found[1]["side"]:
        found[1]["side"] = 1 - found[0]["side"]
    keypoints = torch.zeros(2, NUM_JOINTS, 2)
    confidence = torch.zeros(2, NUM_JOINTS)
    for d in found:
        keypoints[d["side"]] = torch.as_tensor(to_mano21(d["points"], "openpose"), dtype=torch.float32)
        confidence[d["side"]] = 1.0
    records = [{"side": ("left", "right")[d["side"]], "label": d["label"], "score": d["score"]} for d in found]
    return keypoints, confidence, records


def observations_from_image(path: str | os.PathLike, mirrored: bool = False, fov_degrees: float | None = None,
                            min_confidence: float = 0.5) -> tuple[Observations, np.ndarray, ImageCamera, list[dict]]:
    """One frame of observations from a photo: (observations, the upright RGB image, its camera, detections).

    Raises :class:`InputError` when no hand is detected.
    """
    image, exif, stored = load_image(path)
    camera = camera_from_exif(exif, (image.shape[1], image.shape[0]), stored, fov_degrees)
    keypoints, confidence, records = detect_hands(image, mirrored=mirrored, min_confidence=min_confidence)
    if not records:
        raise InputError(f"{path}: the hand detector ({DETECTOR}) found no hand (min confidence {min_confidence})")
    obs = Observations(keypoints_2d=keypoints[None], confidence_2d=confidence[None], intrinsics=camera.intrinsics[None],
                       image_size=camera.size)
    return obs, image, camera, records
