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
    diff = np.where(both, diff, np.nan)
    pad_front = [(0, 0), (0, 0)]
    pad_front[axis] = (1, 0)
    pad_back = [(0, 0), (0, 0)]
    pad_back[axis] = (0, 1)
    backward = np.pad(diff, pad_front, constant_values=np.nan)
    forward = np.pad(diff, pad_back, constant_values=np.nan)
    pick_forward = np.isnan(backward) | (np.abs(forward) < np.abs(backward))
    slope = np.where(pick_forward, forward, backward)
    return np.nan_to_num(slope, nan=0.0)


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
    normals = np.empty((*depth.shape, 3), dtype=np.float32)
    normals[:, :, 0] = -slope_x
    normals[:, :, 1] = -slope_y
    normals[:, :, 2] = ray_x[None, :] * slope_x + ray_y[:, None] * slope_y - disparity
    length = np.sqrt((normals * normals).sum(axis=-1, keepdims=True))
    normals /= np.where(length > 0, length, 1.0)
    normals[~usable | (length[:, :, 0] == 0)] = (0.0, 0.0, -1.0)
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
    colors = rgb.reshape(-1, 3)[index] if rgb is not None else np.full((index.size, 3), 128, np.uint8)
    return PixelCloud(
        points=unproject(depth, intrinsics).reshape(-1, 3)[index],
        colors=np.ascontiguousarray(colors),
        normals=depth_normals(depth, keep, intrinsics).reshape(-1, 3)[index],
        pixel_index=index.astype(np.int64),
        valid=keep,
        discontinuity=mask,
    )
