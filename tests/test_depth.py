"""Metric depth from normalised log-depth and from files; edge-keeping upsampling."""

import os
import warnings

import cv2
import numpy as np
import pytest

from ppd_core.errors import BadInputError
from ppd_core.files.depth_file import read_depth_file
from ppd_core.geometry.depth import depth_to_metric, metric_from_normalized, metric_from_scale_shift, upsample_depth
from ppd_core.options import PRESETS


def test_presets_are_ordered_ranges():
    assert set(PRESETS) == {"tabletop", "indoor", "outdoor"}
    for near, far in PRESETS.values():
        assert 0 < near < far


def test_normalized_maps_log_depth_between_near_and_far():
    p = np.array([0.0, 0.5, 1.0], dtype=np.float32)
    depth = metric_from_normalized(p, 0.5, 8.0)
    middle = np.expm1(0.5 * (np.log1p(0.5) + np.log1p(8.0)))
    np.testing.assert_allclose(depth, [0.5, middle, 8.0], rtol=1e-6)
    assert depth.dtype == np.float32


def test_normalized_is_nan_safe():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        depth = metric_from_normalized(np.array([np.nan, 0.25]), 1.0, 3.0)
    assert np.isnan(depth[0]) and np.isfinite(depth[1])


def test_scale_shift_matches_near_far():
    p = np.linspace(-0.2, 1.2, 15)
    near, far = 0.8, 12.0
    scale, shift = np.log1p(far) - np.log1p(near), np.log1p(near)
    expected = metric_from_normalized(p, near, far)
    np.testing.assert_allclose(metric_from_scale_shift(p, scale, shift), expected, rtol=1e-6)


@pytest.mark.parametrize("near, far", [(2.0, 1.0), (-1.0, 3.0), (1.0, float("inf")), (1.0, 1.0)])
def test_bad_ranges_are_refused(near, far):
    with pytest.raises(BadInputError, match="near"):
        metric_from_normalized(np.zeros(3), near, far)


def test_npy_metric(tmp_path):
    values = np.array([[1.5, 2.0], [3.25, np.nan]], dtype=np.float64)
    np.save(tmp_path / "d.npy", values)
    depth = read_depth_file(tmp_path / "d.npy", "metric")
    assert depth.dtype == np.float32
    np.testing.assert_array_equal(depth, values.astype(np.float32))


def test_sixteen_bit_png_metric_is_millimetres(tmp_path):
    path = tmp_path / "d.png"
    cv2.imwrite(str(path), np.array([[0, 1500], [65535, 250]], dtype=np.uint16))
    depth = read_depth_file(path, "metric")
    assert np.isnan(depth[0, 0])
    np.testing.assert_allclose(depth[0, 1:], [1.5], rtol=1e-6)
    np.testing.assert_allclose(depth[1], [65.535, 0.25], rtol=1e-6)


def test_png_normalized_uses_full_code_range(tmp_path):
    cv2.imwrite(str(tmp_path / "n16.png"), np.array([[0, 65535, 32768]], dtype=np.uint16))
    cv2.imwrite(str(tmp_path / "n8.png"), np.array([[0, 255, 51]], dtype=np.uint8))
    np.testing.assert_allclose(read_depth_file(tmp_path / "n16.png", "normalized"), [[0, 1, 32768 / 65535]], rtol=1e-6)
    np.testing.assert_allclose(read_depth_file(tmp_path / "n8.png", "normalized"), [[0, 1, 0.2]], rtol=1e-6)


def test_float_tiff_is_read_as_stored(tmp_path):
    values = np.array([[0.25, 1.0, 7.5]], dtype=np.float32)
    cv2.imwrite(str(tmp_path / "d.tif"), values)
    np.testing.assert_array_equal(read_depth_file(tmp_path / "d.tif", "disparity"), values)


def test_exr(tmp_path):
    os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")
    values = np.array([[0.5, 2.0], [4.0, 8.0]], dtype=np.float32)
    if not cv2.imwrite(str(tmp_path / "d.exr"), values):
        pytest.skip("this OpenCV build has no OpenEXR writer")
    np.testing.assert_array_equal(read_depth_file(tmp_path / "d.exr", "metric"), values)


def test_bad_depth_files(tmp_path):
    with pytest.raises(BadInputError, match="gone.npy: no such depth file"):
        read_depth_file(tmp_path / "gone.npy", "metric")
    (tmp_path / "folder.npy").mkdir()
    with pytest.raises(BadInputError, match="folder.npy: not a file"):
        read_depth_file(tmp_path / "folder.npy", "metric")
    (tmp_path / "d.jpg").write_bytes(b"x")
    with pytest.raises(BadInputError, match="unsupported depth file type"):
        read_depth_file(tmp_path / "d.jpg", "metric")
    (tmp_path / "junk.png").write_bytes(b"not a png at all")
    with pytest.raises(BadInputError, match="junk.png: not a depth image"):
        read_depth_file(tmp_path / "junk.png", "metric")
    np.save(tmp_path / "cube.npy", np.zeros((2, 3, 4)))
    with pytest.raises(BadInputError, match="2-D"):
        read_depth_file(tmp_path / "cube.npy", "metric")
    (tmp_path / "bad.npy").write_bytes(b"garbage")
    with pytest.raises(BadInputError, match="bad.npy"):
        read_depth_file(tmp_path / "bad.npy", "metric")
    np.save(tmp_path / "ok.npy", np.ones((2, 2)))
    with pytest.raises(BadInputError, match="depth kind"):
        read_depth_file(tmp_path / "ok.npy", "inverse")


def test_true_disparity_is_inverted():
    depth = depth_to_metric(np.array([[0.5, 2.0, 0.0, -1.0]]), "disparity")
    np.testing.assert_allclose(depth[0, :2], [2.0, 0.5])
    assert np.isnan(depth[0, 2:]).all()


def test_relative_disparity_is_spread_over_near_far():
    disparity = np.linspace(10.0, 110.0, 101)
    depth = depth_to_metric(disparity, "disparity", near=1.0, far=5.0)
    low, high = np.percentile(disparity, [2.0, 98.0])
    at = lambda value: depth[np.argmin(np.abs(disparity - value))]  # noqa: E731
    assert at(low) == pytest.approx(5.0, rel=1e-5) and at(high) == pytest.approx(1.0, rel=1e-5)
    assert np.all(np.diff(depth) < 0)  # larger disparity is nearer


def test_metric_and_normalized_conversions():
    values = np.array([[0.0, 1.0]], dtype=np.float32)
    np.testing.assert_array_equal(depth_to_metric(values, "metric"), [[np.nan, 1.0]])  # 0 is no depth
    np.testing.assert_allclose(depth_to_metric(values, "normalized", 0.5, 4.0), [[0.5, 4.0]], rtol=1e-6)
    with pytest.raises(BadInputError, match="near and far"):
        depth_to_metric(values, "normalized")


def _step(width=8, height=6, split=4, near=1.0, far=3.0):
    depth = np.full((height, width), far, dtype=np.float32)
    depth[:, :split] = near
    return depth


def test_upsampling_never_blends_across_a_step():
    up = upsample_depth(_step(), 32, 24)
    assert set(np.unique(up)) == {1.0, 3.0}


def test_upsampling_blends_smooth_surfaces_bilinearly():
    ys, xs = np.mgrid[0:6, 0:8]
    smooth = (2.0 + 0.01 * xs + 0.005 * ys).astype(np.float32)
    np.testing.assert_allclose(upsample_depth(smooth, 32, 24), cv2.resize(smooth, (32, 24)), rtol=1e-6)


def test_upsampling_follows_the_photo_edge():
    # Low-res step between columns 3 and 4 (pixels 12..16 at 4x); the photo says the true edge is at 14.
    photo = np.zeros((24, 32, 3), np.uint8)
    photo[:, :14] = 255
    guided = upsample_depth(_step(), 32, 24, guide_rgb=photo)
    blind = upsample_depth(_step(), 32, 24)
    np.testing.assert_array_equal(guided[5, 10:18], [1, 1, 1, 1, 3, 3, 3, 3])
    np.testing.assert_array_equal(blind[5, 10:18], [1, 1, 1, 1, 1, 1, 3, 3])


def test_upsampling_ignores_invalid_sources():
    depth = np.full((4, 4), 2.0, dtype=np.float32)
    depth[1, 1] = np.nan
    up = upsample_depth(depth, 16, 16)
    assert np.isfinite(up).all() and np.all(up == 2.0)


def test_upsampling_bad_inputs():
    with pytest.raises(BadInputError, match="2-D"):
        upsample_depth(np.zeros((2, 2, 2)), 4, 4)
    with pytest.raises(BadInputError, match="not positive"):
        upsample_depth(np.ones((2, 2)), 0, 4)
    with pytest.raises(BadInputError, match="guide photo"):
        upsample_depth(np.ones((2, 2)), 4, 4, guide_rgb=np.zeros((3, 3, 3), np.uint8))


def test_hostile_npy_files_are_refused_in_one_line(tmp_path):
    np.save(tmp_path / "objects.npy", np.array([[1, 2], [3, 4]], dtype=object), allow_pickle=True)
    with pytest.raises(BadInputError, match="objects.npy: not a readable .npy array"):
        read_depth_file(tmp_path / "objects.npy", "metric")
    (tmp_path / "empty.npy").write_bytes(b"")
    with pytest.raises(BadInputError, match="empty.npy: not a readable .npy array"):
        read_depth_file(tmp_path / "empty.npy", "metric")
    for name, values in (("complex", np.ones((4, 4), np.complex64)), ("bool", np.ones((4, 4), bool))):
        np.save(tmp_path / f"{name}.npy", values)
        with pytest.raises(BadInputError, match=f"{name}.npy: depth must hold real numbers, not {name}"):
            read_depth_file(tmp_path / f"{name}.npy", "metric")


def test_singleton_axes_are_dropped_but_a_one_pixel_map_stays_two_dimensional(tmp_path):
    np.save(tmp_path / "one.npy", np.full((1, 1), 2.0))
    assert read_depth_file(tmp_path / "one.npy", "metric").shape == (1, 1)
    np.save(tmp_path / "batch.npy", np.ones((1, 3, 5, 1)))
    assert read_depth_file(tmp_path / "batch.npy", "metric").shape == (3, 5)


def test_depth_outside_the_physical_range_is_no_depth(tmp_path):
    import warnings

    values = np.array([[2.0, 1e10, 1e300, 1e-30, 5.0]])
    np.save(tmp_path / "sky.npy", values)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warnings either
        metric = depth_to_metric(read_depth_file(tmp_path / "sky.npy", "metric"), "metric")
        inverse = depth_to_metric(np.array([[1e-12, 0.5, 1e12]]), "disparity")
    np.testing.assert_array_equal(np.isnan(metric), [[False, True, True, True, False]])
    np.testing.assert_array_equal(metric[0, [0, 4]], [2.0, 5.0])
    np.testing.assert_array_equal(np.isnan(inverse), [[True, False, True]])


def test_a_colour_picture_is_not_taken_for_depth(tmp_path):
    import cv2

    colour = np.random.default_rng(0).integers(0, 255, (6, 8, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "preview.png"), colour)
    with pytest.raises(BadInputError, match="preview.png: a colour picture, not a depth map"):
        read_depth_file(tmp_path / "preview.png", "metric")
    grey = np.arange(48, dtype=np.uint16).reshape(6, 8) * 100 + 1
    cv2.imwrite(str(tmp_path / "grey_rgba.png"), np.dstack([grey, grey, grey, np.full_like(grey, 65535)]))
    np.testing.assert_allclose(read_depth_file(tmp_path / "grey_rgba.png", "metric"), grey * 0.001, rtol=1e-6)


def test_predictions_outside_the_trained_range_are_clipped_and_counted():
    from ppd_core.geometry.depth import TRAINED_P, clip_normalized

    p = np.array([[-40.0, -0.5, 0.2], [1.0, 1.0001, np.nan]], np.float32)
    clipped, outside = clip_normalized(p)
    assert outside == 2 and TRAINED_P == (-0.5, 1.0)
    np.testing.assert_array_equal(clipped[0], np.float32([-0.5, -0.5, 0.2]))
    assert clipped[1, 1] == 1.0 and np.isnan(clipped[1, 2])


def test_a_wild_prediction_stays_inside_the_depth_range_and_the_summary_says_how_much_was_clipped():
    """Random weights (or an odd photo) put p far outside [0, 1]: before clipping, the range
    route extrapolated it to kilometres (a camera clip end of 2787 m in Blender)."""
    from types import SimpleNamespace

    from ppd_core.files.photo import Photo
    from ppd_core.options import JobOptions
    from ppd_core.photo_depth import ModelCache, depth_from_network

    rng = np.random.default_rng(0)
    p = rng.normal(0.5, 0.3, (30, 40)).astype(np.float32)
    p[:3] = 9.0  # 120 pixels far beyond the far end
    p[-2:] = -6.0  # 80 far before the near end
    class Stub(ModelCache):  # the network's answer is `p`, with no MoGe-2
        def get(self, options, on_progress=None):
            return self.model

        def estimate(self, photo, options, fov_x, on_progress=None):
            return SimpleNamespace(p=p, geometry=None), False

    stub = Stub(model=SimpleNamespace(description="stub", source="stub", geometry_model=None,
                                      precision_choice=SimpleNamespace(describe=lambda: {})))
    photo = Photo(rgb=np.zeros((30, 40, 3), np.uint8), path="stub.png")
    near, far = PRESETS["indoor"]
    depth = depth_from_network(photo, JobOptions(preset="indoor"), stub)
    finite = depth.metric[np.isfinite(depth.metric)]
    assert finite.max() == pytest.approx(far, rel=1e-5) and finite.min() == pytest.approx(0.5 * near)
    info = depth.describe()
    assert info["clipped_px"] == 200 + int(np.count_nonzero((p[3:-2] < -0.5) | (p[3:-2] > 1.0)))
    assert info["clipped_share"] == pytest.approx(info["clipped_px"] / p.size, abs=1e-4)
