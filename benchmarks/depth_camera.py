"""Noise and holes the way a depth camera or a network's mask leaves them, for the edge benchmark.

A structured-light camera measures depth with noise that grows with distance, and loses it
where its projector cannot see what the camera sees (a shadow beside every nearer object),
in blobs at and near depth edges (mixed returns, thin parts that reflect too little) and in a
few specks anywhere; its hole filling then gives each hole the farthest depth around it
before the map is smoothed (by the benchmark's degradations). MoGe-2's mask removes the sky, where PPD predicts the far end of
its range. Either way the smoothing mixes values from across a hole into the pixels around
it, and the hole itself reaches the lifter as NaN.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage

from benchmarks.scenes import Rendering

PROJECTOR_BASELINE_M = 0.03
"""The projector sits this far to the right of the camera (a small structured-light camera):
shadows beside nearer objects are a few pixels wide at 1024 px."""

EDGE_BLOBS_PER_EDGE_PIXEL = 1.0 / 25.0
SPECKS_PER_PIXEL = 1.0 / 4000.0
BLOB_RADIUS_PX = (1.0, 3.0)  # at 1024 px wide; scaled with the image width
BLOB_OFFSET_PX = 3.0  # an edge blob's centre lies up to this far from the edge (at 1024 px)
_REFERENCE_WIDTH = 1024


def projector_shadow(depth: np.ndarray, fx: float, baseline_m: float = PROJECTOR_BASELINE_M) -> np.ndarray:
    """Pixels the projector cannot light. With disparity d = fx * baseline / depth, pixel x is
    hidden when a pixel o > 0 columns to its right is nearer by d(x + o) - d(x) >= o: both lie
    on one ray from the projector, the nearer first."""
    with np.errstate(divide="ignore"):
        disparity = np.where(np.isfinite(depth), fx * baseline_m / depth, 0.0)
    shadow = np.zeros(depth.shape, dtype=bool)
    reach = int(np.ceil(disparity.max() - disparity.min()))
    for offset in range(1, min(reach, depth.shape[1] - 1) + 1):
        shadow[:, :-offset] |= disparity[:, offset:] - disparity[:, :-offset] >= offset
    return shadow & np.isfinite(depth)


def depth_edges(depth: np.ndarray, jump: float = 0.03) -> np.ndarray:
    """Pixels on either side of a 4-neighbour pair whose depths differ by more than `jump`."""
    edge = np.zeros(depth.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        rows = np.fmax(depth[:, 1:], depth[:, :-1]) > np.fmin(depth[:, 1:], depth[:, :-1]) * (1.0 + jump)
        cols = np.fmax(depth[1:], depth[:-1]) > np.fmin(depth[1:], depth[:-1]) * (1.0 + jump)
    edge[:, 1:] |= rows
    edge[:, :-1] |= rows
    edge[1:] |= cols
    edge[:-1] |= cols
    return edge


def _blobs(shape: tuple[int, int], centres: np.ndarray, rng: np.random.Generator, scale: float) -> np.ndarray:
    """Filled discs of random radius (BLOB_RADIUS_PX, scaled) at the (N, 2) float row/col centres."""
    canvas = np.zeros(shape, np.uint8)
    radii = rng.uniform(*BLOB_RADIUS_PX, len(centres)) * scale
    shift = 4  # cv2 draws at 1/16 px with 4 fractional bits
    for (row, col), radius in zip(centres, radii):
        cv2.circle(canvas, (int(col * 16), int(row * 16)), int(radius * 16), 1, thickness=-1, shift=shift)
    return canvas > 0


def sensor_holes(rendering: Rendering, seed: int = 0) -> np.ndarray:
    """(H, W) bool: where a structured-light camera would measure no depth in this rendering:
    the projector's shadows, blobs at and near depth edges, and specks anywhere."""
    depth = rendering.depth
    h, w = depth.shape
    rng = np.random.default_rng(seed)
    scale = w / _REFERENCE_WIDTH
    edge_rows, edge_cols = np.nonzero(depth_edges(depth))
    picked = rng.choice(len(edge_rows), size=int(len(edge_rows) * EDGE_BLOBS_PER_EDGE_PIXEL), replace=False)
    near_edges = np.column_stack([edge_rows[picked], edge_cols[picked]]).astype(float)
    near_edges += rng.uniform(-BLOB_OFFSET_PX, BLOB_OFFSET_PX, near_edges.shape) * scale
    specks = rng.uniform((0, 0), (h, w), (int(h * w * SPECKS_PER_PIXEL), 2))
    holes = projector_shadow(depth, rendering.intrinsics.fx)
    holes |= _blobs((h, w), np.vstack([near_edges, specks]), rng, scale)
    return holes | ~np.isfinite(depth)


NOISE_PER_METRE = 0.0025
"""A structured-light camera's depth noise grows with distance: its standard deviation is
this share of the depth per metre of depth (0.25% at 1 m, 0.5% at 2 m)."""


def sensor_noise(depth: np.ndarray, seed: int = 0) -> np.ndarray:
    """`depth` with the camera's per-pixel Gaussian noise (NOISE_PER_METRE)."""
    rng = np.random.default_rng(seed)
    return (depth * (1.0 + NOISE_PER_METRE * depth * rng.standard_normal(depth.shape))).astype(depth.dtype)


def fill_from_farthest(depth: np.ndarray, holes: np.ndarray) -> np.ndarray:
    """`depth` with each hole given the farthest depth on its rim, as a depth camera's hole
    filling does in librealsense's "farest from around" mode: a hole beside a nearer object
    gets the background, so the smoothing that follows pulls the object's rim toward it."""
    labels, count = ndimage.label(holes)
    rim_labels = np.where(holes, 0, ndimage.grey_dilation(labels, size=(3, 3)))
    farthest = ndimage.maximum(depth, labels=rim_labels, index=np.arange(1, count + 1))
    filled = depth.copy()
    filled[holes] = np.asarray(farthest, dtype=depth.dtype)[labels[holes] - 1]
    return filled


def fill_sky(depth: np.ndarray, sky: np.ndarray) -> np.ndarray:
    """`depth` with the sky at the farthest surface's depth: PPD puts the sky at the far end
    of its range, and the fit to MoGe-2 clips it to MoGe-2's farthest depth."""
    return np.where(sky, depth[~sky].max(), depth)
