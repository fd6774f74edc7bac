"""Depth map + intrinsics (+ photo) -> an edge-clean point cloud in the OpenCV camera frame.

Where depth jumps, a predicted or resized map holds pixels whose depth lies between the two
surfaces: lifted as is, they become "flying points" strung between foreground and
background. `ppd_core.geometry.edges.discontinuity_mask` finds those pixels and `lift` drops
them; the rest are unprojected through their pixel centres (`camera.unproject`).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from mesh.data import PixelCloud
from ppd_core.errors import BadInputError
from ppd_core.geometry.camera import Intrinsics, pixel_rays, unproject
from ppd_core.geometry.edges import check_depth, check_rgb, discontinuity_mask, valid_depth


def _one_sided_slopes(values: np.ndarray, usable: np.ndarray, axis: int) -> np.ndarray:
    """Per-pixel derivative along `axis`: of the forward and backward differences to usable
    neighbours, the one smaller in magnitude (so it never reaches across an edge); 0 if none."""
    diff = np.diff(values, axis=axis)
    both = np.logical_and(np.delete(usable, 0, axis=axis), np.delete(usable, -1, axis=axis))
    diff = np.where(both, diff, np.float32(np.inf))  # inf: no usable neighbour on that side
    pad_front = [(0, 0), (0, 0)]
    pad_front[axis] = (1, 0)
    pad_back = [(0, 0), (0, 0)]
    pad_back[axis] = (0, 1)
    backward = np.pad(diff, pad_front, constant_values=np.inf)
    forward = np.pad(diff, pad_back, constant_values=np.inf)
    slope = np.where(np.abs(forward) < np.abs(backward), forward, backward)
    slope[np.isinf(slope)] = 0.0
    return slope


def depth_normals(depth: np.ndarray, usable: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
    """(H, W, 3) float32 unit normals of the lifted surface, oriented toward the camera.

    With disparity D = 1/z and its per-pixel slopes D_x, D_y (one-sided, the side with the
    smaller change, so edges do not bend them), the normal of P(x, y) = z * r(x, y) is
    proportional to -(fx D_x, fy D_y, D - fx r_x D_x - fy r_y D_y): exact on planes, where
    disparity is affine in pixel coordinates. Pixels without usable neighbours face the camera.
    """
    disparity = np.where(usable, 1.0 / np.where(usable, depth, 1.0), 0.0).astype(np.float32)
    slope_x = _one_sided_slopes(disparity, usable, axis=1) * np.float32(intrinsics.fx)
    slope_y = _one_sided_slopes(disparity, usable, axis=0) * np.float32(intrinsics.fy)
    ray_x, ray_y = pixel_rays(intrinsics)
    along_z = ray_x[None, :] * slope_x + ray_y[:, None] * slope_y - disparity
    length = np.sqrt(slope_x * slope_x + slope_y * slope_y + along_z * along_z)
    facing = usable & (length > 0)
    scale = np.divide(np.float32(1.0), length, out=np.zeros_like(length), where=facing)
    normals = np.empty((*depth.shape, 3), dtype=np.float32)  # one component plane at a time
    np.multiply(slope_x, -scale, out=normals[:, :, 0])
    np.multiply(slope_y, -scale, out=normals[:, :, 1])
    normals[:, :, 2] = np.where(facing, along_z * scale, np.float32(-1.0))
    return normals


def lift(depth: np.ndarray, intrinsics: Intrinsics, rgb: Optional[np.ndarray] = None, *,
         edge_strength: float = 0.5) -> PixelCloud:
    """Lift a metric depth map (metres) to an edge-clean point cloud.

    Pixels at a depth discontinuity are dropped. `rgb` (same grid, or the same aspect at
    another size) colours the points and guides the edge detector. Intrinsics for another
    resolution of the same image are rescaled. `valid` is exactly the pixels that have a point.
    """
    depth = check_depth(depth)
    h, w = depth.shape
    if (intrinsics.width, intrinsics.height) != (w, h):
        if abs(intrinsics.width / intrinsics.height - w / h) > 0.01 * (w / h):
            raise BadInputError(
                f"intrinsics are for {intrinsics.width}x{intrinsics.height} but depth is {w}x{h} (other aspect ratio)"
            )
        intrinsics = intrinsics.scaled(w, h)
    rgb = check_rgb(rgb, depth.shape)
    valid = valid_depth(depth)
    if not valid.any():
        raise BadInputError("depth map has no valid pixels (all NaN, infinite, zero or negative)")

    mask = discontinuity_mask(depth, rgb, edge_strength)
    keep = valid & ~mask
    index = np.flatnonzero(keep)

    def gather(values: np.ndarray) -> np.ndarray:  # rows of an (H, W, C) map at `index`
        return np.take(values.reshape(-1, values.shape[-1]), index, axis=0)

    return PixelCloud(
        points=gather(unproject(depth, intrinsics)),
        colors=gather(rgb) if rgb is not None else np.full((index.size, 3), 128, np.uint8),
        normals=gather(depth_normals(depth, keep, intrinsics)),
        pixel_index=index.astype(np.int64, copy=False),
        valid=keep,
        discontinuity=mask,
    )
