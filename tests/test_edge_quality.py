"""The edge-quality targets on every degraded scene class, and the ground truth (scenes, a depth
camera's holes, the scores) behind them."""

import cv2
import numpy as np
import pytest

from benchmarks.depth_camera import depth_edges, fill_from_farthest, projector_shadow, sensor_holes
from benchmarks.edge_quality import evaluate, right_pixels, score, true_edges
from benchmarks.scenes import HOLE_SCENE_NAMES, SCENE_NAMES, Ellipsoid, Pole, Sphere, make_scene
from ppd_core.geometry.camera import unproject

WIDTH, HEIGHT = 640, 480  # the thin poles must stay wider than the 4x down-sampling blocks
OURS = "ours"


@pytest.mark.parametrize("degradation", ["down4+bilinear", "blur 1.5px"])
@pytest.mark.parametrize("scene_name", SCENE_NAMES)
def test_targets_on_degraded_depth(scene_name, degradation):
    results = evaluate(scene_name, degradation, ["raw", OURS], WIDTH, HEIGHT)
    raw, ours = results["raw"], results[OURS]
    assert raw.flying > 100  # the degradation really makes flying points
    assert ours.flying <= 0.01 * raw.flying  # cut by at least 99%
    assert ours.completeness >= 0.99


@pytest.mark.parametrize("scene_name", SCENE_NAMES)
def test_exact_depth_keeps_everything_and_flies_nothing(scene_name):
    ours = evaluate(scene_name, "exact", [OURS], WIDTH, HEIGHT)[OURS]
    assert ours.flying == 0
    assert ours.completeness >= 0.99


def test_rendered_depth_is_exact():
    scene = make_scene("spheres")
    rendering = scene.render(320, 240)
    sphere = next(p for p in scene.primitives if isinstance(p, Sphere))
    k = rendering.intrinsics
    centre = np.array(sphere.center)
    x = int(centre[0] / centre[2] * k.fx + k.cx)
    y = int(centre[1] / centre[2] * k.fy + k.cy)
    ray = np.array([(x + 0.5 - k.cx) / k.fx, (y + 0.5 - k.cy) / k.fy, 1.0])
    b, a = ray @ centre, ray @ ray
    expected = (b - np.sqrt(b * b - a * (centre @ centre - sphere.radius**2))) / a
    assert rendering.depth[y, x] == pytest.approx(expected, rel=1e-12)
    points = unproject(rendering.depth, k).reshape(-1, 3)
    assert scene.distance_to_surface(points).max() < 1e-6 * rendering.depth.max()


def test_ellipsoid_distance_is_exact():
    """Along its outward normal, a convex surface's nearest point stays where the normal
    starts, so a point pushed out by t (or a little in) is exactly t from the surface."""
    ellipsoid = Ellipsoid((0.1, -0.2, 1.0), (0.085, 0.115, 0.1), (1.0, 1.0, 1.0))
    rng = np.random.default_rng(0)
    directions = rng.normal(size=(2000, 3))
    on_surface = np.asarray(ellipsoid.center) + directions / np.linalg.norm(
        directions / np.asarray(ellipsoid.radii), axis=1, keepdims=True)
    offsets = rng.uniform(-0.02, 0.5, size=2000)  # inward less than the smallest curvature radius
    points = on_surface + offsets[:, None] * ellipsoid.surface_normal(on_surface)
    np.testing.assert_allclose(ellipsoid.signed_distance(points), offsets, atol=1e-12)


def test_head_render_lies_on_its_surfaces():
    scene = make_scene("head")
    rendering = scene.render(160, 120)
    assert any(isinstance(p, Ellipsoid) for p in scene.primitives)
    points = unproject(rendering.depth, rendering.intrinsics).reshape(-1, 3)
    assert scene.distance_to_surface(points).max() < 1e-6 * rendering.depth.max()


def test_pole_is_thin_and_textured():
    scene = make_scene("pole")
    rendering = scene.render(WIDTH, HEIGHT)
    pole_ids = [i for i, p in enumerate(scene.primitives) if isinstance(p, Pole)]
    widths = [np.sum(rendering.object_id[HEIGHT // 3] == i) for i in pole_ids]
    assert all(8 <= w <= 40 for w in widths)
    assert len(np.unique(rendering.rgb.reshape(-1, 3), axis=0)) > 20


def test_scores_flag_a_point_off_the_surface():
    scene = make_scene("boxes")
    truth = scene.render(64, 48)
    points = unproject(truth.depth.astype(np.float32), truth.intrinsics).reshape(-1, 3).copy()
    index = np.arange(points.shape[0])
    points[10] *= 1.05  # 5% farther along its ray: flying
    scores = score(truth, scene.distance_to_surface, (points, index), 0.0)
    assert scores.flying == 1 and scores.completeness == 1.0
    assert true_edges(truth.depth).any()


def test_projector_shadow_lies_beside_a_nearer_object_as_wide_as_its_disparity():
    """Projector to the right: the background left of a nearer box is unlit over
    fx * baseline * (1/near - 1/far) pixels."""
    depth = np.full((20, 200), 3.0)
    depth[:, 100:150] = 1.5
    shadow = projector_shadow(depth, fx=500.0, baseline_m=0.03)
    width = 500.0 * 0.03 * (1 / 1.5 - 1 / 3.0)  # 5 px
    np.testing.assert_array_equal(np.flatnonzero(shadow[10]), np.arange(100 - int(width), 100))


def test_holes_are_filled_with_the_farthest_depth_on_their_rims():
    depth = np.full((30, 30), 3.0, np.float32)
    depth[:, 15:] = 1.5
    holes = np.zeros(depth.shape, dtype=bool)
    holes[10:20, 12:18] = True  # across the step: gets the wall's depth
    holes[2:5, 20:23] = True  # inside the box: gets the box's
    filled = fill_from_farthest(depth, holes)
    assert np.all(filled[10:20, 12:18] == 3.0) and np.all(filled[2:5, 20:23] == 1.5)
    np.testing.assert_array_equal(filled[~holes], depth[~holes])


def test_sensor_holes_gather_at_depth_edges_and_repeat():
    truth = make_scene("crate").render(320, 240)
    holes = sensor_holes(truth)
    np.testing.assert_array_equal(holes, sensor_holes(truth))
    near_edges = cv2.dilate(depth_edges(truth.depth).astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    assert 0.01 < holes.mean() < 0.1
    assert holes[near_edges].mean() > 5 * holes[~near_edges].mean()


@pytest.mark.parametrize("scene_name", HOLE_SCENE_NAMES)
def test_thin_structures_render_onto_their_surfaces(scene_name):
    """Turned boxes (spokes) and ellipsoids (leaves) included: every rendered point lies on a
    primitive, and only the skyline has sky."""
    scene = make_scene(scene_name)
    rendering = scene.render(160, 120)
    sky = ~np.isfinite(rendering.depth)
    assert sky.any() == (scene_name == "skyline") and np.all(rendering.object_id[sky] == -1)
    points = unproject(np.where(sky, 1.0, rendering.depth), rendering.intrinsics)[~sky]
    assert scene.distance_to_surface(points).max() < 1e-6 * rendering.depth[~sky].max()


def test_a_right_value_inside_a_smeared_ramp_is_not_counted():
    """Completeness does not ask a method to keep a pixel that is right only by chance."""
    scene = make_scene("boxes")
    truth = scene.render(64, 48)
    depth = truth.depth.astype(np.float32)
    depth[20, 30] *= 1.05  # a flying pixel: it and its neighbours are not counted
    countable = right_pixels(scene, truth, depth)
    assert not countable[19:22, 29:32].any() and countable[20, 34]
    depth[5, 5] = np.nan
    assert not right_pixels(scene, truth, depth)[5, 5] and right_pixels(scene, truth, depth)[5, 6]


def test_points_where_the_sky_is_fly():
    scene = make_scene("skyline")
    truth = scene.render(64, 48)
    depth = np.where(np.isfinite(truth.depth), truth.depth, 50.0).astype(np.float32)
    points = unproject(depth, truth.intrinsics).reshape(-1, 3)
    scores = score(truth, scene.distance_to_surface, (points, np.arange(depth.size)), 0.0)
    assert scores.flying == int(np.sum(~np.isfinite(truth.depth)))
