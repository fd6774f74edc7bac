"""Edges beside holes: a depth camera's holes next to thin structures, and MoGe-2's sky mask.

A filled and smoothed map mixes values from across a hole into the pixels around it; the
hole reaches the edge detector as NaN, so only the side away from it can say what those
pixels' surface is. Without that judgement such pixels stayed as flying points.
"""

import cv2
import numpy as np
import pytest

from benchmarks.edge_quality import FLYING_TOLERANCE, degraded_depth
from benchmarks.scenes import make_scene
from ppd_core.geometry.camera import Intrinsics, unproject
from ppd_core.geometry.edges import discontinuity_mask
from ppd_core.geometry.lift import lift

K = Intrinsics(300.0, 300.0, 160.0, 120.0, 320, 240)


def _blur(depth: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(depth, (0, 0), 1.5, borderType=cv2.BORDER_REPLICATE)


def _down_up(depth: np.ndarray) -> np.ndarray:
    small = cv2.resize(depth, (K.width // 4, K.height // 4), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (K.width, K.height), interpolation=cv2.INTER_LINEAR)


def _flying_beside_holes(scene_name: str, degradation: str) -> tuple[int, int, float]:
    """A benchmark scene at 640x480 through the edge benchmark's holes and degradation: flying
    pixels within 2 px of a hole (all of them, and those `lift` keeps), and the share of the
    right pixels there that it keeps."""
    scene = make_scene(scene_name)
    truth = scene.render(640, 480)
    depth = degraded_depth(scene, truth, degradation)
    valid = np.isfinite(depth)
    points = unproject(depth, truth.intrinsics).reshape(-1, 3)
    true_depth = truth.depth.ravel()
    flying = valid.ravel().copy()
    on_surface = valid.ravel() & np.isfinite(true_depth)
    flying[on_surface] = scene.distance_to_surface(points[on_surface]) > FLYING_TOLERANCE * true_depth[on_surface]
    flying = flying.reshape(depth.shape)
    beside = valid & (cv2.dilate((~valid).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0)
    kept = lift(depth, truth.intrinsics, truth.rgb).valid
    right = beside & ~flying
    return int(np.sum(flying & beside)), int(np.sum(flying & beside & kept)), float(kept[right].mean())


@pytest.mark.parametrize("degradation", ["down4+bilinear", "blur 1.5px"])
def test_holes_beside_thin_pickets_leave_no_flying_points(degradation):
    """The fence: pickets 19 px wide with the camera's projector shadows and blobs at their
    edges, holes filled with the farthest depth around them and smoothed. Before the hole
    test, 67-91 of these flying points stayed (0.2-0.3%)."""
    raw, kept, right_kept = _flying_beside_holes("fence", degradation)
    assert raw > 20000
    assert kept <= 0.0005 * raw
    assert right_kept > 0.7  # the right pixels beside the holes mostly stay


def test_sky_border_of_the_benchmark_leaves_no_flying_points():
    """The skyline scene: a fence and a lamp post against MoGe-2's masked sky. Before the hole
    test, 766 of 6584 flying points beside the sky stayed; a few remain where a sliver of a
    picket lies between the post and the sky."""
    raw, kept, _ = _flying_beside_holes("skyline", "blur 1.5px")
    assert raw > 5000
    assert kept <= 0.01 * raw


@pytest.mark.parametrize("degrade", [_blur, _down_up], ids=["blur 1.5px", "down4+bilinear"])
@pytest.mark.parametrize("sky, near", [(10.5, 2.0), (10.5, 2.46), (12.0, 2.2), (12.0, 2.8), (8.0, 2.0)])
def test_mask_border_leaves_no_flying_points(sky, near, degrade):
    """A pole and a roof against the sky, which PPD puts at the far end of its range (`sky`)
    until MoGe-2's mask removes it. The smoothed ramp ends at the mask straight in
    disparity for some depths: no sharp step and no second side, so the former detector
    kept its outermost pixel (with the blur, hundreds of flying points at the first four
    depth pairs)."""
    exact = np.full((K.height, K.width), sky, np.float32)
    exact[170:] = 1.2 * near
    exact[:, 140:180] = near
    masked = exact == sky
    depth = degrade(exact)
    depth[masked] = np.nan
    off = np.abs(depth - exact) > 0.01 * exact
    assert np.sum(off & ~masked) > 300
    result = lift(depth, K)
    assert not np.any(result.valid & off)
    for surface in (exact == near, exact == 1.2 * near):  # each 7 px in from its edges keeps its points
        assert result.valid[cv2.erode(surface.astype(np.uint8), np.ones((15, 15), np.uint8)) > 0].all()


def test_exact_depth_beside_holes_keeps_everything():
    """Holes of 1-4 px radius in a tilted plane, exact depth elsewhere: nothing to cut. (The
    holes stay apart and off the image border: a pixel squeezed between two holes, or between
    a hole and the border, has no side to be judged on and is dropped.)"""
    ys, xs = np.mgrid[0:K.height, 0:K.width]
    depth = (1.0 / (0.5 + 0.0008 * xs + 0.0005 * ys)).astype(np.float32)
    holes = np.zeros(depth.shape, np.uint8)
    for i, (x, y) in enumerate((x, y) for x in range(25, K.width - 20, 30) for y in range(25, K.height - 20, 30)):
        cv2.circle(holes, (x, y), 1 + i % 4, 1, -1)
    depth[holes > 0] = np.nan
    result = lift(depth, K)
    np.testing.assert_array_equal(result.valid, np.isfinite(depth))


@pytest.mark.parametrize("noise", [0.005, 0.02])
def test_grain_beside_holes_is_not_smear(noise):
    """A grainy prediction with a masked band and specks keeps nearly all of its pixels, the
    ones right beside the holes as much as the rest."""
    rng = np.random.default_rng(1)
    depth = (2.0 * (1 + noise * rng.standard_normal((K.height, K.width)))).astype(np.float32)
    holes = np.zeros(depth.shape, np.uint8)
    holes[:50] = 1
    for x, y in zip(rng.integers(0, K.width, 30), rng.integers(60, K.height, 30)):
        cv2.circle(holes, (int(x), int(y)), 3, 1, -1)
    depth[holes > 0] = np.nan
    valid = np.isfinite(depth)
    beside = valid & (cv2.dilate(holes, np.ones((7, 7), np.uint8)) > 0)
    mask = discontinuity_mask(depth)
    assert not mask[~valid].any()
    assert mask[valid].mean() < 0.03
    assert mask[beside].mean() < 0.05


def test_a_sliver_of_depth_inside_a_hole_is_dropped():
    """Two pixels with depth inside a wide hole have no surface of their own to be judged on."""
    depth = np.full((K.height, K.width), 2.0, np.float32)
    depth[80:160, 100:220] = np.nan
    depth[120, 150:152] = 2.6
    assert discontinuity_mask(depth)[120, 150:152].all()
