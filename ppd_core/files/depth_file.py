"""Depth map files: reading the formats users bring, and the 16-bit PNG the product writes.

A metric 16-bit PNG holds millimetres (the Kinect / ScanNet habit), 0 = no depth; what
`depth_png_bytes` writes, `read_depth_file` reads back.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import cv2
import numpy as np

from mesh.image_size import ImageTooLarge, check_image_size
from ppd_core.errors import BadInputError
from ppd_core.options import DEPTH_KINDS

PNG_METRIC_SCALE = 0.001
"""Metres per unit of a 16-bit metric depth PNG."""

DEPTH_PNG_MAX_M = 65535 * PNG_METRIC_SCALE
"""The farthest depth a 16-bit millimetre PNG holds; farther pixels are stored as this."""


def _read_image_depth(path: Path) -> np.ndarray:
    """One channel of a PNG / TIFF / EXR depth image, as stored (integers or floats).

    Of several channels the red one is read; an integer image whose channels differ is a
    colour picture (a photo, our own depth preview), not depth, and is refused."""
    if check_image_size(path) is None:  # OpenCV would guess the format from the content: size unknown
        raise BadInputError(f"{path}: not a depth image OpenCV can read (no PNG, TIFF or EXR header)")
    if path.suffix.lower() == ".exr":
        os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")
    values = cv2.imread(str(path), cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH)
    if values is None:
        raise BadInputError(f"{path}: not a depth image OpenCV can read")
    if values.ndim == 3 and values.shape[2] >= 3:
        blue, green, red = values[:, :, 0], values[:, :, 1], values[:, :, 2]
        grey = np.array_equal(blue, green) and np.array_equal(blue, red)
        if np.issubdtype(values.dtype, np.integer) and not grey:
            raise BadInputError(f"{path}: a colour picture, not a depth map (depth has one channel; "
                                f"a *_depth_preview.png is only for looking at, use the *_depth.png beside it)")
        return red
    return values[:, :, 0] if values.ndim == 3 else values


def _read_values(path: Path, suffix: str) -> np.ndarray:
    """The file's array as stored, its size checked before it is read."""
    if suffix == ".npy":
        check_image_size(path)
        try:
            values = np.load(path, allow_pickle=False)  # never unpickle: object arrays are refused
        except (ValueError, OSError, EOFError) as exc:
            raise BadInputError(f"{path}: not a readable .npy array ({exc or 'empty file'})") from None
        while values.ndim > 2 and 1 in values.shape:  # (1, H, W) or (H, W, 1); a 1x1 map stays 2-D
            values = np.squeeze(values, axis=values.shape.index(1))
        return values
    if suffix in (".png", ".tif", ".tiff", ".exr"):
        return _read_image_depth(path)
    raise BadInputError(f"{path}: unsupported depth file type {suffix!r} (use .npy, .png, .tif, .exr)")


def read_depth_file(path: Union[str, Path], kind: str) -> np.ndarray:
    """Read a depth map file as float32 (H, W) in the units of `kind`.

    kind "metric": metres (a 16-bit PNG holds millimetres, see `PNG_METRIC_SCALE`; 0 = no depth
    and becomes NaN). kind "disparity": inverse depth as stored. kind "normalized": PPD's p in
    [0, 1] (integer PNGs are divided by their maximum code, 255 or 65535).
    Formats: .npy, 8/16-bit .png, float .tif/.tiff, .exr (OpenCV's OpenEXR reader).
    """
    path = Path(path)
    if kind not in DEPTH_KINDS:
        raise BadInputError(f"{path}: depth kind {kind!r} is not one of {', '.join(DEPTH_KINDS)}")
    if not path.is_file():
        raise BadInputError(f"{path}: {'not a file' if path.exists() else 'no such depth file'}")
    suffix = path.suffix.lower()
    try:
        values = _read_values(path, suffix)
    except ImageTooLarge as error:
        raise BadInputError(str(error)) from None
    except PermissionError:
        raise BadInputError(f"{path}: cannot read it (permission denied)") from None
    if not (np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.floating)):
        raise BadInputError(f"{path}: depth must hold real numbers, not {values.dtype}")
    if values.ndim != 2 or values.size == 0:
        raise BadInputError(f"{path}: depth must be a 2-D numeric map, got shape {values.shape}")
    integer = np.issubdtype(values.dtype, np.integer)
    with np.errstate(over="ignore"):  # float64 beyond float32's range becomes inf: no depth
        out = values.astype(np.float32)
    if integer and kind == "metric":
        out[out == 0] = np.nan
        if values.dtype == np.uint16:
            out *= PNG_METRIC_SCALE
    elif integer and kind == "normalized":
        out /= 65535.0 if values.dtype == np.uint16 else 255.0
    return out


def depth_png_bytes(depth: np.ndarray) -> tuple[bytes, bytes]:
    """(16-bit PNG of metric depth in millimetres, colour preview PNG, near warm). 0 = no
    depth; depths beyond `DEPTH_PNG_MAX_M` are stored as that."""
    depth = np.asarray(depth, dtype=np.float64)
    valid = np.isfinite(depth) & (depth > 0)
    millimetres = np.where(valid, np.clip(np.rint(depth / PNG_METRIC_SCALE), 1, 65535), 0).astype(np.uint16)
    nearness = np.zeros(depth.shape, dtype=np.uint8)
    if valid.any():
        inverse = np.where(valid, 1.0 / np.where(valid, depth, 1.0), 0.0)
        low, high = np.percentile(inverse[valid], [2.0, 98.0])
        scaled = (inverse - low) / (high - low) if high > low else np.full(depth.shape, 0.5)
        nearness = np.clip(np.rint(scaled * 255.0), 0, 255).astype(np.uint8)
    preview = cv2.applyColorMap(nearness, cv2.COLORMAP_TURBO)
    preview[~valid] = 0
    return _png(millimetres), _png(preview)


def _png(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise BadInputError("OpenCV could not encode the PNG")
    return data.tobytes()
