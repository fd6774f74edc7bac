"""Pinhole camera intrinsics (OpenCV convention) and their conversions.

Pixel (x, y) (integer column, row) has its centre at the continuous image coordinate
(x + 0.5, y + 0.5); a principal point of (width / 2, height / 2) is the image centre.
Where the focal length comes from, in order: an explicit field of view from the caller,
EXIF FocalLengthIn35mmFilm, EXIF FocalLength with a known sensor width, then (in the
pipeline) MoGe-2's estimate, else `DEFAULT_HFOV_DEG`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

import numpy as np

from ppd_core.errors import BadInputError
from ppd_core.options import DEFAULT_HFOV_DEG

if TYPE_CHECKING:
    from ppd_core.files.photo import Photo

FULL_FRAME_WIDTH_MM = 36.0
"""Width of a 35 mm film frame (36 x 24 mm); also the default Blender sensor width."""

FULL_FRAME_DIAGONAL_MM = math.hypot(36.0, 24.0)
"""Diagonal of a 35 mm film frame: EXIF FocalLengthIn35mmFilm is defined through it (CIPA DC-008)."""

SENSOR_WIDTHS_MM: dict[str, float] = {
    "canon eos 5d mark iv": 36.0,
    "canon eos r5": 36.0,
    "canon eos 80d": 22.5,
    "nikon d750": 35.9,
    "nikon d850": 35.9,
    "nikon d3500": 23.5,
    "ilce-7m3": 35.6,
    "ilce-6400": 23.5,
    "x-t3": 23.5,
    "e-m10markiii": 17.3,
    "dc-gh5": 17.3,
    "hero9 black": 6.17,
}
"""Sensor widths (mm) of cameras that may omit FocalLengthIn35mmFilm, keyed by the EXIF
Model string in lower case (phones write the 35 mm value, so they need no entry)."""


@dataclass(frozen=True)
class Intrinsics:
    """Focal lengths and principal point in pixels of an image of `width` x `height`."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def scaled(self, width: int, height: int) -> Intrinsics:
        """The same camera for the image resized to `width` x `height` (edges map to edges)."""
        if width <= 0 or height <= 0:
            raise BadInputError(f"cannot scale intrinsics to {width}x{height}: size must be positive")
        sx = width / self.width
        sy = height / self.height
        return Intrinsics(self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy, int(width), int(height))

    def as_matrix(self) -> np.ndarray:
        """The 3x3 camera matrix K (float64)."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def hfov_deg(self) -> float:
        """Horizontal field of view in degrees (for a centred principal point)."""
        return math.degrees(2.0 * math.atan(self.width / (2.0 * self.fx)))


def intrinsics_from_fov(width: int, height: int, hfov_deg: float) -> Intrinsics:
    """Square-pixel intrinsics with a centred principal point and horizontal FOV `hfov_deg`."""
    if width <= 0 or height <= 0:
        raise BadInputError(f"image size {width}x{height} is not positive")
    if not (0.0 < hfov_deg < 180.0) or not math.isfinite(hfov_deg):
        raise BadInputError(f"field of view {hfov_deg} degrees is outside (0, 180)")
    f = width / (2.0 * math.tan(math.radians(hfov_deg) / 2.0))
    return Intrinsics(f, f, width / 2.0, height / 2.0, int(width), int(height))


def _sensor_width_mm(model: Optional[str]) -> Optional[float]:
    """Known sensor width for an EXIF Model string, or None."""
    if not model:
        return None
    return SENSOR_WIDTHS_MM.get(" ".join(model.lower().split()))


def known_intrinsics(photo: Photo, fov_deg: Optional[float] = None) -> tuple[Optional[Intrinsics], str]:
    """(intrinsics, where they come from) when the caller or the photo's EXIF says, else (None, "").

    An explicit horizontal `fov_deg` wins ("given field of view"). EXIF FocalLengthIn35mmFilm
    gives the lens that would show the same diagonal view on a 36 x 24 mm frame, so the focal
    length in pixels is f35 * image diagonal / 43.27 mm (for any aspect ratio, e.g. a 4:3 phone
    photo). EXIF FocalLength is used when the camera model's sensor width is known
    (`SENSOR_WIDTHS_MM`): f_mm * width / sensor width. Square pixels and a centred principal
    point are assumed.
    """
    height, width = photo.rgb.shape[:2]
    if fov_deg is not None:
        return intrinsics_from_fov(width, height, fov_deg), "given field of view"
    focal_px = None
    if photo.focal_35mm is not None and photo.focal_35mm > 0:
        focal_px = photo.focal_35mm * math.hypot(width, height) / FULL_FRAME_DIAGONAL_MM
    else:
        sensor = _sensor_width_mm(photo.model)
        if photo.focal_mm is not None and photo.focal_mm > 0 and sensor is not None:
            focal_px = photo.focal_mm * width / sensor
    if focal_px is None:
        return None, ""
    return Intrinsics(focal_px, focal_px, width / 2.0, height / 2.0, int(width), int(height)), "EXIF"


DEFAULT_CAMERA = f"default {DEFAULT_HFOV_DEG:g} degrees (a guess)"
"""Where the camera came from when nothing told: the words every result uses."""


def camera_for_photo(photo: Photo, fov_deg: Optional[float] = None,
                     fallback: Optional[tuple[Intrinsics, str]] = None) -> tuple[Intrinsics, str]:
    """(intrinsics, where they came from) for `photo`: explicit horizontal `fov_deg`, else EXIF
    (`known_intrinsics`), else `fallback` (another source's camera and its name), else
    `DEFAULT_HFOV_DEG`."""
    known, source = known_intrinsics(photo, fov_deg)
    if known is not None:
        return known, source
    return fallback or (intrinsics_from_fov(photo.width, photo.height, DEFAULT_HFOV_DEG), DEFAULT_CAMERA)


def intrinsics_for_photo(photo: Photo, fov_deg: Optional[float] = None) -> Intrinsics:
    """Intrinsics for `photo`: explicit horizontal `fov_deg`, else EXIF, else `DEFAULT_HFOV_DEG`."""
    return camera_for_photo(photo, fov_deg)[0]


def intrinsics_from_normalized(matrix, width: int, height: int) -> Intrinsics:
    """Pixel intrinsics of a `width` x `height` image from a 3x3 matrix normalised by the image
    size (fx, cx divided by the width; fy, cy by the height), as MoGe-2 gives them."""
    matrix = np.asarray(matrix, dtype=np.float64)
    return Intrinsics(matrix[0, 0] * width, matrix[1, 1] * height, matrix[0, 2] * width, matrix[1, 2] * height,
                      int(width), int(height))


def pixel_rays(intrinsics: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
    """(ray_x (W,), ray_y (H,)) float32 such that the point seen at pixel (x, y) with depth z
    is (ray_x[x] * z, ray_y[y] * z, z): the pinhole unprojection through pixel centres."""
    ray_x = (np.arange(intrinsics.width, dtype=np.float32) + 0.5 - np.float32(intrinsics.cx)) / np.float32(intrinsics.fx)
    ray_y = (np.arange(intrinsics.height, dtype=np.float32) + 0.5 - np.float32(intrinsics.cy)) / np.float32(intrinsics.fy)
    return ray_x, ray_y


def unproject(depth: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
    """(H, W, 3) float32 camera-frame points of every pixel of a depth map on the intrinsics'
    grid (NaN where depth is NaN)."""
    depth = np.asarray(depth, dtype=np.float32)
    if depth.shape != (intrinsics.height, intrinsics.width):
        raise BadInputError(f"depth is {depth.shape[1]}x{depth.shape[0]} but the intrinsics are for "
                            f"{intrinsics.width}x{intrinsics.height}")
    ray_x, ray_y = pixel_rays(intrinsics)
    points = np.empty((*depth.shape, 3), dtype=np.float32)
    with np.errstate(invalid="ignore"):  # a centre ray (0) times an infinite depth
        points[:, :, 0] = ray_x[None, :] * depth
        points[:, :, 1] = ray_y[:, None] * depth
    points[:, :, 2] = depth
    return points


def project(points: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
    """Continuous pixel coordinates (N, 2) of camera-frame points (N, 3); pixel (x, y)'s
    centre is (x + 0.5, y + 0.5). Points at z <= 0 give non-finite coordinates."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    with np.errstate(divide="ignore", invalid="ignore"):
        u = intrinsics.fx * pts[:, 0] / pts[:, 2] + intrinsics.cx
        v = intrinsics.fy * pts[:, 1] / pts[:, 2] + intrinsics.cy
    behind = pts[:, 2] <= 0
    u[behind] = np.nan
    v[behind] = np.nan
    return np.stack([u, v], axis=1)


@dataclass(frozen=True)
class CameraRecord:
    """The photo's camera as every consumer receives it: the pinhole intrinsics in pixels of
    the photo and the equivalent Blender camera (see `camera_record`). It travels in the
    result file, in the job's result stats and into the Blender add-on's camera."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    lens_mm: float
    sensor_width_mm: float
    sensor_fit: str
    shift_x: float
    shift_y: float

    @property
    def intrinsics(self) -> Intrinsics:
        return Intrinsics(self.fx, self.fy, self.cx, self.cy, self.width, self.height)


def camera_record(intrinsics: Intrinsics, sensor_width_mm: float = FULL_FRAME_WIDTH_MM) -> CameraRecord:
    """The intrinsics with the Blender camera that renders exactly like them at their resolution.

    Blender's camera looks down its local -Z with +Y up: a camera-frame point (x, y, z) of
    OpenCV is (x, -y, -z) in Blender's camera frame (a 180 degree turn about x). With
    sensor_fit "HORIZONTAL" Blender maps the sensor width onto the image width, and lens
    shift is measured in units of the image width (for "AUTO" it would be the larger side).
    Its projection of a Blender camera-frame point (X, Y, Z) to pixels (u right, v down) is

        f_px = lens_mm / sensor_width_mm * resolution_x
        u    = f_px * X / -Z + resolution_x / 2 - shift_x * resolution_x
        v    = f_px * -Y / -Z + resolution_y / 2 + shift_y * resolution_x

    so lens_mm = fx * sensor_width_mm / width, shift_x = (width / 2 - cx) / width and
    shift_y = (cy - height / 2) / width. Blender has one focal length: fx == fy is assumed
    (square pixels; fx is used).
    """
    width, height = intrinsics.width, intrinsics.height
    return CameraRecord(
        width=int(width), height=int(height),
        fx=float(intrinsics.fx), fy=float(intrinsics.fy), cx=float(intrinsics.cx), cy=float(intrinsics.cy),
        lens_mm=float(intrinsics.fx * sensor_width_mm / width),
        sensor_width_mm=float(sensor_width_mm),
        sensor_fit="HORIZONTAL",
        shift_x=float((width / 2.0 - intrinsics.cx) / width),
        shift_y=float((intrinsics.cy - height / 2.0) / width),
    )
