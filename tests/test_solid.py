"""Print solids: watertight, outward, manifold, the asked size, near high (or reversed)."""

import numpy as np
import pytest
import trimesh

from mesh.checks import check_mesh
from mesh.grid import grid_mesh
from mesh.solid import mesh_depth, relief_heights, relief_solid, solid_from_mesh
from mesh.data import MeshError
from tests.mesh_helpers import lift_depth, step_depth


def top_height_at(solid, x, y):
    """Height of the solid's top surface above (x, y), by casting a ray down (Open3D)."""
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(solid.vertices.astype(np.float32), solid.faces.astype(np.uint32))
    hit = scene.cast_rays(o3d.core.Tensor([[x, y, 1000.0, 0.0, 0.0, -1.0]], dtype=o3d.core.float32))
    return 1000.0 - float(hit["t_hit"].numpy()[0])


def test_relief_is_a_printable_solid_of_the_asked_size():
    depth = step_depth(60, 80, near=1.0, far=3.0, column=40)
    depth[5, 5] = np.nan
    solid = relief_solid(depth, width_mm=70.0, relief_mm=4.0, base_mm=1.5)
    report = check_mesh(solid)
    assert report.printable, report.summary()
    width, length, height = report.size
    assert width == pytest.approx(70.0, abs=0.01)
    assert length == pytest.approx(70.0 * 60 / 80, abs=1e-9)
    assert height == pytest.approx(5.5, abs=1e-4)
    assert report.bounds_min[2] == pytest.approx(0.0, abs=1e-9)
    # near (left half of the photo) is high, far is the bare base
    assert top_height_at(solid, -20.0, 0.0) == pytest.approx(5.5, abs=1e-3)
    assert top_height_at(solid, 20.0, 0.0) == pytest.approx(1.5, abs=1e-3)
    # exact volume of the two blocks, minus what the resampled edge column blends
    assert report.volume == pytest.approx(70.0 * length * 1.5 + 35.0 * length * 4.0, rel=0.03)


def test_photo_reads_upright_from_above_and_reverse_flips_heights():
    depth = np.full((40, 40), 3.0)
    depth[:10, :] = 1.0  # the top rows of the photo are near
    solid = relief_solid(depth, width_mm=40.0, relief_mm=3.0, base_mm=1.0, cell_mm=0.5)
    assert top_height_at(solid, 0.0, 15.0) == pytest.approx(4.0, abs=1e-3)  # +y is the photo's top
    lithophane = relief_solid(depth, width_mm=40.0, relief_mm=3.0, base_mm=1.0, cell_mm=0.5, reverse=True)
    assert top_height_at(lithophane, 0.0, 15.0) == pytest.approx(1.0, abs=1e-3)
    assert top_height_at(lithophane, 0.0, -15.0) == pytest.approx(4.0, abs=1e-3)


def test_large_maps_are_resampled_to_the_print_resolution():
    depth = np.random.default_rng(0).uniform(1.0, 2.0, (768, 1024))
    solid = relief_solid(depth, width_mm=100.0, cell_mm=0.5)
    columns = round(100.0 / 0.5) + 1
    rows = round(columns * 768 / 1024)
    assert len(solid.faces) == 2 * (rows - 1) * (columns - 1) + 2 * (2 * rows + 2 * columns - 4) + (2 * rows + 2 * columns - 4)
    assert check_mesh(solid).watertight


def test_heights_ignore_outliers_and_invalid_pixels():
    depth = np.linspace(1.0, 2.0, 100 * 100).reshape(100, 100)
    depth[0, 0] = 1e6
    depth[0, 1] = -1.0
    heights = relief_heights(depth)
    assert heights[0, 1] == 0.0 and heights[0, 0] == 0.0
    assert heights.max() == 1.0 and np.count_nonzero(heights == 1.0) < 400
    with pytest.raises(MeshError, match="no valid"):
        relief_heights(np.full((4, 4), np.nan))


@pytest.mark.parametrize("width, relief, base", [(0.0, 5.0, 2.0), (100.0, -1.0, 2.0), (100.0, 5.0, 0.0),
                                                  (1e-9, 5.0, 2.0), (1e12, 5.0, 2.0), (100.0, 0.0, 1e-9),
                                                  (100.0, 1e9, 2.0), (float("nan"), 5.0, 2.0)])
def test_bad_print_sizes_are_clear_errors(width, relief, base):
    with pytest.raises(MeshError, match="mm"):
        relief_solid(np.ones((10, 10)), width_mm=width, relief_mm=relief, base_mm=base)


@pytest.mark.parametrize("width, relief, base", [(0.01, 0.0, 0.01), (100_000.0, 100_000.0, 100_000.0)])
def test_extreme_accepted_print_sizes_still_give_printable_solids(width, relief, base):
    depth = step_depth(48, 64, near=1.0, far=2.0, column=32)
    report = check_mesh(relief_solid(depth, width_mm=width, relief_mm=relief, base_mm=base))
    assert report.printable, report.summary()
    assert report.size == pytest.approx([width, width * 0.75, base + relief], rel=1e-5)


def test_open_scene_mesh_closes_into_one_solid_near_high_with_the_photos_footprint():
    depth = step_depth(30, 40, near=1.0, far=1.5, column=20)
    scene = grid_mesh(lift_depth(depth, focal=40.0))  # two pieces, cut at the step
    camera = (40.0, 40.0, 20.0, 15.0)
    seen = mesh_depth(scene, camera, 40, 30)
    np.testing.assert_allclose(seen[2:-2, 3:17], 1.0, rtol=1e-5)  # the camera sees the surface it was lifted from
    np.testing.assert_allclose(seen[2:-2, 23:-3], 1.5, rtol=1e-5)
    solid = solid_from_mesh(scene, camera, (40, 30), width_mm=60.0, relief_mm=8.0, base_mm=2.0, cell_mm=0.5)
    report = check_mesh(solid)
    assert report.printable, report.summary()
    assert report.size == pytest.approx([60.0, 45.0, 10.0], abs=1e-6)  # the photo's aspect, base + relief
    assert len(trimesh.Trimesh(solid.vertices, solid.faces).split(only_watertight=True)) == 1
    # the near half (left in the photo) is the high one
    assert top_height_at(solid, -15.0, 0.0) == pytest.approx(10.0, abs=1e-3)
    assert top_height_at(solid, 15.0, 0.0) == pytest.approx(2.0, abs=1e-3)
    with pytest.raises(MeshError, match="point cloud"):
        solid_from_mesh(type(scene)(scene.vertices, np.zeros((0, 3))), camera, (40, 30))


def test_a_near_region_smaller_than_a_print_cell_still_reaches_the_full_height():
    """Area averaging onto 1 mm cells would lower a 3-pixel near spot: the top stays base + relief."""
    depth = np.full((400, 600), 3.0)
    depth[100:103, 100:103] = 1.0
    solid = relief_solid(depth, width_mm=60.0, relief_mm=5.0, base_mm=2.0, cell_mm=1.0)
    assert check_mesh(solid).size[2] == pytest.approx(7.0, abs=1e-9)


@pytest.mark.parametrize("cell_mm", [0.25, 3.0, 1000.0])
def test_solid_has_the_photo_aspect_exactly_at_any_cell_size(cell_mm):
    """A 64x48 map gives a 100 x 75 mm solid, also when the grid is coarse (--decimate 1)."""
    depth = step_depth(48, 64, near=1.0, far=2.0, column=32)
    width, length, _ = check_mesh(relief_solid(depth, width_mm=100.0, cell_mm=cell_mm)).size
    assert (width, length) == (pytest.approx(100.0, abs=1e-9), pytest.approx(75.0, abs=1e-9))
    scene = grid_mesh(lift_depth(np.full((48, 64), 2.0), focal=40.0))
    closed = solid_from_mesh(scene, (40.0, 40.0, 32.0, 24.0), (64, 48), width_mm=100.0, relief_mm=3.0,
                             cell_mm=cell_mm)
    assert check_mesh(closed).size[:2] == pytest.approx([100.0, 75.0], rel=1e-9)
    assert check_mesh(closed).printable


def test_one_pixel_maps_and_bad_arguments_are_clear_errors():
    one = relief_solid(np.full((1, 1), 2.0), width_mm=20.0)
    assert check_mesh(one).printable and check_mesh(one).size == pytest.approx([20.0, 20.0, 7.0])
    with pytest.raises(MeshError, match="2-D depth map"):
        relief_solid(np.ones((4, 4, 3)))
    for cell in (0.0, -1.0, float("nan")):
        with pytest.raises(MeshError, match="cell size"):
            relief_solid(np.ones((4, 4)), cell_mm=cell)
    scene = grid_mesh(lift_depth(np.full((8, 8), 2.0), focal=10.0))
    camera = (10.0, 10.0, 4.0, 4.0)
    with pytest.raises(MeshError, match="cell size"):
        solid_from_mesh(scene, camera, (8, 8), cell_mm=0.0)
    scene.vertices[0] = np.nan
    with pytest.raises(MeshError, match="NaN or infinite vertices"):
        solid_from_mesh(scene, camera, (8, 8))
