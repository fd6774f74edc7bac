"""Depth discontinuities: where a depth map jumps between surfaces, and the pixels smeared across.

Canny edges of the log-depth and of the photo say where to look; relative depth-jump tests
in disparity (affine across any plane, so tilted planes and creases pass) decide; the
thresholds grow with the map's own grain. `ppd_core.geometry.lift` drops what is found,
and the mesher cuts triangles there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np
from scipy import ndimage

from mesh.grid import relative_noise
from ppd_core.errors import BadInputError
from ppd_core.options import check_option

NOISE_SIGMAS = 3.0
"""Jumps smaller than this many standard deviations of the depth's own pixel noise are never
discontinuities: a predicted map is slightly grainy, and a fixed 1-3% threshold would
otherwise cut a noisy but continuous surface to pieces."""

_SOBEL_SCALE = 1000.0  # log-depth Sobel responses are scaled by this into int16 for cv2.Canny


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
        check_option("edge_strength", edge_strength)
        s = float(edge_strength)
        return cls(
            jump=0.01 + 0.04 * (1.0 - s),
            off_surface=0.01 - 0.01 * s + 0.0005,
            radius=int(round(2 + 4 * s)),
            depth_canny=(0.01 - 0.01 * s + 0.001, 0.02 - 0.02 * s + 0.002),
            photo_canny=(100.0 - 80.0 * s, 200.0 - 120.0 * s),
        )


def valid_depth(depth: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.isfinite(depth) & (depth > 0)


def filled_log_depth(depth: np.ndarray, valid: np.ndarray) -> np.ndarray:
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


def square_kernel(radius: int) -> np.ndarray:
    return np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)


def check_depth(depth: np.ndarray) -> np.ndarray:
    depth = np.asarray(depth)
    if depth.ndim != 2 or depth.size == 0 or not np.issubdtype(depth.dtype, np.number):
        raise BadInputError(f"depth must be a non-empty 2-D numeric map, got shape {depth.shape}")
    return depth.astype(np.float32, copy=False)


def check_rgb(rgb: Optional[np.ndarray], shape: tuple[int, int]) -> Optional[np.ndarray]:
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
    depth = check_depth(depth)
    rgb = check_rgb(rgb, depth.shape)
    settings = EdgeThresholds.from_strength(edge_strength)
    valid = valid_depth(depth)
    if not valid.any():
        return np.zeros(depth.shape, dtype=bool)
    log_depth = filled_log_depth(depth, valid)
    edges = _depth_canny(log_depth, *settings.depth_canny)
    if rgb is not None:
        edges |= _photo_canny(rgb, *settings.photo_canny)
    near_edge = cv2.dilate(edges.astype(np.uint8), square_kernel(settings.radius)) > 0
    disparity = np.exp(-log_depth)
    noise = relative_noise(disparity, valid)
    jump = max(settings.jump, NOISE_SIGMAS * np.sqrt(10.0) * noise)  # the widest test kernel's noise gain
    miss = max(settings.off_surface, NOISE_SIGMAS * np.sqrt(6.0) * noise)
    step = _sharp_steps(disparity, jump)
    between = _between_sides(disparity, range(1, settings.radius + 1), jump, miss)
    return near_edge & (step | between) & valid
