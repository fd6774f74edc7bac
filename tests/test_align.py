"""Robust alignment of PPD's relative depth to a metric reference (ppd_core.geometry.align)."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from ppd_core.errors import BadInputError
from ppd_core.geometry.align import LogDepthFit, align_to_reference, fit_log_depth, metric_from_fit

VECTORS = Path(__file__).parent / "data" / "vectors_moge2.npz"
TRUE_A, TRUE_B = 3.1, 0.4  # log(1 + depth) = TRUE_A * p + TRUE_B in the synthetic cases


@pytest.fixture(scope="module")
def vectors():
    with np.load(VECTORS) as data:
        yield {key: data[key] for key in data.files if key.startswith("ransac/")}


def _official_case(vectors, case: str):
    """Our fit and metric depth on an official case, the official metric depth, and which
    masked pixels are true inliers."""
    pred, gt, mask, official, truth = (vectors[f"ransac/{case}/{key}"]
                                       for key in ("pred", "gt", "mask", "metric_depth", "inlier_truth"))
    fit = fit_log_depth(pred, gt, mask)
    return fit, metric_from_fit(pred, fit, max_depth=float(gt[mask].max())), official, truth[mask]


def test_official_affine_outliers_are_reproduced(vectors):
    fit, ours, official, inlier_truth = _official_case(vectors, "affine_outliers")
    assert fit.method == "fit"
    assert fit.a == pytest.approx(2.5, rel=1e-6) and fit.b == pytest.approx(0.4, abs=1e-6)
    assert fit.inlier_share == pytest.approx(inlier_truth.mean())  # exactly the true inliers
    np.testing.assert_allclose(ours, official, rtol=1e-5)


def test_official_negative_slope_fallback_is_exact(vectors):
    fit, ours, official, _ = _official_case(vectors, "negative_slope")
    assert fit.method == "ratio fallback" and fit.b == 0.0 and fit.inlier_share == 0.0
    np.testing.assert_array_equal(ours, official)


def test_official_single_valid_pixel_fallback_is_exact(vectors):
    fit, ours, official, _ = _official_case(vectors, "single_valid_pixel")
    assert fit == LogDepthFit(1.0, 0.0, 0.0, 1, "identity fallback")
    np.testing.assert_array_equal(ours, official)


def _log_uniform_depth(shape, near, far, rng) -> np.ndarray:
    return np.exp(rng.uniform(np.log(near), np.log(far), shape))


def _p_from_depth(depth: np.ndarray) -> np.ndarray:
    return ((np.log1p(depth) - TRUE_B) / TRUE_A).astype(np.float32)


def _noisy_reference(depth: np.ndarray, rng, noise=0.03, outliers=0.1) -> np.ndarray:
    """`noise` relative Gaussian noise, and a share `outliers` of pixels multiplied by 0.3..3."""
    reference = depth * (1 + noise * rng.standard_normal(depth.shape))
    gross = rng.random(depth.shape) < outliers
    reference[gross] = depth[gross] * rng.uniform(0.3, 3.0, gross.sum())
    return reference.astype(np.float32)


def test_recovers_the_line_despite_gross_outliers_and_noise():
    rng = np.random.default_rng(11)
    depth = _log_uniform_depth((300, 400), 0.5, 20.0, rng)
    fit = fit_log_depth(_p_from_depth(depth), _noisy_reference(depth, rng))
    assert fit.method == "fit" and fit.pixels == depth.size
    assert fit.a == pytest.approx(TRUE_A, rel=1e-3)
    assert fit.b == pytest.approx(TRUE_B, abs=1e-3)
    assert 0.88 < fit.inlier_share < 0.92  # the 10 % outliers, less those that landed near 1x
    metric = metric_from_fit(_p_from_depth(depth), fit)
    assert metric.dtype == np.float32 and np.abs(metric / depth - 1).max() < 3e-3


def test_seeded_fit_is_deterministic_and_seed_does_not_change_accuracy():
    rng = np.random.default_rng(12)
    depth = _log_uniform_depth((200, 300), 0.5, 20.0, rng)
    p, reference = _p_from_depth(depth), _noisy_reference(depth, rng)
    np.random.seed(1)
    first = fit_log_depth(p, reference, seed=7)
    np.random.seed(2)  # the global numpy state plays no part
    assert fit_log_depth(p, reference, seed=7) == first
    other = fit_log_depth(p, reference, seed=8)
    assert other.a == pytest.approx(first.a, rel=1e-3) and other.b == pytest.approx(first.b, abs=1e-3)


def test_on_clean_noisy_data_it_is_least_squares():
    """Without outliers the fit stays within 0.4 of least squares' own standard error of it
    (trimming at 3.5 sigma keeps 99.3 % of its efficiency; the difference is typically 0.06
    standard errors): nothing is lost to robustness."""
    rng = np.random.default_rng(13)
    p = rng.random((200, 300))
    noise = 0.02
    log_reference = TRUE_A * p + TRUE_B + noise * rng.standard_normal(p.shape)
    fit = fit_log_depth(p, np.expm1(log_reference))
    slope, intercept = np.polyfit(p.ravel(), log_reference.ravel(), 1)
    slope_error = noise / np.sqrt(p.size * p.var())
    intercept_error = noise * np.sqrt(1 / p.size + p.mean() ** 2 / (p.size * p.var()))
    assert abs(fit.a - slope) < 0.4 * slope_error
    assert abs(fit.b - intercept) < 0.4 * intercept_error
    assert fit.inlier_share > 0.99


def test_far_background_scale_within_one_percent_unlike_least_squares_or_mad_threshold():
    """60 % of pixels at 1-4 m, 40 % at 40-80 m: the MAD of log(1 + depth), the official
    RANSAC threshold, is then ~0.65, wide enough to let most gross outliers in."""
    rng = np.random.default_rng(14)
    shape = (300, 400)
    depth = np.where(rng.random(shape) < 0.4, _log_uniform_depth(shape, 40.0, 80.0, rng),
                     _log_uniform_depth(shape, 1.0, 4.0, rng))
    p, reference = _p_from_depth(depth), _noisy_reference(depth, rng)

    def worst_error(a: float, b: float) -> float:
        return float(np.abs(metric_from_fit(p, LogDepthFit(a, b, 1.0, p.size, "fit")) / depth - 1).max())

    ours = fit_log_depth(p, reference)
    x, y = p.ravel().astype(np.float64), np.log1p(reference.ravel().astype(np.float64))
    least_squares = np.polyfit(x, y, 1)
    # The best the official RANSAC can do: least squares on everything within the MAD of
    # the true line (its consensus set if the trials found the exact truth).
    within_mad = np.abs(y - (TRUE_A * x + TRUE_B)) <= np.median(np.abs(y - np.median(y)))
    official_at_best = np.polyfit(x[within_mad], y[within_mad], 1)
    assert worst_error(ours.a, ours.b) < 0.01
    assert worst_error(*least_squares) > 0.03
    assert worst_error(*official_at_best) > 0.015
    assert worst_error(ours.a, ours.b) < worst_error(*official_at_best) / 10


def test_a_wall_filling_most_of_the_view_does_not_decide_the_slope():
    """90 % of pixels at one depth (any line through them fits most pixels): the slope still
    comes from the 10 % spread in depth."""
    rng = np.random.default_rng(17)
    shape = (200, 300)
    depth = np.where(rng.random(shape) < 0.9, 5.0, _log_uniform_depth(shape, 0.5, 5.0, rng))
    for seed in range(5):
        fit = fit_log_depth(_p_from_depth(depth), _noisy_reference(depth, rng), seed=seed)
        assert fit.a == pytest.approx(TRUE_A, rel=3e-3) and fit.b == pytest.approx(TRUE_B, abs=3e-3)


def _room_depth(height: int, width: int) -> np.ndarray:
    """A floor rising to a wall at 6 m, with a box at 1.5 m: smooth regions and sharp edges."""
    rows = np.arange(height)[:, None] + 0.5
    floor = 1.2 * height / np.maximum(rows - 0.45 * height, 1e-3)
    depth = np.minimum(np.where(rows > 0.45 * height, floor, np.inf), 6.0) * np.ones((1, width))
    depth[height // 3 : 2 * height // 3, width // 4 : width // 2] = 1.5
    return depth


def test_quarter_resolution_reference_with_holes_aligns_full_resolution_p():
    rng = np.random.default_rng(15)
    depth = _room_depth(480, 640)
    small = cv2.resize(depth, (160, 120), interpolation=cv2.INTER_AREA)
    reference = _noisy_reference(small, rng)
    reference[rng.random(reference.shape) < 0.1] = np.nan
    reference[10:40, 100:140] = 0.0
    reference[50, :20], reference[60, :20] = -1.0, np.inf
    metric, fit = align_to_reference(_p_from_depth(depth), reference)
    assert metric.shape == depth.shape and metric.dtype == np.float32
    assert fit.method == "fit" and fit.pixels == np.count_nonzero(np.isfinite(reference) & (reference > 0))
    assert fit.a == pytest.approx(TRUE_A, rel=3e-3) and fit.b == pytest.approx(TRUE_B, abs=3e-3)
    error = np.abs(metric / depth - 1)
    assert np.median(error) < 2e-3 and np.mean(error < 0.01) > 0.99
    assert metric.max() <= np.nanmax(np.where(np.isinf(reference), np.nan, reference))


def test_finer_reference_is_averaged_onto_p_grid():
    rng = np.random.default_rng(16)
    depth = _room_depth(240, 320)
    fine = _noisy_reference(_room_depth(481, 640), rng)  # aspect 1.3306 vs 1.3333: within 1 %
    metric, fit = align_to_reference(_p_from_depth(depth), fine)
    assert metric.shape == depth.shape and fit.pixels == depth.size
    assert fit.a == pytest.approx(TRUE_A, rel=5e-3) and fit.b == pytest.approx(TRUE_B, abs=5e-3)


def test_degenerate_but_valid_inputs_fall_back():
    p = np.linspace(0, 1, 100).reshape(10, 10)
    nearer_when_farther = fit_log_depth(p, 10.0 - 5.0 * p)  # a negative slope: official ratio fallback
    assert nearer_when_farther.method == "ratio fallback" and nearer_when_farther.b == 0.0
    assert nearer_when_farther.a == pytest.approx(np.log1p(10.0 - 5.0 * p).mean() / p.mean(), rel=1e-5)
    assert fit_log_depth(np.full((10, 10), 0.5), np.exp(p)).method == "ratio fallback"  # constant p
    one_pixel = np.full((10, 10), np.nan)
    one_pixel[3, 3] = 4.0
    assert fit_log_depth(p, one_pixel).method == "identity fallback"


def test_metric_is_clipped_like_the_official_pipeline():
    fit = LogDepthFit(10.0, -1.0, 1.0, 3, "fit")
    metric = metric_from_fit(np.array([[0.0, 0.5, 1.0]]), fit, max_depth=100.0)
    assert metric.dtype == np.float32
    np.testing.assert_allclose(metric, [[1e-3, np.expm1(4.0), 100.0]], rtol=1e-6)


@pytest.mark.parametrize("bad", [np.nan, 0.0, -2.0, np.inf])
def test_reference_without_any_depth_is_refused(bad):
    p = np.random.default_rng(0).random((12, 16))
    with pytest.raises(BadInputError, match="no valid pixel"):
        align_to_reference(p, np.full((3, 4), bad))
    with pytest.raises(BadInputError, match="no valid pixel"):
        fit_log_depth(p, np.full((12, 16), bad))


def test_mismatched_aspect_or_dimensions_are_refused():
    p = np.random.default_rng(0).random((480, 640))
    with pytest.raises(BadInputError, match=r"reference depth is 480x480 .* depth map is 640x480"):
        align_to_reference(p, np.ones((480, 480)))
    with pytest.raises(BadInputError, match="2-D"):
        align_to_reference(p[None], np.ones((120, 160)))
    with pytest.raises(BadInputError, match="2-D"):
        align_to_reference(p, np.ones((120, 160, 3)))
    with pytest.raises(BadInputError, match="one grid"):
        fit_log_depth(p, np.ones((120, 160)))
