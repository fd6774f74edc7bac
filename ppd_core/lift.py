"""Depth map + intrinsics (+ photo) -> an edge-clean point cloud in the OpenCV camera frame.

A point lifted from pixel (x, y) with depth z is ((x + 0.5 - cx) / fx * z,
(y + 0.5 - cy) / fy * z, z). Where depth jumps, a predicted or resized map holds pixels
whose depth lies between the two surfaces: lifted as is, they become "flying points"
strung between foreground and background. `discontinuity_mask` finds those pixels and
`lift` either drops them or snaps them onto the surface of the side they are closest to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np
from scipy import ndimage

from ppd_core.camera import Intrinsics
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
NOISE_SIGMAS = 3.0
"""Jumps smaller than this many standard deviations of the depth's own pixel noise are never
discontinuities: a predicted map is slightly grainy, and a fixed 1-3% threshold would
otherwise cut a noisy but continuous surface to pieces."""

_SOBEL_SCALE = 1000.0  # log-depth Sobel responses are scaled by this into int16 for cv2.Canny


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


@dataclass(frozen=True)
class EdgeThresholds:
    """The detector's settings, all derived from the one user-facing `edge_strength` in [0, 1]."""

    jump: float  # relative depth jump between two sides (or two 4-neighbours) that is a discontinuity
    off_surface: float  # relative miss from both sides' surfaces that makes a pixel "in between"
    radius: int  # widest transition (pixels) searched for; also the band kept around Canny edges
    depth_canny: tuple[float, float]  # Canny hysteresis on log-depth slope per pixel (low, high)
    photo_canny: tuple[float, float]  # Canny hysteresis on 8-bit grey photo gradients

    @classmethod
    def from_strength(cls, edge_strength: float) -> EdgeThresholds:
        """Stronger = more pixels flagged: smaller jumps, wider band, lower Canny thresholds."""
        if not 0.0 <= edge_strength <= 1.0:
            raise BadInputError(f"edge strength {edge_strength} is outside [0, 1]")
        s = float(edge_strength)
        return cls(
            jump=0.01 + 0.04 * (1.0 - s),
            off_surface=0.01 - 0.01 * s + 0.0005,
            radius=int(round(2 + 4 * s)),
            depth_canny=(0.01 - 0.01 * s + 0.001, 0.02 - 0.02 * s + 0.002),
            photo_canny=(100.0 - 80.0 * s, 200.0 - 120.0 * s),
        )


def _valid_depth(depth: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.isfinite(depth) & (depth > 0)


def _filled_log_depth(depth: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """log(depth) with each invalid pixel given its nearest valid pixel's value."""
    log_depth = np.zeros(depth.shape, dtype=np.float32)
    log_depth[valid] = np.log(depth[valid])
    if valid.all():
        return log_depth
    _, (rows, cols) = ndimage.distance_transform_edt(~valid, return_indices=True)
    return log_depth[rows, cols]


def _depth_canny(log_depth: np.ndarray, low: float, high: float) -> np.ndarray:
    """Canny edges of the log-depth map (thresholds in log-depth change per pixel)."""
    # The 3x3 Sobel of a unit ramp is 8, so per-pixel slopes are scaled by 8 * _SOBEL_SCALE.
    dx = cv2.Sobel(log_depth, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REPLICATE)
    dy = cv2.Sobel(log_depth, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REPLICATE)
    dx, dy = (np.clip(g * _SOBEL_SCALE, -32767, 32767).astype(np.int16) for g in (dx, dy))
    scale = 8.0 * _SOBEL_SCALE
    return cv2.Canny(dx, dy, low * scale, high * scale, L2gradient=True) > 0


def _photo_canny(rgb: np.ndarray, low: float, high: float) -> np.ndarray:
    grey = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    return cv2.Canny(grey, low, high, L2gradient=True) > 0


def _square(radius: int) -> np.ndarray:
    return np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)


def _check_depth(depth: np.ndarray) -> np.ndarray:
    depth = np.asarray(depth)
    if depth.ndim != 2 or depth.size == 0 or not np.issubdtype(depth.dtype, np.number):
        raise BadInputError(f"depth must be a non-empty 2-D numeric map, got shape {depth.shape}")
    return depth.astype(np.float32, copy=False)


def _check_rgb(rgb: Optional[np.ndarray], shape: tuple[int, int]) -> Optional[np.ndarray]:
    """The photo on the depth grid: same size, or resized when only the resolution differs."""
    if rgb is None:
        return None
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise BadInputError(f"photo must be (H, W, 3) uint8 RGB, got {rgb.dtype} {rgb.shape}")
    h, w = shape
    if rgb.shape[:2] == (h, w):
        return rgb
    if abs(rgb.shape[1] / rgb.shape[0] - w / h) > 0.01 * (w / h):
        raise BadInputError(f"photo {rgb.shape[1]}x{rgb.shape[0]} and depth {w}x{h} differ in aspect ratio")
    return cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)


def _along(image: np.ndarray, taps: dict[int, float], axis: int) -> np.ndarray:
    """Linear filter along rows (axis 1) or columns (axis 0): sum of taps[o] * image[p + o]."""
    reach = max(abs(o) for o in taps)
    kernel = np.zeros(2 * reach + 1, np.float32)
    for offset, weight in taps.items():
        kernel[reach + offset] = weight
    kernel = kernel[None, :] if axis == 1 else kernel[:, None]
    return cv2.filter2D(image, cv2.CV_32F, kernel, borderType=cv2.BORDER_REPLICATE)


def _sharp_steps(disparity: np.ndarray, jump: float) -> np.ndarray:
    """Both pixels of each row/column neighbour pair (p, p+1) across a sharp step: the
    surface through p-1, p misses p+1, and the surface through p+2, p+1 misses p, by more
    than `jump` (relative). Steep but planar surfaces continue linearly and pass."""
    found = np.zeros(disparity.shape, dtype=bool)
    for axis in (0, 1):
        bend = np.abs(_along(disparity, {-1: 1.0, 0: -2.0, 1: 1.0}, axis))  # misfit of the line
        step = np.abs(_along(disparity, {0: -1.0, 1: 1.0}, axis))  # |D(p+1) - D(p)|
        d, bend, step, hit = (np.moveaxis(a, axis, 0) for a in (disparity, bend, step, found))
        first, second = d[:-1], d[1:]
        pair = (
            (step[:-1] > jump * np.minimum(first, second))
            & (bend[:-1] > jump * second)
            & (bend[1:] > jump * first)
        )
        hit[:-1] |= pair
        hit[1:] |= pair
    return found


def _between_sides(disparity: np.ndarray, scales: range, jump: float, miss: float) -> np.ndarray:
    """Pixels inside a smeared step: along a row or column, at some scale k, the two sides'
    surfaces (linear disparity extrapolations from p -/+ k and p -/+ 2k) disagree by more
    than `jump` at the pixel, and the pixel misses both by more than `miss` (relative).
    Disparity is affine across a plane, so planes of any tilt are never flagged, and at a
    crease both extrapolations still meet."""
    found = np.zeros(disparity.shape, dtype=bool)
    tol = miss * disparity
    gap = jump * disparity
    for axis in (0, 1):
        for k in scales:
            if disparity.shape[axis] <= 4 * k:
                break
            misses_before = np.abs(_along(disparity, {0: 1.0, -k: -2.0, -2 * k: 1.0}, axis)) > tol
            misses_after = np.abs(_along(disparity, {0: 1.0, k: -2.0, 2 * k: 1.0}, axis)) > tol
            sides_differ = np.abs(_along(disparity, {-2 * k: -1.0, -k: 2.0, k: -2.0, 2 * k: 1.0}, axis)) > gap
            found |= misses_before & misses_after & sides_differ
    return found


def relative_noise(disparity: np.ndarray, valid: np.ndarray) -> float:
    """Robust estimate of the per-pixel relative noise of a disparity map.

    The row-wise second difference vanishes on planes (disparity is affine there), so its
    median absolute value, relative to the disparity, measures the grain; edges are too rare
    to move the median. Scaled to the standard deviation of i.i.d. Gaussian noise.
    """
    if disparity.shape[1] < 3:
        return 0.0
    bend = np.abs(disparity[:, :-2] - 2.0 * disparity[:, 1:-1] + disparity[:, 2:]) / disparity[:, 1:-1]
    usable = valid[:, :-2] & valid[:, 1:-1] & valid[:, 2:]
    if not usable.any():
        return 0.0
    return float(np.median(bend[usable])) / (0.6745 * np.sqrt(6.0))


def discontinuity_mask(depth: np.ndarray, rgb: Optional[np.ndarray] = None, edge_strength: float = 0.5) -> np.ndarray:
    """(H, W) bool: pixels at or inside a depth discontinuity's transition.

    Canny edges of log-depth and of the photo locate candidate edges; within `radius`
    pixels of them two relative depth-jump tests flag pixels: a pixel whose depth differs
    from a 4-neighbour's by more than the jump threshold (both sides of a sharp step, so
    the mesher cuts it), and a pixel lying between two surfaces that disagree by more than
    the jump (the smeared, "flying" pixels of a blurred or resized map). Tilted planes and
    creases pass. Both thresholds grow with the map's own noise (`relative_noise`), so grain
    is never mistaken for an edge. Invalid pixels are never flagged.
    """
    depth = _check_depth(depth)
    rgb = _check_rgb(rgb, depth.shape)
    settings = EdgeThresholds.from_strength(edge_strength)
    valid = _valid_depth(depth)
    if not valid.any():
        return np.zeros(depth.shape, dtype=bool)
    log_depth = _filled_log_depth(depth, valid)
    edges = _depth_canny(log_depth, *settings.depth_canny)
    if rgb is not None:
        edges |= _photo_canny(rgb, *settings.photo_canny)
    near_edge = cv2.dilate(edges.astype(np.uint8), _square(settings.radius)) > 0
    disparity = np.exp(-log_depth)
    noise = relative_noise(disparity, valid)
    jump = max(settings.jump, NOISE_SIGMAS * np.sqrt(10.0) * noise)  # the widest test kernel's noise gain
    miss = max(settings.off_surface, NOISE_SIGMAS * np.sqrt(6.0) * noise)
    step = _sharp_steps(disparity, jump)
    between = _between_sides(disparity, range(1, settings.radius + 1), jump, miss)
    return near_edge & (step | between) & valid


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
    log_depth = _filled_log_depth(depth, valid)
    window = _square(3)
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
    depth = _check_depth(depth)
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
    rgb = _check_rgb(rgb, depth.shape)
    valid = _valid_depth(depth)
    if not valid.any():
        raise BadInputError("depth map has no valid pixels (all NaN, infinite, zero or negative)")

    mask = discontinuity_mask(depth, rgb, edge_strength)
    if mode == "snap":
        depth = snap_depth(depth, mask, valid)
        surface = _valid_depth(depth)
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
