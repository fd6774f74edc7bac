"""Every format writer's bytes re-load with their geometry, frame and texture (writing files
all or none is tested in test_outputs.py)."""

from pathlib import Path

import numpy as np
import open3d as o3d
import pymeshlab
import pytest
import trimesh

from mesh.data import MeshData, MeshError
from mesh.export import STL_RECORD, glb_bytes, obj_files, ply_bytes, print_frame, stl_bytes, threemf_bytes
from mesh.grid import grid_mesh
from mesh.solid import relief_solid
from tests.mesh_helpers import lift_depth, step_depth


@pytest.fixture(scope="module")
def scene():
    depth = step_depth(24, 32, near=1.0, far=2.0, column=16)
    return grid_mesh(lift_depth(depth, focal=25.0))


@pytest.fixture(scope="module")
def photo():
    rng = np.random.default_rng(1)
    return rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)


def gltf(vertices):
    """OpenCV camera frame -> glTF (x, -y, -z)."""
    return vertices * np.float32([1, -1, -1])


def save(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_stl_and_3mf_hold_the_solid_in_millimetres(tmp_path):
    solid = relief_solid(step_depth(), width_mm=50.0, relief_mm=3.0, base_mm=1.0, cell_mm=1.0)
    stl_data = stl_bytes(solid)
    stl = trimesh.load(save(tmp_path / "a.stl", stl_data))
    assert stl.is_watertight and stl.volume > 0
    np.testing.assert_allclose(stl.bounds, solid.bounds(), atol=1e-4)
    assert stl_data[:5] != b"solid"  # binary
    meshes = pymeshlab.MeshSet()
    meshes.load_new_mesh(str(save(tmp_path / "a.3mf", threemf_bytes(solid))))
    loaded = meshes.current_mesh()
    assert loaded.face_number() == len(solid.faces)
    np.testing.assert_allclose(loaded.bounding_box().max(), solid.bounds()[1], atol=1e-4)


def test_stl_records_match_trimesh_s_own_exporter(scene):
    from trimesh.exchange.stl import export_stl

    ours = bytes(stl_bytes(scene))
    reference = export_stl(print_frame(scene).to_trimesh())
    assert len(ours) == len(reference) == 84 + 50 * len(scene.faces)
    records, expected = (np.frombuffer(data, STL_RECORD, offset=84) for data in (ours, reference))
    assert ours[80:84] == reference[80:84] and np.array_equal(records["corners"], expected["corners"])
    np.testing.assert_allclose(records["normal"], expected["normal"], atol=1e-6)
    assert not records["attribute"].any()


def test_scene_mesh_stl_is_z_up_millimetres(tmp_path, scene):
    stl = trimesh.load(save(tmp_path / "scene.stl", stl_bytes(scene)))
    # OpenCV z (forward, 1..2 m) becomes y in mm; OpenCV -y (up) becomes z
    assert stl.bounds[0, 1] == pytest.approx(1000.0, abs=0.1) and stl.bounds[1, 1] == pytest.approx(2000.0, abs=0.1)
    assert stl.bounds[1, 2] == pytest.approx(-scene.bounds()[0, 1] * 1000.0, abs=0.1)


def test_ply_mesh_and_points_load_in_open3d_in_the_gltf_frame(tmp_path, scene):
    loaded = o3d.io.read_triangle_mesh(str(save(tmp_path / "mesh.ply", ply_bytes(scene))))
    assert len(loaded.triangles) == len(scene.faces)
    np.testing.assert_allclose(np.asarray(loaded.vertices), gltf(scene.vertices), atol=1e-6)
    np.testing.assert_allclose(np.asarray(loaded.vertex_colors) * 255, scene.colors, atol=0.5)

    points = MeshData(scene.vertices, np.zeros((0, 3)), colors=scene.colors, normals=scene.normals)
    cloud = o3d.io.read_point_cloud(str(save(tmp_path / "points.ply", ply_bytes(points))))
    np.testing.assert_allclose(np.asarray(cloud.points), gltf(scene.vertices), atol=1e-6)
    np.testing.assert_allclose(np.asarray(cloud.normals), np.tile([0, 0, 1.0], (len(scene.vertices), 1)), atol=1e-6)
    np.testing.assert_allclose(np.asarray(cloud.colors) * 255, scene.colors, atol=0.5)
    bare = trimesh.load(save(tmp_path / "bare.ply", ply_bytes(MeshData(scene.vertices, np.zeros((0, 3))))))
    np.testing.assert_allclose(bare.vertices, gltf(scene.vertices), atol=1e-6)


def test_obj_writes_obj_mtl_and_the_photo_as_texture(tmp_path, scene, photo):
    obj, mtl, png = obj_files(scene, photo, "scene.mtl", "scene_texture.png")
    for name, data in (("scene.obj", obj), ("scene.mtl", mtl), ("scene_texture.png", png)):
        save(tmp_path / name, data)
    loaded = trimesh.load(tmp_path / "scene.obj", force="mesh", process=False)
    assert loaded.visual.kind == "texture"
    np.testing.assert_array_equal(np.asarray(loaded.visual.material.image.convert("RGB")), photo)
    np.testing.assert_allclose(loaded.vertices, gltf(scene.vertices), atol=1e-6)
    np.testing.assert_allclose(loaded.visual.uv, scene.uvs, atol=1e-6)
    # faces still face the camera, now at +z in glTF
    assert np.all(loaded.face_normals[:, 2] > 0)


def test_glb_embeds_the_texture_or_keeps_vertex_colours(tmp_path, scene, photo):
    loaded = trimesh.load(save(tmp_path / "scene.glb", glb_bytes(scene, photo)), force="mesh")
    assert loaded.visual.kind == "texture"
    image = loaded.visual.material.baseColorTexture
    np.testing.assert_array_equal(np.asarray(image.convert("RGB")), photo)
    assert len(loaded.faces) == len(scene.faces)
    np.testing.assert_allclose(loaded.bounds, np.sort(gltf(scene.bounds()), axis=0), atol=1e-6)
    plain = trimesh.load(save(tmp_path / "plain.glb", glb_bytes(scene)), force="mesh")
    assert plain.visual.kind == "vertex" and len(plain.faces) == len(scene.faces)


def test_writers_refuse_what_their_format_cannot_hold(scene, tmp_path):
    cloud = MeshData(scene.vertices, np.zeros((0, 3)))
    for writer in (stl_bytes, threemf_bytes, glb_bytes):
        with pytest.raises(MeshError, match="point cloud"):
            writer(cloud)
    with pytest.raises(MeshError, match="texture"):
        obj_files(MeshData(scene.vertices, scene.faces), None, "a.mtl", "a_texture.png")
    with pytest.raises(MeshError, match="nothing to write"):
        ply_bytes(MeshData(vertices=np.zeros((0, 3)), faces=np.zeros((0, 3))))
    with pytest.raises(MeshError, match="gone.png: cannot read the texture image"):
        glb_bytes(scene, tmp_path / "gone.png")


def test_3mf_keeps_the_locale_and_obj_names_may_be_unicode(tmp_path, scene, photo):
    import locale

    before = locale.setlocale(locale.LC_ALL)
    threemf_bytes(relief_solid(step_depth(), cell_mm=5.0))
    assert locale.setlocale(locale.LC_ALL) == before
    folder = tmp_path / "ünï çødé"
    folder.mkdir()
    locale.setlocale(locale.LC_ALL, "C")  # what pymeshlab used to leave behind
    try:
        obj, mtl, png = obj_files(scene, photo, "phöto_1.mtl", "phöto_1_texture.png")
    finally:
        locale.setlocale(locale.LC_ALL, before)
    assert "mtllib phöto_1.mtl" in obj.decode("utf-8")
    for name, data in (("phöto 1.obj", obj), ("phöto_1.mtl", mtl), ("phöto_1_texture.png", png)):
        save(folder / name, data)
    assert len(trimesh.load(folder / "phöto 1.obj", force="mesh").faces) == len(scene.faces)
    meshes = pymeshlab.MeshSet()
    meshes.load_new_mesh(str(folder / "phöto 1.obj"))
    assert list(meshes.current_mesh().textures()) == ["phöto_1_texture.png"]  # MeshLab finds it


def test_mesh_arrays_of_the_wrong_shape_or_range_are_refused():
    with pytest.raises(MeshError, match=r"vertices must be \(N, 3\)"):
        MeshData(vertices=np.zeros((3, 2)), faces=np.zeros((1, 3), np.int32))
    with pytest.raises(MeshError, match="faces index vertices 0..5, but there are 3"):
        MeshData(vertices=np.zeros((3, 3)), faces=np.array([[0, 1, 5]]))
    assert MeshData(vertices=np.zeros((2, 4, 3)), faces=np.zeros((0, 3))).vertices.shape == (8, 3)
