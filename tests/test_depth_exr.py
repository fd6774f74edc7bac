"""--depth-exr: float32 metres (no depth = inf), the validity mask and the camera JSON, as
MoGe writes them; read back by the command's own --depth reader, it gives the same result."""

import json
import math
import os

import numpy as np
import pytest
from PIL import Image

from ppd_core.files.result_file import read_result
from ppd_core.mesh import main

os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")
import cv2  # noqa: E402  (after the variable, which OpenCV reads at its first EXR call)

H, W = 96, 128  # the photo; the mesh grid, at --resolution 3072, is 64 x 48
GRID_W, GRID_H = 64, 48


@pytest.fixture
def scene(tmp_path):
    """A photo and its metric depth: a box before a wall, with a hole of no depth (NaN)."""
    photo = tmp_path / "a.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (H, W, 3), dtype=np.uint8)).save(photo)
    depth = np.full((H, W), 3.0, np.float32)
    depth[20:70, 30:90] = 1.25
    depth[:16, :24] = np.nan
    np.save(tmp_path / "depth.npy", depth)
    return photo, tmp_path / "depth.npy"


def run(photo, depth, out, *flags) -> int:
    return main([str(photo), "--depth", str(depth), "--resolution", str(GRID_W * GRID_H), "--quiet", "-o", str(out),
                 *flags])


def test_the_exr_holds_metres_with_inf_for_no_depth_and_the_mask_and_camera_beside_it(scene, tmp_path, capsys):
    photo, depth = scene
    assert run(photo, depth, tmp_path / "out", "--depth-exr", "--npz") == 0
    assert "a_depth.exr: depth map 64x48 px, float32 metres, no depth = inf (+ mask, camera)" in capsys.readouterr().out
    exr = cv2.imread(str(tmp_path / "out" / "a_depth.exr"), cv2.IMREAD_UNCHANGED)
    saved = read_result(str(tmp_path / "out" / "a.npz"))  # the pipeline's own depth on the mesh grid
    assert exr.dtype == np.float32 and exr.shape == (GRID_H, GRID_W) == saved.depth.shape
    valid = np.isfinite(saved.depth)
    assert 0 < valid.sum() < valid.size
    np.testing.assert_array_equal(exr[valid], saved.depth[valid])
    assert np.isposinf(exr[~valid]).all()
    assert set(np.unique(exr[valid])) == {np.float32(1.25), np.float32(3.0)}
    mask = np.asarray(Image.open(tmp_path / "out" / "a_depth_mask.png"))
    np.testing.assert_array_equal(mask, np.where(valid, 255, 0))

    camera = json.loads((tmp_path / "out" / "a_depth_camera.json").read_text())
    fx = GRID_W / (2 * math.tan(math.radians(30)))  # the default 60 degrees, in pixels of the depth map
    assert camera["width"] == GRID_W and camera["height"] == GRID_H and camera["photo_size"] == [W, H]
    assert camera["fx"] == pytest.approx(fx) and camera["fy"] == pytest.approx(fx)
    assert (camera["cx"], camera["cy"]) == pytest.approx((GRID_W / 2, GRID_H / 2))
    assert camera["fov_x"] == pytest.approx(60.0) and camera["fov_y"] == pytest.approx(
        math.degrees(2 * math.atan(GRID_H / (2 * fx))), abs=1e-4)
    photo_fx = saved.camera.fx * GRID_W / W  # the result file's camera, in pixels of the photo
    assert camera["fx"] == pytest.approx(photo_fx)
    assert camera["scale_source"] == "depth file (metres)" and "a guess" in camera["camera_source"]
    assert camera["depth_file"] == "a_depth.exr" and camera["mask_file"] == "a_depth_mask.png"


def test_the_exr_read_back_as_metric_depth_gives_the_same_result(scene, tmp_path):
    photo, depth = scene
    assert run(photo, depth, tmp_path / "first", "--depth-exr", "--npz", "--fov", "50") == 0
    exr = tmp_path / "first" / "a_depth.exr"
    assert run(photo, exr, tmp_path / "again", "--depth-kind", "metric", "--fov", "50", "--npz") == 0
    first, again = (read_result(str(tmp_path / folder / "a.npz")) for folder in ("first", "again"))
    np.testing.assert_array_equal(again.depth, first.depth)  # NaN (no depth) in the same pixels
    np.testing.assert_array_equal(again.faces, first.faces)
    np.testing.assert_allclose(again.vertices, first.vertices, rtol=0, atol=1e-6)
    camera = json.loads((tmp_path / "first" / "a_depth_camera.json").read_text())
    assert camera["fov_x"] == pytest.approx(50.0) and camera["camera_source"] == "given field of view"


def test_a_second_run_over_the_folder_does_not_take_the_mask_for_a_photo(scene, tmp_path):
    from ppd_core.batch import find_photos

    photo, depth = scene
    assert run(photo, depth, tmp_path, "--depth-exr") == 0
    assert (tmp_path / "a_depth_mask.png").is_file()
    assert find_photos([str(tmp_path)]) == ([photo], [])
