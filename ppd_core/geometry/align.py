"""Metric depth from PPD's relative depth by a robust fit to a metric reference.

PPD's p is an affine-invariant normalised log(1 + depth). Against any metric reference
(MoGe-2's depth, a phone's LiDAR, a laser scan) we fit log(1 + reference) = a * p + b, the
model of the official `recover_metric_depth_ransac`, and keep its fallbacks and its clip.

The fit differs from the official scikit-learn RANSAC in how it finds and uses inliers.
The official threshold is the MAD of log(1 + reference): a spread of scene depths, not of
noise. With a far background it admits gross outliers and misses the scale by percents.
Here, seeded candidate lines through random pixel pairs are scored all at once by their
median residual on a subsample (least median of squares). The best one seeds a trimmed
least-squares refinement whose threshold comes from the inliers' own residual scale. On
clean data plus noise this is as accurate as least squares; on data with gross outliers it
ignores them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, Optional

import cv2
import numpy as np

from ppd_core.errors import BadInputError

FitMethod = Literal["fit", "ratio fallback", "identity fallback"]

CANDIDATE_LINES = 1000
"""Candidate lines through random pixel pairs (the official RANSAC's trial cap)."""

SCORING_PIXELS = 1024
"""Pixels on which every candidate is scored: their median ranks candidates to ~4 %, and
the refinement only needs a start inside the inliers' band."""

SCALE_PIXELS = 65536
"""Random pixels on which the inliers and their residual scale settle (scale known to ~0.5 %)
before the last least-squares rounds on every pixel."""

INLIER_SIGMAS = 3.5
"""Inlier threshold in robust standard deviations of the inliers' residuals. On Gaussian
noise, least squares trimmed at 3.5 sigma keeps 99.3 % of least squares' efficiency (97 % at 3)."""

MAX_REFINEMENTS = 20
"""Cap on trimmed least-squares rounds; the inlier set usually settles within five."""

RESIDUAL_FLOOR = 1e-6
"""Smallest residual scale (log units): about float32's resolution of log(1 + depth), so
exact data does not shrink the threshold to nothing and drop its own inliers."""

MIN_DEPTH_M = 1e-3
"""Lower clip of the metric depth (metres), as in the official pipeline."""

ASPECT_TOLERANCE = 0.01
"""Largest relative difference of width / height between p and a reference."""

MAD_TO_SIGMA = 1.4826
"""Median absolute deviation to standard deviation, for Gaussian noise."""

AGREEMENT_TOLERANCE = 0.10
"""A reference pixel agrees with a fit when the fitted depth is within 10 % of it: the fit's
quality figure, `LogDepthFit.agreement`."""


@dataclass(frozen=True)
class LogDepthFit:
    """log(1 + metric depth) = a * p + b, and how it was obtained.

    `pixels`: valid (p, reference) pairs the fit saw. `inlier_share`: the share of them it
    explains (0 for a fallback). `method`: "fit"; "ratio fallback" when the fitted slope is
    not positive (b = 0, a = mean log(1 + reference) / mean p, as official); "identity
    fallback" when fewer than two pairs are valid (a, b = 1, 0, as official). `agreement`:
    the share of those pixels whose fitted depth is within `AGREEMENT_TOLERANCE` of the
    reference, the figure a user can judge the scale by (inliers of a collapsed fit can be
    all pixels while its depths agree with none).
    """

    a: float
    b: float
    inlier_share: float
    pixels: int
    method: FitMethod
    agreement: float = 0.0


def _require_2d(name: str, values: np.ndarray) -> None:
    if values.ndim != 2 or values.size == 0:
        raise BadInputError(f"{name} must be a non-empty 2-D map, got shape {values.shape}")


def valid_reference(reference: np.ndarray) -> np.ndarray:
    """Where a metric reference holds a depth: finite and positive (NaN, 0, inf, < 0 = unknown)."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(reference) & (reference > 0)


def _least_squares(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Ordinary least-squares line y = a x + b; slope 0 when x does not vary."""
    mean_x, mean_y = x.mean(), y.mean()
    dx = x - mean_x
    spread = dx @ dx
    a = float(dx @ (y - mean_y) / spread) if spread > 0 else 0.0
    return a, float(mean_y - a * mean_x)


def _least_median_line(x: np.ndarray, y: np.ndarray, rng: np.random.Generator,
                       candidates: int) -> Optional[tuple[float, float, float]]:
    """Among lines through random pairs of (x, y), the one with the smallest median absolute
    residual on random probe pixels: its slope, intercept and that median. All candidates are
    scored in one (candidates x probe) matrix. None if x is equal in every pair (constant p)."""
    draws = rng.integers(0, len(x), size=2 * candidates + SCORING_PIXELS)
    first, second, probe = draws[:candidates], draws[candidates : 2 * candidates], draws[2 * candidates :]
    run = x[second] - x[first]
    usable = run != 0
    if not usable.any():
        return None
    first, second, run = first[usable], second[usable], run[usable]
    slopes = (y[second] - y[first]) / run
    intercepts = y[first] - slopes * x[first]
    residuals = np.multiply.outer(slopes.astype(np.float32), x[probe].astype(np.float32))
    residuals += intercepts.astype(np.float32)[:, None]
    np.subtract(y[probe].astype(np.float32), residuals, out=residuals)
    np.abs(residuals, out=residuals)
    middle = residuals.shape[1] // 2
    medians = np.partition(residuals, middle, axis=1)[:, middle]
    medians[np.isnan(medians)] = np.inf  # a slope beyond float32 (p steps of ~1e-38) loses
    best = int(np.argmin(medians))
    return float(slopes[best]), float(intercepts[best]), float(medians[best])


def _absolute_residuals(x: np.ndarray, y: np.ndarray, a: float, b: float) -> np.ndarray:
    """|y - (a x + b)|, in one buffer."""
    residuals = a * x
    residuals += b
    np.subtract(y, residuals, out=residuals)
    return np.abs(residuals, out=residuals)


def _trimmed_least_squares(x: np.ndarray, y: np.ndarray, a: float, b: float, sigma: float, *,
                           rescale: bool) -> tuple[float, float, float, np.ndarray]:
    """Least squares on the pixels within `INLIER_SIGMAS` * sigma of the line, repeated until
    the inlier set settles; with `rescale`, sigma is re-estimated each round from the inliers'
    residuals (1.4826 x their median). Returns the line, sigma and the inliers."""
    inliers = _absolute_residuals(x, y, a, b) <= INLIER_SIGMAS * sigma
    for _ in range(MAX_REFINEMENTS):
        a, b = _least_squares(x[inliers], y[inliers])
        residuals = _absolute_residuals(x, y, a, b)
        if rescale:
            sigma = max(MAD_TO_SIGMA * float(np.median(residuals[inliers])), RESIDUAL_FLOOR)
        settled = residuals <= INLIER_SIGMAS * sigma
        if np.array_equal(settled, inliers) or np.count_nonzero(settled) < 2:
            break
        inliers = settled
    return a, b, sigma, inliers


def _ratio_fallback(p: np.ndarray, reference: np.ndarray, pixels: int) -> LogDepthFit:
    """The official fallback for a non-positive slope: scale p by mean(log(1 + ref)) / mean(p),
    computed in float32 exactly as the official code does (identity if that is not finite)."""
    log_reference = np.log(reference.astype(np.float32) + np.float32(1.0))
    ratio = float(np.mean(log_reference) / np.mean(p.astype(np.float32)))
    if not np.isfinite(ratio):
        return LogDepthFit(1.0, 0.0, 0.0, pixels, "identity fallback")
    return LogDepthFit(ratio, 0.0, 0.0, pixels, "ratio fallback")


def fit_log_depth(p: np.ndarray, reference: np.ndarray, mask: Optional[np.ndarray] = None, *,
                  seed: int = 0, candidates: int = CANDIDATE_LINES) -> LogDepthFit:
    """Robust fit of log(1 + reference) = a * p + b (reference in metres) over the pixels
    where p is finite and the reference holds a depth: by default where it is finite and
    positive; with `mask`, where the mask says so (any reference above -1, as officially).

    p and reference share one grid. Deterministic for a given `seed`.
    Raises BadInputError if the reference holds no depth at all or the shapes disagree.
    """
    p, reference = np.asarray(p), np.asarray(reference)
    _require_2d("relative depth p", p)
    _require_2d("reference depth", reference)
    if reference.shape != p.shape:
        raise BadInputError(f"reference depth is {reference.shape[1]}x{reference.shape[0]} but p is "
                            f"{p.shape[1]}x{p.shape[0]}; fit_log_depth needs one grid")
    if mask is None:
        has_depth = valid_reference(reference)
    else:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != p.shape:
            raise BadInputError(f"mask shape {mask.shape} differs from p's {p.shape}")
        with np.errstate(invalid="ignore"):
            has_depth = mask & np.isfinite(reference) & (reference > -1)
    if not has_depth.any():
        raise BadInputError("reference depth has no valid pixel (all NaN, 0, negative or infinite, or masked)")
    usable = has_depth & np.isfinite(p)
    p_valid, reference_valid = p[usable], reference[usable]
    fit = _robust_fit(p_valid, reference_valid, seed, candidates)
    return replace(fit, agreement=_agreement(p_valid, reference_valid, fit))


def _agreement(p: np.ndarray, reference: np.ndarray, fit: LogDepthFit) -> float:
    """The share of the reference's pixels whose fitted depth lies within `AGREEMENT_TOLERANCE` of it."""
    if p.size == 0:
        return 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        fitted = np.expm1(fit.a * p.astype(np.float64) + fit.b)
        close = np.abs(fitted - reference) <= AGREEMENT_TOLERANCE * np.abs(reference)
    return float(np.count_nonzero(close) / p.size)


def _robust_fit(p_valid: np.ndarray, reference_valid: np.ndarray, seed: int, candidates: int) -> LogDepthFit:
    """`fit_log_depth` on the usable (p, reference) pairs, before its agreement is measured."""
    pixels = int(p_valid.size)
    if pixels < 2:
        return LogDepthFit(1.0, 0.0, 0.0, pixels, "identity fallback")
    x = p_valid.astype(np.float64)
    y = np.log1p(reference_valid.astype(np.float64))
    rng = np.random.default_rng(seed)
    line = _least_median_line(x, y, rng, candidates)
    if line is None:  # constant p: no slope (the official least squares gives 0)
        return _ratio_fallback(p_valid, reference_valid, pixels)
    a, b, median_residual = line
    # Settle the inliers and their residual scale on the sample, then finish on every pixel
    # with that scale: the last rounds see all the data at the cost of one or two passes.
    sigma = max(MAD_TO_SIGMA * median_residual, RESIDUAL_FLOOR)
    sample = rng.integers(0, pixels, size=SCALE_PIXELS) if pixels > SCALE_PIXELS else np.arange(pixels)
    x_sample, y_sample = x[sample], y[sample]
    a, b, sigma, _ = _trimmed_least_squares(x_sample, y_sample, a, b, sigma, rescale=True)
    a, b, _, inliers = _trimmed_least_squares(x, y, a, b, sigma, rescale=False)
    if not a > 0:
        return _ratio_fallback(p_valid, reference_valid, pixels)
    return LogDepthFit(a, b, np.count_nonzero(inliers) / pixels, pixels, "fit")


def metric_from_fit(p: np.ndarray, fit: LogDepthFit, max_depth: Optional[float] = None) -> np.ndarray:
    """Metric depth (float32 metres) exp(a * p + b) - 1, clipped to [1 mm, max_depth] in
    float32 as the official pipeline does; `max_depth` is usually the reference's largest depth."""
    p = np.asarray(p, dtype=np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        depth = np.exp(np.float32(fit.a) * p + np.float32(fit.b)) - np.float32(1.0)
    upper = np.inf if max_depth is None else np.float32(max_depth)
    return np.clip(depth, np.float32(MIN_DEPTH_M), upper).astype(np.float32)


def _masked_area_mean(values: np.ndarray, valid: np.ndarray,
                      shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Mean of the valid `values` over each target pixel's footprint (area resampling) and
    where the target has any valid source."""
    weight = valid.astype(np.float32)
    filled = np.where(valid, values, 0).astype(np.float32)
    size = (shape[1], shape[0])
    total = cv2.resize(filled, size, interpolation=cv2.INTER_AREA)
    coverage = cv2.resize(weight, size, interpolation=cv2.INTER_AREA)
    covered = coverage > 0
    return np.where(covered, total / np.where(covered, coverage, 1), np.nan), covered


def _on_common_grid(p: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """p and the reference on the coarser of their two grids.

    The finer map is area-averaged onto the coarser one (the reference in log(1 + depth),
    the domain of the fit, over its valid pixels only). Each pair is then one real
    measurement: no reference value is invented by interpolation or blended across a depth
    edge, as upsampling the reference would do (copying each measurement many times over).
    """
    if reference.shape == p.shape:
        return p, reference
    if reference.size <= p.size:
        p_coarse, _ = _masked_area_mean(p, np.isfinite(p), reference.shape)
        return p_coarse, reference
    valid = valid_reference(reference)
    mean_log, covered = _masked_area_mean(np.log1p(np.where(valid, reference, 0)), valid, p.shape)
    return p, np.where(covered, np.expm1(mean_log), np.nan)


def align_to_reference(p: np.ndarray, reference: np.ndarray, *,
                       seed: int = 0) -> tuple[np.ndarray, LogDepthFit]:
    """Metric depth on p's grid (float32 metres) from a metric reference (metres) of any
    resolution with the same aspect ratio (within 1 %), and the fit used.

    Unknown reference pixels may be NaN, 0, infinite or negative. The fit runs on the
    coarser grid (`_on_common_grid`); the result is clipped to the reference's largest depth.
    """
    p = np.asarray(p, dtype=np.float32)
    reference = np.asarray(reference, dtype=np.float32)
    _require_2d("relative depth p", p)
    _require_2d("reference depth", reference)
    (height, width), (ref_height, ref_width) = p.shape, reference.shape
    aspect, ref_aspect = width / height, ref_width / ref_height
    if abs(ref_aspect / aspect - 1) > ASPECT_TOLERANCE:
        raise BadInputError(f"reference depth is {ref_width}x{ref_height} (aspect {ref_aspect:.3f}) but the "
                            f"depth map is {width}x{height} (aspect {aspect:.3f}): they must show the same view")
    has_depth = valid_reference(reference)
    if not has_depth.any():
        raise BadInputError("reference depth has no valid pixel (all NaN, 0, negative or infinite)")
    p_grid, reference_grid = _on_common_grid(p, reference)
    fit = fit_log_depth(p_grid, reference_grid, seed=seed)
    return metric_from_fit(p, fit, max_depth=float(reference[has_depth].max())), fit
