"""Exported geometry lands on the true surfaces of a rendered scene (exact depth, known camera)."""

import numpy as np
import open3d as o3d
import pytest
import trimesh
from PIL import Image

from benchmarks.scenes import make_scene
from ppd_core.options import JobOptions
from ppd_core.pipeline import run_photo

GLTF_TO_OPENCV = np.array([1.0, -1.0, -1.0])  # glTF (x, y up, -z forward) -> OpenCV (x, y down, z)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The "spheres" scene at 160x120 with a 50 degree camera, through every output kind."""
    folder = tmp_path_factory.mktemp("truth")
    scene = make_scene("spheres")
    rendering = scene.render(160, 120, hfov_deg=50.0)
    Image.fromarray(rendering.rgb).save(folder / "scene.png")
    np.save(folder / "depth.npy", rendering.depth.astype(np.float32))
    options = JobOptions(depth_file=str(folder / "depth.npy"), fov=50.0, solid=False)
    kinds = ("ply", "glb", "obj", "npz")
    run_photo(folder / "scene.png", {kind: folder / f"scene.{kind}" for kind in kinds}, options)
    run_photo(folder / "scene.png", {"ply": folder / "points.ply"}, JobOptions(**{**vars(options), "points": True}))
    stl = run_photo(folder / "scene.png", {"stl": folder / "solid.stl"},
                    JobOptions(depth_file=options.depth_file, fov=50.0, width_mm=80.0, relief_mm=6.0, base_mm=1.0))
    return folder, scene, stl


@pytest.mark.parametrize("name", ["scene.ply", "scene.glb", "scene.obj"])
def test_mesh_vertices_and_faces_lie_on_the_true_surfaces(exported, name):
    folder, scene, _ = exported
    mesh = trimesh.load(folder / name, force="mesh", process=False)
    assert len(mesh.vertices) > 0.8 * 160 * 120  # all but the pixels along depth edges
    assert scene.distance_to_surface(mesh.vertices * GLTF_TO_OPENCV).max() < 1e-5  # metres
    centres = mesh.triangles_center * GLTF_TO_OPENCV
    assert np.percentile(scene.distance_to_surface(centres), 99) < 2e-3  # flat facets on curved spheres
    facing = np.einsum("ij,ij->i", mesh.face_normals * GLTF_TO_OPENCV, centres)
    assert (facing < 0).all()  # every triangle is wound to face the camera


def test_npz_and_point_cloud_hold_the_true_points(exported):
    folder, scene, _ = exported
    with np.load(folder / "scene.npz") as data:
        assert str(data["frame"]) == "opencv"
        assert scene.distance_to_surface(data["vertices"].astype(np.float64)).max() < 1e-5
    cloud = np.asarray(o3d.io.read_point_cloud(str(folder / "points.ply")).points)
    assert len(cloud) > 0.8 * 160 * 120  # all but the pixels along depth edges
    assert scene.distance_to_surface(cloud * GLTF_TO_OPENCV).max() < 1e-5


def test_solid_is_exactly_the_asked_size(exported):
    folder, _, stats = exported
    solid = trimesh.load(folder / "solid.stl")
    assert solid.is_watertight and solid.volume > 0
    np.testing.assert_allclose(solid.bounds, [[-40.0, -30.0, 0.0], [40.0, 30.0, 7.0]], atol=1e-4)
    assert stats["size_mm"] == pytest.approx([80.0, 60.0, 7.0], abs=1e-4)
