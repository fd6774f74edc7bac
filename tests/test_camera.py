"""Camera intrinsics: sources of the focal length, resize, (un)projection and the Blender camera."""

import math
from pathlib import Path

import numpy as np
import pytest

from ppd_core.geometry.camera import (
    DEFAULT_HFOV_DEG,
    Intrinsics,
    camera_record,
    intrinsics_for_photo,
    intrinsics_from_fov,
    project,
    unproject,
)
from ppd_core.errors import BadInputError
from ppd_core.files.photo import Photo
from ppd_core.geometry.lift import lift


def _photo(width=400, height=300, **exif) -> Photo:
    return Photo(rgb=np.zeros((height, width, 3), np.uint8), path=Path("x.jpg"), **exif)


def _pixel_grid(intrinsics: Intrinsics, rng) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres of the whole image and camera-frame points on their rays at random depths."""
    ys, xs = np.mgrid[0 : intrinsics.height, 0 : intrinsics.width]
    centres = np.stack([xs.ravel() + 0.5, ys.ravel() + 0.5], axis=1)
    z = rng.uniform(0.5, 20.0, len(centres))
    points = np.stack(
        [(centres[:, 0] - intrinsics.cx) / intrinsics.fx * z, (centres[:, 1] - intrinsics.cy) / intrinsics.fy * z, z], 1
    )
    return centres, points


def test_fov_gives_the_pinhole_focal_length():
    k = intrinsics_from_fov(640, 480, 90.0)
    assert k.fx == pytest.approx(320.0) and k.fy == pytest.approx(320.0)
    assert (k.cx, k.cy, k.width, k.height) == (320.0, 240.0, 640, 480)
    assert k.hfov_deg == pytest.approx(90.0)


@pytest.mark.parametrize("fov", [0.0, 180.0, -5.0, float("nan")])
def test_impossible_fov_is_refused(fov):
    with pytest.raises(BadInputError, match="field of view"):
        intrinsics_from_fov(640, 480, fov)


def test_explicit_fov_beats_exif():
    k = intrinsics_for_photo(_photo(focal_35mm=26.0), fov_deg=50.0)
    assert k.hfov_deg == pytest.approx(50.0)


def test_exif_35mm_focal_length():
    diagonal_35mm = math.hypot(36.0, 24.0)
    k = intrinsics_for_photo(_photo(focal_35mm=diagonal_35mm, focal_mm=4.0, model="Canon EOS 80D"))
    # A lens as long as the frame diagonal: the focal length equals the image diagonal (500 px),
    # whatever the aspect ratio; the 35 mm value wins over FocalLength.
    assert k.fx == pytest.approx(500.0) and k.fy == pytest.approx(500.0)
    assert (k.cx, k.cy) == (200.0, 150.0)


def test_iphone_style_exif_matches_its_sensor():
    # A 4:3 phone: 4.2 mm lens on a 5.6 mm wide sensor, written as 26 mm equivalent.
    k = intrinsics_for_photo(_photo(4032, 3024, focal_35mm=26.0))
    assert k.fx == pytest.approx(4.2 / 5.6 * 4032, rel=0.01)


def test_exif_focal_length_with_known_sensor():
    k = intrinsics_for_photo(_photo(focal_mm=22.5, model="Canon EOS 80D"))
    assert k.fx == pytest.approx(400.0)  # 22.5 mm lens on a 22.5 mm wide sensor


def test_unknown_sensor_falls_back_to_default():
    k = intrinsics_for_photo(_photo(focal_mm=4.2, model="Mystery Cam 3000"))
    assert k.hfov_deg == pytest.approx(DEFAULT_HFOV_DEG)
    assert intrinsics_for_photo(_photo()).hfov_deg == pytest.approx(DEFAULT_HFOV_DEG)


def test_as_matrix():
    k = Intrinsics(500.0, 510.0, 320.5, 240.25, 640, 480)
    np.testing.assert_array_equal(k.as_matrix(), [[500.0, 0, 320.5], [0, 510.0, 240.25], [0, 0, 1]])


def test_scaled_intrinsics_follow_a_resize():
    k = Intrinsics(500.0, 500.0, 300.0, 250.0, 640, 480)
    small = k.scaled(160, 120)
    points = np.array([[0.3, -0.2, 2.0], [-1.0, 0.5, 4.0]])
    np.testing.assert_allclose(project(points, small), project(points, k) / 4.0, atol=1e-9)
    assert (small.width, small.height) == (160, 120)


def test_unproject_then_project_returns_every_pixel_centre():
    k = Intrinsics(412.3, 398.1, 170.9, 118.2, 320, 240)
    depth = np.random.default_rng(4).uniform(0.5, 30.0, (240, 320)).astype(np.float32)
    points = unproject(depth, k)
    ys, xs = np.mgrid[0:240, 0:320]
    error = project(points.reshape(-1, 3), k) - np.stack([xs.ravel() + 0.5, ys.ravel() + 0.5], 1)
    assert np.abs(error).max() < 1e-3 and np.array_equal(points[..., 2], depth)
    with pytest.raises(BadInputError, match="intrinsics are for 320x240"):
        unproject(depth[:, :100], k)


def test_points_behind_the_camera_do_not_project():
    uv = project(np.array([[1.0, 1.0, -1.0], [0.0, 0.0, 0.0]]), intrinsics_from_fov(10, 10, 60))
    assert np.isnan(uv).all()


def test_lift_then_project_returns_every_pixel_centre():
    k = Intrinsics(412.3, 412.3, 170.9, 118.2, 320, 240)
    ys, xs = np.mgrid[0:240, 0:320]
    depth = (3.0 + np.sin(xs / 40.0) + 0.5 * np.cos(ys / 30.0)).astype(np.float32)  # smooth, no edges
    result = lift(depth, k)
    ys, xs = np.divmod(result.pixel_index, 320)
    error = project(result.points, k) - np.stack([xs + 0.5, ys + 0.5], 1)
    assert len(result.points) == depth.size
    assert np.abs(error).max() < 0.01


def _blender_pixels(points_opencv, cam):
    """Blender's projection (BKE_camera_params_compute_viewplane with sensor_fit HORIZONTAL)
    of OpenCV camera-frame points, as pixel coordinates (u right, v down)."""
    x, y, z = points_opencv[:, 0], -points_opencv[:, 1], -points_opencv[:, 2]  # Blender camera frame
    view = cam.width  # HORIZONTAL fit: sensor width and shift refer to the image width
    pixel_size = cam.sensor_width_mm / cam.lens_mm / view  # at unit distance
    x_min = -0.5 * cam.width + cam.shift_x * view
    y_min = -0.5 * cam.height + cam.shift_y * view
    u = x / -z / pixel_size - x_min
    v_up = y / -z / pixel_size - y_min
    return np.stack([u, cam.height - v_up], 1)


@pytest.mark.parametrize(
    "k", [Intrinsics(500.0, 500.0, 300.7, 170.2, 640, 360), Intrinsics(800.0, 800.0, 200.3, 350.9, 400, 600)]
)
def test_blender_camera_puts_points_back_on_their_pixels(k):
    cam = camera_record(k)
    assert cam.sensor_fit == "HORIZONTAL" and (cam.width, cam.height) == (k.width, k.height)
    centres, points = _pixel_grid(k, np.random.default_rng(2))
    assert np.abs(_blender_pixels(points, cam) - centres).max() < 0.01


def test_blender_camera_inside_bpy():
    bpy = pytest.importorskip("bpy")
    from bpy_extras.object_utils import world_to_camera_view
    from mathutils import Vector

    k = Intrinsics(800.0, 800.0, 180.3, 330.9, 400, 600)
    cam = camera_record(k)
    scene = bpy.context.scene
    data = bpy.data.cameras.new("ppd_test")
    obj = bpy.data.objects.new("ppd_test", data)
    scene.collection.objects.link(obj)
    scene.camera = obj
    data.lens, data.sensor_width, data.sensor_fit = cam.lens_mm, cam.sensor_width_mm, cam.sensor_fit
    data.shift_x, data.shift_y = cam.shift_x, cam.shift_y
    scene.render.resolution_x, scene.render.resolution_y = cam.width, cam.height
    scene.render.resolution_percentage = 100
    scene.render.pixel_aspect_x = scene.render.pixel_aspect_y = 1.0
    bpy.context.view_layer.update()
    centres, points = _pixel_grid(k, np.random.default_rng(3))
    for centre, (x, y, z) in zip(centres[::9973], points[::9973]):
        ndc = world_to_camera_view(scene, obj, Vector((x, -y, -z)))
        pixel = (ndc.x * k.width, (1.0 - ndc.y) * k.height)
        assert math.dist(pixel, centre) < 0.01
