"""Alignment benchmark: PPD's relative depth against a noisy low-resolution metric reference.

Scenes come from `benchmarks.scenes` (exact depth), plus a far-background scene built from
its primitives. Each scene's true depth becomes p by a log-affine map (the 2nd..98th
percentiles of log(1 + depth) go to 0..1), so p itself is exact and every error below
is the alignment's. The reference is the depth area-averaged to a quarter of the size, with
3 % Gaussian noise, 10 % gross outliers (x 0.3..3), 5 % NaN holes and a block of zeros.

Two fits see the same (p, reference) pairs, p area-averaged onto the reference grid:
  - ours: `ppd_core.geometry.align.align_to_reference`, timed end to end;
  - official: scikit-learn's RANSACRegressor defaults rewritten in numpy here (threshold
    = MAD of log(1 + reference), up to 1000 trials, stop probability 0.99, least squares on
    the best inlier set), with the official fallbacks.
Per scene and fit: the scale error |median(depth / true) - 1|, the worst error over all
pixels, the share of pixels within 1 % of the true depth and the time. Then the time per fit
on 1024x768 pairs (a full-resolution reference) for both, and their ratio.

    python benchmarks/alignment.py [--repeat N]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.timing import seconds  # noqa: E402
from benchmarks.scenes import SCENE_NAMES, Box, Plane, Scene, Sphere, make_scene  # noqa: E402
from ppd_core.geometry.align import LogDepthFit, align_to_reference, fit_log_depth, metric_from_fit  # noqa: E402

WIDTH, HEIGHT = 1024, 768
REFERENCE_SHRINK = 4
NOISE, OUTLIER_SHARE, HOLE_SHARE = 0.03, 0.10, 0.05


def far_background_scene() -> Scene:
    """Boxes and a ball at 2-4 m on a floor that runs out to a wall 60 m away."""
    return Scene("far_background", [
        Plane((0.0, 0.0, 60.0), (0.0, 0.0, -1.0), (0.7, 0.8, 0.9)),
        Plane((0.0, 1.2, 0.0), (0.0, -1.0, 0.0), (0.5, 0.45, 0.35)),
        Box((-0.7, 0.8, 2.5), (0.4, 0.4, 0.4), 25.0, (0.8, 0.3, 0.2)),
        Box((0.9, 0.6, 3.8), (0.4, 0.6, 0.4), -15.0, (0.2, 0.4, 0.8)),
        Sphere((0.1, 0.7, 2.0), 0.45, (0.9, 0.8, 0.2)),
    ])


def relative_depth(depth: np.ndarray) -> np.ndarray:
    """PPD-like p: log(1 + depth) mapped so its 2nd and 98th percentiles become 0 and 1."""
    log_depth = np.log1p(depth)
    low, high = np.percentile(log_depth, [2.0, 98.0])
    return ((log_depth - low) / (high - low)).astype(np.float32)


def corrupt(depth: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Noise, gross outliers and holes (NaN, and one block of zeros) on a metric depth map."""
    reference = depth * (1.0 + NOISE * rng.standard_normal(depth.shape))
    gross = rng.random(depth.shape) < OUTLIER_SHARE
    reference[gross] = depth[gross] * rng.uniform(0.3, 3.0, np.count_nonzero(gross))
    reference[rng.random(depth.shape) < HOLE_SHARE] = np.nan
    height, width = depth.shape
    reference[height // 8 : height // 4, width // 2 : 5 * width // 8] = 0.0
    return reference.astype(np.float32)


def official_ransac(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[float, float, int]:
    """scikit-learn's RANSACRegressor(max_trials=1000) with its defaults, on y = a x + b:
    threshold = MAD of y, inliers |residual| <= threshold, a trial is kept if it has more
    inliers (or as many with a higher R^2 on them), the trial cap shrinks to
    ceil(log(0.01) / log(1 - w^2)) for inlier share w, and the result is least squares on
    the best inlier set. Returns a, b and the number of trials."""
    n = len(x)
    threshold = np.median(np.abs(y - np.median(y)))
    best_count, best_score, best_inliers = 1, -np.inf, None
    max_trials, trials = 1000, 0
    while trials < max_trials:
        trials += 1
        i, j = rng.choice(n, 2, replace=False)
        if x[i] == x[j]:  # LinearRegression on two equal x: slope 0 through their mean
            slope, intercept = 0.0, 0.5 * (y[i] + y[j])
        else:
            slope = (y[j] - y[i]) / (x[j] - x[i])
            intercept = y[i] - slope * x[i]
        inliers = np.abs(y - (slope * x + intercept)) <= threshold
        count = int(np.count_nonzero(inliers))
        if count < best_count:
            continue
        y_in = y[inliers]
        total = np.sum((y_in - y_in.mean()) ** 2)
        score = 1.0 - np.sum((y_in - (slope * x[inliers] + intercept)) ** 2) / total if total > 0 else 0.0
        if count == best_count and score < best_score:
            continue
        best_count, best_score, best_inliers = count, score, inliers
        miss = 1.0 - (count / n) ** 2
        max_trials = min(max_trials, math.ceil(math.log(0.01) / math.log(miss)) if miss > 0 else 0)
    if best_inliers is None:
        raise ValueError("RANSAC could not find a valid consensus set")
    a, b = np.polyfit(x[best_inliers], y[best_inliers], 1)
    return float(a), float(b), trials


def official_fit(p: np.ndarray, reference: np.ndarray, seed: int) -> tuple[LogDepthFit, int]:
    """`official_ransac` over the valid pixels, with the official fallbacks, as a LogDepthFit."""
    valid = np.isfinite(reference) & (reference > 0) & np.isfinite(p)
    x, y = p[valid].astype(np.float64), np.log1p(reference[valid].astype(np.float64))
    try:
        a, b, trials = official_ransac(x, y, np.random.default_rng(seed))
    except ValueError:
        return LogDepthFit(1.0, 0.0, 0.0, len(x), "identity fallback"), 0
    if a > 0:
        return LogDepthFit(a, b, 0.0, len(x), "fit"), trials
    return LogDepthFit(float(y.mean() / x.mean()), 0.0, 0.0, len(x), "ratio fallback"), trials


def depth_errors(metric: np.ndarray, depth: np.ndarray) -> tuple[float, float, float]:
    """Scale error (%), worst error over pixels (%), share of pixels within 1 % of the truth."""
    ratio = metric.astype(np.float64) / depth
    error = np.abs(ratio - 1.0)
    return 100.0 * abs(float(np.median(ratio)) - 1.0), 100.0 * float(error.max()), float(np.mean(error < 0.01))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timing runs per fit (best is shown)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the corruption and of both fits")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    small = (WIDTH // REFERENCE_SHRINK, HEIGHT // REFERENCE_SHRINK)
    print(f"p {WIDTH}x{HEIGHT} (exact); reference {small[0]}x{small[1]}: {NOISE:.0%} noise, "
          f"{OUTLIER_SHARE:.0%} outliers x0.3..3, {HOLE_SHARE:.0%} NaN holes, a block of zeros")
    print(f"{'scene':<15} {'fit':<9} {'scale err %':>11} {'worst %':>8} {'within 1%':>9} {'ms':>7}  result")
    scenes = [make_scene(name) for name in SCENE_NAMES] + [far_background_scene()]
    for scene in scenes:
        depth = scene.render(WIDTH, HEIGHT).depth
        p = relative_depth(depth)
        reference = corrupt(cv2.resize(depth, small, interpolation=cv2.INTER_AREA), rng)
        ours_s, (ours_metric, ours) = seconds(lambda: align_to_reference(p, reference, seed=args.seed), args.repeat)
        p_small = cv2.resize(p, small, interpolation=cv2.INTER_AREA)
        official_s, (official, trials) = seconds(lambda: official_fit(p_small, reference, args.seed), args.repeat)
        max_depth = float(np.nanmax(np.where(reference > 0, reference, np.nan)))
        official_metric = metric_from_fit(p, official, max_depth=max_depth)
        for label, fit, metric, spent, note in (
            ("ours", ours, ours_metric, ours_s, f"{ours.method}, inliers {ours.inlier_share:.1%}"),
            ("official", official, official_metric, official_s, f"{official.method}, {trials} trials"),
        ):
            scale, worst, within = depth_errors(metric, depth)
            print(f"{scene.name:<15} {label:<9} {scale:11.3f} {worst:8.2f} {within:9.1%} {1e3 * spent:7.1f}  {note}")

    depth = make_scene("boxes").render(WIDTH, HEIGHT).depth
    p, reference = relative_depth(depth), corrupt(depth, rng)
    ours_s, ours = seconds(lambda: fit_log_depth(p, reference, seed=args.seed), args.repeat)
    official_s, (official, trials) = seconds(lambda: official_fit(p, reference, args.seed), args.repeat)
    print(f"\nOne fit on {WIDTH}x{HEIGHT} pairs (boxes, full-resolution reference, {ours.pixels} valid): "
          f"ours {1e3 * ours_s:.0f} ms, official {1e3 * official_s:.0f} ms ({trials} trials), "
          f"official / ours = {official_s / ours_s:.2f}")
    for label, fit in (("ours", ours), ("official", official)):
        print(f"  {label:<9} worst error {depth_errors(metric_from_fit(p, fit), depth)[1]:.2f} %")


if __name__ == "__main__":
    main()
