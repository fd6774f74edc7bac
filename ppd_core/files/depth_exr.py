"""The float depth output, as MoGe's `moge infer --maps` writes it: a float32 OpenEXR depth
map in metres, its validity mask as a PNG, and the camera as a small JSON file.

The EXR holds planar depth along the optical axis (the z of the OpenCV camera frame), no
depth = +inf (MoGe's convention; `read_depth_file(..., "metric")` reads it back as no depth).
The mask is 255 where there is depth, 0 elsewhere (MoGe's `mask.png`). The JSON gives the
intrinsics in pixels of the depth map (pixel (x, y) has its centre at (x + 0.5, y + 0.5)),
its size, the fields of view in degrees (MoGe's `fov.json` keys) and where the depth's scale
and the camera came from.
"""

from __future__ import annotations

import json
import math
import os

import cv2
import numpy as np

from ppd_core.errors import OutputError
from ppd_core.geometry.camera import CameraRecord

CAMERA_FORMAT = "ppd-camera-1"
CAMERA_JSON_KEYS = ("format", "width", "height", "fx", "fy", "cx", "cy", "fov_x", "fov_y")
"""Keys every camera JSON has (besides the sources of scale and camera)."""
NO_DEPTH = float("inf")
"""The EXR's value where there is no depth."""


def camera_json(camera: CameraRecord, width: int, height: int, depth_info: dict, names: tuple[str, str]) -> dict:
    """The camera of a `width` x `height` depth map (the photo's camera, scaled to it) and where
    its scale and camera came from; `names` are the EXR's and the mask's file names."""
    grid = camera.intrinsics.scaled(width, height)
    record = {
        "format": CAMERA_FORMAT, "depth_file": names[0], "mask_file": names[1],
        "depth": "float32 planar depth along the optical axis in metres; no depth = inf",
        "frame": "OpenCV camera: x right, y down, z forward; pixel (x, y) has its centre at (x + 0.5, y + 0.5)",
        "width": int(width), "height": int(height),
        "fx": grid.fx, "fy": grid.fy, "cx": grid.cx, "cy": grid.cy,
        "fov_x": round(math.degrees(2.0 * math.atan(width / (2.0 * grid.fx))), 4),
        "fov_y": round(math.degrees(2.0 * math.atan(height / (2.0 * grid.fy))), 4),
        "photo_size": [int(camera.width), int(camera.height)],
        "scale_source": depth_info.get("scale", ""), "camera_source": depth_info.get("camera", ""),
    }
    if depth_info.get("scale_guessed"):
        record["scale_guessed"] = True
    return record


def exr_bytes(depth: np.ndarray) -> bytes:
    """A one-channel float32 OpenEXR of `depth` (metres; NaN, 0 and negatives become inf)."""
    values = np.asarray(depth, dtype=np.float32)
    with np.errstate(invalid="ignore"):
        values = np.where(np.isfinite(values) & (values > 0), values, np.float32(NO_DEPTH)).astype(np.float32)
    os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")  # OpenCV reads it at its first EXR call
    try:
        ok, data = cv2.imencode(".exr", values, [cv2.IMWRITE_EXR_TYPE, cv2.IMWRITE_EXR_TYPE_FLOAT])
    except cv2.error:
        ok = False
    if not ok:
        raise OutputError("this OpenCV cannot write EXR (built without OpenEXR, or OPENCV_IO_ENABLE_OPENEXR=0)")
    return data.tobytes()


def depth_exr_files(depth: np.ndarray, camera: CameraRecord, depth_info: dict,
                    names: tuple[str, str]) -> tuple[bytes, bytes, bytes]:
    """(EXR depth, mask PNG, camera JSON) of metric `depth` seen by `camera` (of the photo)."""
    height, width = depth.shape
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(depth) & (depth > 0)
    ok, mask = cv2.imencode(".png", np.where(valid, 255, 0).astype(np.uint8))
    if not ok:
        raise OutputError("OpenCV could not encode the mask PNG")
    record = camera_json(camera, width, height, depth_info, names)
    return exr_bytes(depth), mask.tobytes(), (json.dumps(record, indent=1) + "\n").encode("utf-8")
