"""Lifting depth to points: exact geometry, discontinuity handling, masks, odd and bad inputs."""

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ppd_core.geometry.camera import Intrinsics, intrinsics_from_fov
from ppd_core.errors import BadInputError
from ppd_core.geometry.edges import discontinuity_mask
from mesh.data import PixelCloud
from ppd_core.geometry.lift import lift

K = Intrinsics(300.0, 310.0, 161.3, 118.7, 320, 240)


def _rays(k: Intrinsics) -> np.ndarray:
    ys, xs = np.mgrid[0 : k.height, 0 : k.width]
    return np.stack([(xs + 0.5 - k.cx) / k.fx, (ys + 0.5 - k.cy) / k.fy, np.ones(xs.shape)], -1)


def _step_depth(blur: bool = False) -> np.ndarray:
    """A near box (1.5 m) in front of a wall (3 m), optionally smeared like a predicted map."""
    depth = np.full((K.height, K.width), 3.0, np.float32)
    depth[60:180, 80:200] = 1.5
    if blur:
        depth = cv2.GaussianBlur(depth, (0, 0), 1.5)
    return depth


def test_fronto_parallel_plane_is_exact():
    result = lift(np.full((K.height, K.width), 2.5, np.float32), K)
    expected = _rays(K).reshape(-1, 3) * 2.5
    assert result.valid.all() and not result.discontinuity.any()
    np.testing.assert_array_equal(result.pixel_index, np.arange(K.width * K.height))
    np.testing.assert_allclose(result.points, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.normals, np.tile([0.0, 0.0, -1.0], (len(result.points), 1)), atol=1e-6)


def test_tilted_plane_is_exact():
    normal = np.array([0.3, -0.5, -0.8])
    normal /= np.linalg.norm(normal)
    offset = -2.0  # plane: normal . P = offset, in front of the camera
    rays = _rays(K)
    depth = (offset / (rays @ normal)).astype(np.float32)
    assert depth.min() > 0
    result = lift(depth, K)
    assert result.valid.all() and not result.discontinuity.any()
    points = result.points.astype(np.float64)
    np.testing.assert_allclose(points @ normal, offset, rtol=1e-5)
    np.testing.assert_allclose(result.normals, np.tile(normal, (len(points), 1)), atol=1e-4)


def _plane_depth(normal: tuple[float, float, float], offset: float) -> np.ndarray:
    """Depth of the plane normal . P = offset (normal made unit length) at every pixel of K."""
    normal = np.asarray(normal, float) / np.linalg.norm(normal)
    return offset / (_rays(K) @ normal)


def _down_up(depth: np.ndarray) -> np.ndarray:
    small = cv2.resize(depth, (K.width // 4, K.height // 4), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (K.width, K.height), interpolation=cv2.INTER_LINEAR)


@pytest.mark.parametrize("degrade", [lambda d: d, lambda d: cv2.GaussianBlur(d, (0, 0), 1.5), _down_up],
                         ids=["exact", "blurred", "down4+bilinear"])
@pytest.mark.parametrize("meet", [np.maximum, np.minimum], ids=["convex", "concave"])
def test_creases_are_never_cut(meet, degrade):
    """Two tilted planes meeting at a crease: a box's edge seen from outside (the farther of
    the two), a room's corner seen from inside (the nearer), even when smoothed."""
    crease = meet(_plane_depth((0.6, 0.0, -0.8), -2.0), _plane_depth((-0.6, 0.2, -0.8), -2.0))
    assert not discontinuity_mask(degrade(crease.astype(np.float32))).any()


def test_sharp_step_is_cut_on_both_sides():
    result = lift(_step_depth(), K)
    mask = result.discontinuity
    assert mask[100, 79] and mask[100, 80] and mask[59, 120] and mask[60, 120]
    assert not mask[100, 75] and not mask[100, 85] and not mask[120, 140]
    assert not result.valid[mask].any()


@pytest.mark.parametrize("noise", [0.005, 0.01, 0.025])
def test_grainy_depth_keeps_its_surfaces_and_still_cuts_the_step(noise):
    """Per-pixel noise of a prediction is not a discontinuity; the real step still is."""
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (K.height, K.width, 3), dtype=np.uint8)  # Canny fires everywhere
    depth = (_step_depth() * (1 + noise * rng.standard_normal((K.height, K.width)))).astype(np.float32)
    result = lift(depth, K, photo)
    assert result.valid.mean() > 0.97
    assert result.discontinuity[100, 79:81].all() and result.discontinuity[59:61, 120].all()


def _flying(result: PixelCloud) -> int:
    """Points farther than 1% from both the box plane (1.5 m) and the wall (3 m)."""
    z = result.points[:, 2]
    return int(np.sum((np.abs(z - 1.5) > 0.015) & (np.abs(z - 3.0) > 0.03)))


def test_blurred_step_leaves_no_flying_points():
    depth = _step_depth(blur=True)
    raw = np.sum((np.abs(depth - 1.5) > 0.015) & (np.abs(depth - 3.0) > 0.03))
    assert raw > 1000
    result = lift(depth, K)
    assert _flying(result) == 0
    assert result.valid[:, :60].all() and result.valid[80:160, 100:180].all()


def _ball_before_wall(centre: tuple[float, float, float], radius: float, wall: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact depth of a ball in front of a far wall, and the same depth area-down-sampled 4x and
    bilinearly up-sampled: ramps four pixels wide where the ball's rim grazes into the jump."""
    rays = _rays(K)
    c = np.asarray(centre)
    a, b = (rays * rays).sum(-1), rays @ c
    disc = b * b - a * (c @ c - radius**2)
    with np.errstate(invalid="ignore"):
        exact = np.where(disc >= 0, (b - np.sqrt(disc)) / a, wall)
    small = cv2.resize(exact.astype(np.float32), (K.width // 4, K.height // 4), interpolation=cv2.INTER_AREA)
    return exact, cv2.resize(small, (K.width, K.height), interpolation=cv2.INTER_LINEAR)


@pytest.mark.parametrize("centre, radius, wall", [((0.1, 0.0, 1.6), 0.45, 6.0), ((0.0, 0.0, 0.8), 0.2, 20.0),
                                                   ((-0.2, 0.1, 2.0), 0.4, 2.8)])
def test_grazing_ball_before_a_far_wall_leaves_no_flying_points(centre, radius, wall):
    """The ball's rim turns edge-on right before the jump, so its true depth climbs steeply
    there and the smeared ramp looks like more of the ball to a local test."""
    exact, depth = _ball_before_wall(centre, radius, wall)
    result = lift(depth, K)
    points = result.points.astype(np.float64)
    off_ball = np.abs(np.linalg.norm(points - np.asarray(centre), axis=1) - radius)
    off_surfaces = np.minimum(off_ball, np.abs(points[:, 2] - wall))
    assert np.sum(off_surfaces > 0.01 * exact.ravel()[result.pixel_index]) == 0
    ball = (exact < wall).astype(np.uint8)
    six_px_in = np.ones((13, 13), np.uint8)
    assert result.valid[cv2.erode(ball, six_px_in) > 0].all()  # the ball and the wall keep their points
    assert result.valid[cv2.erode(1 - ball, six_px_in) > 0].all()


def test_photo_texture_alone_is_not_a_discontinuity():
    rgb = np.zeros((K.height, K.width, 3), np.uint8)
    rgb[::8] = 255  # stripes: strong Canny edges everywhere
    mask = discontinuity_mask(np.full((K.height, K.width), 2.0, np.float32), rgb)
    assert not mask.any()


def test_edge_strength_widens_the_mask():
    depth = _step_depth(blur=True)
    weak, strong = (discontinuity_mask(depth, edge_strength=s).sum() for s in (0.0, 1.0))
    assert strong > weak > 0


def test_invalid_depth_is_masked_out():
    depth = np.full((K.height, K.width), 2.0, np.float32)
    depth[0, 0], depth[1, 1], depth[2, 2], depth[3, 3], depth[4, 4] = np.nan, np.inf, 0.0, -1.0, -np.inf
    result = lift(depth, K)
    assert len(result) == depth.size - 5
    assert not result.valid[[0, 1, 2, 3, 4], [0, 1, 2, 3, 4]].any()
    assert np.isfinite(result.points).all() and np.isfinite(result.normals).all()


def test_valid_is_exactly_the_pixels_with_points():
    depth = _step_depth(blur=True)
    depth[5:9, 5:9] = np.nan
    result = lift(depth, K)
    np.testing.assert_array_equal(np.flatnonzero(result.valid), result.pixel_index)
    assert len(result.points) == len(result.colors) == len(result.normals) == len(result.pixel_index)


def test_colors_come_from_the_photo():
    rgb = np.random.default_rng(0).integers(0, 256, (K.height, K.width, 3), dtype=np.uint8)
    result = lift(np.full((K.height, K.width), 2.0, np.float32), K, rgb)
    np.testing.assert_array_equal(result.colors, rgb.reshape(-1, 3)[result.pixel_index])
    grey = lift(np.full((K.height, K.width), 2.0, np.float32), K)
    assert np.all(grey.colors == 128)


def test_intrinsics_of_another_resolution_are_rescaled():
    depth = np.full((120, 160), 2.0, np.float32)
    result = lift(depth, K)
    np.testing.assert_allclose(result.points, lift(depth, K.scaled(160, 120)).points)


@pytest.mark.parametrize("shape", [(1, 1), (2, 2), (1, 7), (5, 1)])
def test_tiny_images(shape):
    k = intrinsics_from_fov(shape[1], shape[0], 60.0)
    result = lift(np.full(shape, 1.25, np.float32), k)
    assert len(result) == shape[0] * shape[1] and result.shape == shape
    np.testing.assert_allclose(result.points[:, 2], 1.25)


def test_two_by_two_step_does_not_crash():
    depth = np.array([[1.0, 5.0], [1.0, 5.0]], np.float32)
    result = lift(depth, intrinsics_from_fov(2, 2, 60.0))
    np.testing.assert_array_equal(np.flatnonzero(result.valid), result.pixel_index)


def test_to_open3d_carries_colors_and_normals():
    rgb = np.full((K.height, K.width, 3), (255, 0, 51), np.uint8)
    result = lift(_step_depth(), K, rgb)
    cloud = result.to_open3d()
    assert len(cloud.points) == len(result)
    np.testing.assert_allclose(np.asarray(cloud.colors)[0], [1.0, 0.0, 0.2])
    np.testing.assert_allclose(np.asarray(cloud.normals), result.normals, atol=1e-6)


@pytest.mark.parametrize(
    "depth, kwargs, message",
    [
        (np.full((4, 4), np.nan, np.float32), {}, "no valid pixels"),
        (np.zeros((4, 4), np.float32), {}, "no valid pixels"),
        (np.full((4, 4), -2.0, np.float32), {}, "no valid pixels"),
        (np.zeros((0, 4), np.float32), {}, "non-empty 2-D"),
        (np.ones((4, 4, 2), np.float32), {}, "non-empty 2-D"),
        (np.ones((4, 4), np.float32), {"edge_strength": 1.5}, "edge strength"),
        (np.ones((4, 4), np.float32), {"rgb": np.zeros((4, 4), np.uint8)}, "photo must be"),
        (np.ones((4, 4), np.float32), {"rgb": np.zeros((4, 9, 3), np.uint8)}, "aspect ratio"),
    ],
)
def test_bad_inputs(depth, kwargs, message):
    k = intrinsics_from_fov(depth.shape[1] if depth.ndim >= 2 and depth.shape[1] else 4, 4, 60.0)
    with pytest.raises(BadInputError, match=message):
        lift(depth, k, **kwargs)


def test_intrinsics_of_another_aspect_are_refused():
    with pytest.raises(BadInputError, match="other aspect ratio"):
        lift(np.ones((4, 4), np.float32), intrinsics_from_fov(8, 4, 60.0))


@settings(max_examples=60, deadline=None)
@given(
    arrays(
        np.float32,
        st.tuples(st.integers(1, 7), st.integers(1, 7)),
        elements=st.sampled_from([np.nan, np.inf, -np.inf, 0.0, -1.0, 0.5, 1.0, 1.25, 2.0, 30.0]),
    ),
)
def test_any_small_map_lifts_or_fails_cleanly(depth):
    k = intrinsics_from_fov(depth.shape[1], depth.shape[0], 60.0)
    valid = np.isfinite(depth) & (depth > 0)
    if not valid.any():
        with pytest.raises(BadInputError):
            lift(depth, k)
        return
    result = lift(depth, k)
    np.testing.assert_array_equal(np.flatnonzero(result.valid), result.pixel_index)
    assert not (result.valid & ~valid).any() and not (result.discontinuity & ~valid).any()
    assert np.isfinite(result.points).all() and np.all(result.points[:, 2] > 0)
    np.testing.assert_allclose(np.linalg.norm(result.normals, axis=1), 1.0, rtol=1e-5)
