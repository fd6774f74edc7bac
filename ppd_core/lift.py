"""Depth map + intrinsics (+ photo) -> an edge-clean point cloud in the OpenCV camera frame.

A point lifted from pixel (x, y) with depth z is ((x + 0.5 - cx) / fx * z,
(y + 0.5 - cy) / fy * z, z). Where depth jumps, a predicted or resized map holds pixels
whose depth lies between the two surfaces: lifted as is, they become "flying points"
strung between foreground and background. `ppd_core.edges.discontinuity_mask` finds those pixels and
`lift` either drops them or snaps them onto the surface of the side they are closest to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

from ppd_core.camera import Intrinsics
from ppd_core.edges import check_depth, check_rgb, discontinuity_mask, filled_log_depth, square_kernel, valid_depth
from ppd_core.errors import BadInputError

LIFT_MODES = ("drop", "snap")
DEFAULT_MODE = "drop"
"""Chosen by benchmarks/edge_quality.py (docs/edge_quality.md): dropping meets both targets
(>= 95% of flying points cut, >= 97% completeness) on every degraded scene; snapping keeps a
few more points but misplaces some at object corners, where the nearest clean surface is
not the pixel's own."""

SNAP_MAX_GAP = 0.01
"""Snap only pixels within 1% (log-depth) of a side's extended surface; drop the rest."""

SNAP_MAX_DISTANCE = 1.5
"""Snap only from a clean pixel at most this far (pixels): farther extensions of a surface
often start on another face (at object corners) and misplace the point."""


@dataclass
class LiftResult:
    """A lifted point cloud and the per-pixel masks it came from.

    points:        (N, 3) float32, OpenCV camera frame (x right, y down, z forward), metres
    colors:        (N, 3) uint8 RGB (grey 128 when no photo was given)
    normals:       (N, 3) float32 unit vectors, oriented toward the camera
    pixel_index:   (N,) int64 flat index y * width + x into the depth map's grid
    valid:         (H, W) bool, pixels with a finite positive depth that kept a point
    discontinuity: (H, W) bool, the depth-discontinuity mask (the mesher cuts triangles here)
    """

    points: np.ndarray
    colors: np.ndarray
    normals: np.ndarray
    pixel_index: np.ndarray
    valid: np.ndarray
    discontinuity: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of the depth map the points were lifted from."""
        return self.valid.shape

    def __len__(self) -> int:
        return int(self.points.shape[0])


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


def _nearest_source(sources: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every pixel: flat index of the nearest `sources` pixel and the distance to it."""
    distance, labels = cv2.distanceTransformWithLabels(
        (~sources).astype(np.uint8), cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL
    )
    lookup = np.zeros(int(labels.max()) + 1, dtype=np.int64)
    flat = np.flatnonzero(sources)
    lookup[labels.ravel()[flat]] = flat
    return lookup[labels.ravel()], distance.ravel()


def snap_depth(
    depth: np.ndarray,
    mask: np.ndarray,
    valid: np.ndarray,
    max_gap: float = SNAP_MAX_GAP,
    max_distance: float = SNAP_MAX_DISTANCE,
) -> np.ndarray:
    """Depth with every `mask` pixel moved onto the near or the far side's surface.

    For each side, the nearest unmasked pixel of that side is found and its surface is
    extended to the masked pixel as a plane (disparity is affine in pixel coordinates on a
    plane, so the extension uses one-sided disparity slopes). The side whose extended depth
    is closer (in log) to the pixel's own depth wins, if it is within `max_gap`. Pixels
    with no such side within `max_distance` pixels become NaN (dropped): they sit truly
    between the surfaces, and guessing their side would make new flying points.
    """
    h, w = depth.shape
    sources = valid & ~mask
    out = np.where(valid, depth, np.nan).astype(np.float32)
    targets = np.flatnonzero(mask)
    if targets.size == 0:
        return out
    if not sources.any():
        out[mask] = np.nan
        return out
    log_depth = filled_log_depth(depth, valid)
    window = square_kernel(3)
    middle = 0.5 * (cv2.dilate(log_depth, window) + cv2.erode(log_depth, window))
    disparity = np.where(sources, 1.0 / np.where(sources, depth, 1.0), 0.0).astype(np.float64)
    slope_x = _one_sided_slopes(disparity, sources, axis=1).ravel()
    slope_y = _one_sided_slopes(disparity, sources, axis=0).ravel()
    ty, tx = np.divmod(targets, w)
    own = log_depth.ravel()[targets]
    best = np.full(targets.size, np.nan)
    best_gap = np.full(targets.size, np.inf)
    for side in (sources & (log_depth <= middle + 1e-6), sources & (log_depth >= middle - 1e-6)):
        if not side.any():
            continue
        nearest, distance = _nearest_source(side)
        q = nearest[targets]
        qy, qx = np.divmod(q, w)
        extended = disparity.ravel()[q] + slope_x[q] * (tx - qx) + slope_y[q] * (ty - qy)
        extended = np.where(extended > 0, extended, disparity.ravel()[q])
        candidate = 1.0 / extended
        gap = np.abs(np.log(candidate) - own)
        better = (distance[targets] <= max_distance) & (gap < best_gap) & (gap <= max_gap)
        best = np.where(better, candidate, best)
        best_gap = np.where(better, gap, best_gap)
    out.ravel()[targets] = best
    return out


def grid_points(depth: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
    """(H, W, 3) float32 camera-frame points of every pixel (NaN where depth is NaN)."""
    h, w = depth.shape
    u = (np.arange(w, dtype=np.float32) + 0.5 - np.float32(intrinsics.cx)) / np.float32(intrinsics.fx)
    v = (np.arange(h, dtype=np.float32) + 0.5 - np.float32(intrinsics.cy)) / np.float32(intrinsics.fy)
    grid = np.empty((h, w, 3), dtype=np.float32)
    grid[:, :, 0] = u[None, :] * depth
    grid[:, :, 1] = v[:, None] * depth
    grid[:, :, 2] = depth
    return grid


def depth_normals(depth: np.ndarray, usable: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
    """(H, W, 3) float32 unit normals of the lifted surface, oriented toward the camera.

    With disparity D = 1/z and its per-pixel slopes D_x, D_y (one-sided, the side with the
    smaller change, so edges do not bend them), the normal of P(x, y) = z * r(x, y) is
    proportional to -(fx D_x, fy D_y, D - fx r_x D_x - fy r_y D_y): exact on planes, where
    disparity is affine in pixel coordinates. Pixels without usable neighbours face the camera.
    """
    h, w = depth.shape
    disparity = np.where(usable, 1.0 / np.where(usable, depth, 1.0), 0.0).astype(np.float32)
    slope_x = _one_sided_slopes(disparity, usable, axis=1) * np.float32(intrinsics.fx)
    slope_y = _one_sided_slopes(disparity, usable, axis=0) * np.float32(intrinsics.fy)
    ray_x = ((np.arange(w, dtype=np.float32) + 0.5 - np.float32(intrinsics.cx)) / np.float32(intrinsics.fx))[None, :]
    ray_y = ((np.arange(h, dtype=np.float32) + 0.5 - np.float32(intrinsics.cy)) / np.float32(intrinsics.fy))[:, None]
    normals = np.empty((h, w, 3), dtype=np.float32)
    normals[:, :, 0] = -slope_x
    normals[:, :, 1] = -slope_y
    normals[:, :, 2] = ray_x * slope_x + ray_y * slope_y - disparity
    length = np.sqrt((normals * normals).sum(axis=-1, keepdims=True))
    normals /= np.where(length > 0, length, 1.0)
    normals[~usable | (length[:, :, 0] == 0)] = (0.0, 0.0, -1.0)
    return normals


def lift(
    depth: np.ndarray,
    intrinsics: Intrinsics,
    rgb: Optional[np.ndarray] = None,
    *,
    edge_strength: float = 0.5,
    mode: str = DEFAULT_MODE,
    stride: int = 1,
    max_points: Optional[int] = None,
) -> LiftResult:
    """Lift a metric depth map (metres) to an edge-clean point cloud.

    `mode` "drop" removes discontinuity pixels; "snap" moves those next to a clean pixel and
    within 1% of its surface onto that surface, and drops the rest. `rgb` (same grid, or the same aspect at another
    size) colours the points and guides the edge detector. Intrinsics for another resolution of the same image are
    rescaled. `stride` keeps every stride-th pixel per row and column; `max_points` then
    keeps an evenly spaced subset. `valid` is always exactly the pixels that have a point.
    """
    depth = check_depth(depth)
    if mode not in LIFT_MODES:
        raise BadInputError(f"lift mode {mode!r} is not one of {', '.join(LIFT_MODES)}")
    if int(stride) != stride or stride < 1:
        raise BadInputError(f"stride {stride} must be a positive integer")
    if max_points is not None and max_points < 1:
        raise BadInputError(f"max_points {max_points} must be at least 1")
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
    if mode == "snap":
        depth = snap_depth(depth, mask, valid)
        surface = valid_depth(depth)
    else:
        surface = valid & ~mask
    keep = surface.copy()

    if stride > 1:
        lattice = np.zeros_like(keep)
        lattice[::stride, ::stride] = True
        keep &= lattice
    index = np.flatnonzero(keep)
    if max_points is not None and index.size > max_points:
        index = index[np.linspace(0, index.size - 1, max_points).round().astype(np.int64)]
        keep = np.zeros_like(keep)
        keep.ravel()[index] = True

    rows, cols = np.divmod(index, w)
    z = depth.ravel()[index]
    points = np.empty((index.size, 3), dtype=np.float32)
    points[:, 0] = (cols + 0.5 - intrinsics.cx) / intrinsics.fx * z
    points[:, 1] = (rows + 0.5 - intrinsics.cy) / intrinsics.fy * z
    points[:, 2] = z
    normals = depth_normals(depth, surface, intrinsics)
    colors = rgb.reshape(-1, 3)[index] if rgb is not None else np.full((index.size, 3), 128, np.uint8)
    return LiftResult(
        points=points,
        colors=np.ascontiguousarray(colors),
        normals=normals.reshape(-1, 3)[index],
        pixel_index=index.astype(np.int64),
        valid=keep,
        discontinuity=mask,
    )


def to_open3d(result: LiftResult):
    """An `open3d.geometry.PointCloud` with the result's points, colours (0..1) and normals."""
    import open3d as o3d

    cloud = o3d.geometry.PointCloud()
    cloud.points = o3d.utility.Vector3dVector(result.points.astype(np.float64))
    cloud.colors = o3d.utility.Vector3dVector(result.colors.astype(np.float64) / 255.0)
    cloud.normals = o3d.utility.Vector3dVector(result.normals.astype(np.float64))
    return cloud
