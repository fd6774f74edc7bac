"""Metric depth from PPD's normalised log-depth or from depth files, and edge-keeping upsampling.

PPD predicts p, an affine-invariant normalised log(1 + depth): p = 0 near the 2nd
percentile of the scene, p = 1 near the 98th. Metric depth needs two numbers: either the
near/far distances (metres) of that range, or a scale and shift of log(1 + depth).
"""

from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

from ppd_core.errors import BadInputError
from ppd_core.options import DEPTH_KINDS, DEPTH_M

MIN_DEPTH_M, MAX_DEPTH_M = DEPTH_M
TRAINED_P = (-0.5, 1.0)
"""The range of PPD's p in training: the ground truth was clamped to it. A prediction outside
it (random weights, an odd photo) is nothing the network learned to say, and extrapolated
through a depth range it would put surfaces kilometres away."""


def _check_range(near: float, far: float) -> None:
    if not (np.isfinite(near) and np.isfinite(far)) or near < 0 or far <= near:
        raise BadInputError(f"depth range near={near}, far={far} is invalid: need 0 <= near < far (metres)")


def metric_from_scale_shift(p: np.ndarray, scale: float, shift: float) -> np.ndarray:
    """Metric depth (float32) from normalised log-depth: log(1 + depth) = scale * p + shift.

    NaN in gives NaN out, without warnings.
    """
    if not (np.isfinite(scale) and np.isfinite(shift)):
        raise BadInputError(f"depth scale {scale} and shift {shift} must be finite")
    p = np.asarray(p, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        return np.expm1(scale * p + shift).astype(np.float32)


def clip_normalized(p: np.ndarray) -> tuple[np.ndarray, int]:
    """PPD's p clipped to `TRAINED_P` (NaN kept), and how many pixels lay outside it."""
    p = np.asarray(p, dtype=np.float32)
    low, high = TRAINED_P
    with np.errstate(invalid="ignore"):
        outside = int(np.count_nonzero((p < low) | (p > high)))
    return np.clip(p, low, high), outside


def metric_from_normalized(p: np.ndarray, near: float, far: float) -> np.ndarray:
    """Metric depth (float32, metres) from PPD's normalised p: log(1 + depth) runs linearly
    from log(1 + near) at p = 0 to log(1 + far) at p = 1 (values outside [0, 1] extrapolate)."""
    _check_range(near, far)
    low, high = np.log1p(near), np.log1p(far)
    return metric_from_scale_shift(p, high - low, low)


def depth_to_metric(
    values: np.ndarray,
    kind: str,
    near: Optional[float] = None,
    far: Optional[float] = None,
) -> np.ndarray:
    """Metric depth (float32, metres) from a map read by `ppd_core.files.depth_file.read_depth_file`.

    metric: returned as is. normalized: `metric_from_normalized(values, near, far)`.
    disparity: without near/far it is taken as true inverse depth (1/m), depth = 1 / d.
    With near/far it is treated as affine-invariant (MiDaS, Depth Anything): its 2nd..98th
    percentiles are mapped linearly onto inverse depth 1/far..1/near, then inverted.
    Non-positive or non-finite disparity becomes NaN (no depth), and so does any depth
    outside `MIN_DEPTH_M`..`MAX_DEPTH_M`.
    """
    values = np.asarray(values, dtype=np.float32)
    if kind == "metric":
        return plausible_depth(values)
    if kind == "normalized":
        if near is None or far is None:
            raise BadInputError("normalised depth needs near and far (metres)")
        return plausible_depth(metric_from_normalized(values, near, far))
    if kind != "disparity":
        raise BadInputError(f"depth kind {kind!r} is not one of {', '.join(DEPTH_KINDS)}")
    disparity = values.astype(np.float64)
    if near is not None and far is not None:
        _check_range(near, far)
        finite = disparity[np.isfinite(disparity)]
        if finite.size == 0:
            raise BadInputError("disparity map has no finite values")
        low, high = np.percentile(finite, [2.0, 98.0])
        spread = high - low if high > low else 1.0
        unit = (disparity - low) / spread
        disparity = 1.0 / far + unit * (1.0 / max(near, 1e-6) - 1.0 / far)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        depth = np.where(disparity > 0, 1.0 / disparity, np.nan)
        return plausible_depth(depth.astype(np.float32))


def plausible_depth(depth: np.ndarray) -> np.ndarray:
    """A float32 copy of metric `depth` with NaN wherever it is not in `MIN_DEPTH_M`..`MAX_DEPTH_M`."""
    depth = np.array(depth, dtype=np.float32)
    with np.errstate(invalid="ignore"):
        depth[~((depth >= MIN_DEPTH_M) & (depth <= MAX_DEPTH_M))] = np.nan
    return depth


def upsample_depth(
    depth: np.ndarray,
    width: int,
    height: int,
    guide_rgb: Optional[np.ndarray] = None,
    max_jump: float = 0.02,
    color_sigma: float = 12.0,
) -> np.ndarray:
    """Resize a depth map to `width` x `height` without blending across discontinuities.

    Each output pixel looks at its four bilinear source pixels. Where their depths agree
    (max/min - 1 < `max_jump`) it takes the bilinear blend; across a discontinuity it copies
    one source pixel: the one whose photo colour (from `guide_rgb`, the full-size photo)
    best matches the output pixel, weighted by bilinear distance (joint bilateral choice),
    or the nearest source without a guide. Invalid (NaN, <= 0) sources are never used.
    """
    depth = np.asarray(depth, dtype=np.float32)
    if depth.ndim != 2 or depth.size == 0:
        raise BadInputError(f"depth must be a non-empty 2-D map, got shape {depth.shape}")
    if width <= 0 or height <= 0:
        raise BadInputError(f"upsampling target {width}x{height} is not positive")
    h, w = depth.shape
    xs = np.clip((np.arange(width) + 0.5) * (w / width) - 0.5, 0, w - 1)
    ys = np.clip((np.arange(height) + 0.5) * (h / height) - 0.5, 0, h - 1)
    x0 = np.floor(xs).astype(np.int64)
    y0 = np.floor(ys).astype(np.int64)
    x1 = np.minimum(x0 + 1, w - 1)
    y1 = np.minimum(y0 + 1, h - 1)
    fx = (xs - x0)[None, :]
    fy = (ys - y0)[:, None]
    rows0, rows1, cols0, cols1 = y0[:, None], y1[:, None], x0[None, :], x1[None, :]
    corners = [(rows0, cols0), (rows0, cols1), (rows1, cols0), (rows1, cols1)]
    weights = np.stack([(1 - fy) * (1 - fx), (1 - fy) * fx, fy * (1 - fx), fy * fx]).astype(np.float32)
    values = np.stack([depth[r, c] for r, c in corners])
    good = np.isfinite(values) & (values > 0)
    weights = np.where(good, weights, 0.0).astype(np.float32)
    safe = np.where(good, values, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        hi = np.where(good, safe, -np.inf).max(axis=0)
        lo = np.where(good, safe, np.inf).min(axis=0)
        smooth = good.all(axis=0) & (hi / lo - 1.0 < max_jump)
        blended = (weights * safe).sum(axis=0) / weights.sum(axis=0)
    score = weights.copy()
    if guide_rgb is not None:
        guide = np.asarray(guide_rgb)
        if guide.shape[:2] != (height, width):
            raise BadInputError(f"guide photo is {guide.shape[1]}x{guide.shape[0]}, expected {width}x{height}")
        guide = guide.astype(np.float32)
        small = cv2.resize(guide, (w, h), interpolation=cv2.INTER_AREA)
        for k, (r, c) in enumerate(corners):
            distance2 = ((small[r, c] - guide) ** 2).sum(axis=-1)
            score[k] *= np.exp(-distance2 / (2.0 * color_sigma**2))
        score = np.where(good, score + 1e-12 * weights, -1.0)
    else:
        score = np.where(good, score, -1.0)
    pick = np.take_along_axis(values, score.argmax(axis=0)[None], axis=0)[0]
    any_good = good.any(axis=0)
    out = np.where(smooth, blended, np.where(any_good, pick, np.nan))
    return out.astype(np.float32)
