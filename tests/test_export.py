"""Every export format re-loads with its geometry, frame and texture; writes are atomic."""

import os

import numpy as np
import open3d as o3d
import pymeshlab
import pytest
import trimesh

from mesh.data import MeshData
from mesh.export import CameraInfo, atomic_files, export, output_files
from mesh.grid import grid_mesh
from mesh.solid import relief_solid
from ppd_core.errors import BadInputError, OutputError
from tests.mesh_fixtures import lift_depth, step_depth

CAMERA = CameraInfo(image_path="photo.jpg", image_size=(64, 48), intrinsics=(50.0, 50.0, 32.0, 24.0),
                    lens_mm=28.1, sensor_width_mm=36.0, shift=(0.01, -0.02))


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


def test_stl_and_3mf_hold_the_solid_in_millimetres(tmp_path):
    solid = relief_solid(step_depth(), width_mm=50.0, relief_mm=3.0, base_mm=1.0, cell_mm=1.0)
    export("stl", tmp_path / "a.stl", solid)
    export("3mf", tmp_path / "a.3mf", solid)
    stl = trimesh.load(tmp_path / "a.stl")
    assert stl.is_watertight and stl.volume > 0
    np.testing.assert_allclose(stl.bounds, solid.bounds(), atol=1e-4)
    assert (tmp_path / "a.stl").read_bytes()[:5] != b"solid"  # binary
    meshes = pymeshlab.MeshSet()
    meshes.load_new_mesh(str(tmp_path / "a.3mf"))
    loaded = meshes.current_mesh()
    assert loaded.face_number() == len(solid.faces)
    np.testing.assert_allclose(loaded.bounding_box().max(), solid.bounds()[1], atol=1e-4)


def test_scene_mesh_stl_is_z_up_millimetres(tmp_path, scene):
    export("stl", tmp_path / "scene.stl", scene)
    stl = trimesh.load(tmp_path / "scene.stl")
    # OpenCV z (forward, 1..2 m) becomes y in mm; OpenCV -y (up) becomes z
    assert stl.bounds[0, 1] == pytest.approx(1000.0, abs=0.1) and stl.bounds[1, 1] == pytest.approx(2000.0, abs=0.1)
    assert stl.bounds[1, 2] == pytest.approx(-scene.bounds()[0, 1] * 1000.0, abs=0.1)


def test_ply_mesh_and_points_load_in_open3d_in_the_gltf_frame(tmp_path, scene):
    export("ply", tmp_path / "mesh.ply", scene)
    loaded = o3d.io.read_triangle_mesh(str(tmp_path / "mesh.ply"))
    assert len(loaded.triangles) == len(scene.faces)
    np.testing.assert_allclose(np.asarray(loaded.vertices), gltf(scene.vertices), atol=1e-6)
    np.testing.assert_allclose(np.asarray(loaded.vertex_colors) * 255, scene.colors, atol=0.5)

    points = MeshData(scene.vertices, np.zeros((0, 3)), colors=scene.colors, normals=scene.normals)
    export("ply", tmp_path / "points.ply", points)
    cloud = o3d.io.read_point_cloud(str(tmp_path / "points.ply"))
    np.testing.assert_allclose(np.asarray(cloud.points), gltf(scene.vertices), atol=1e-6)
    np.testing.assert_allclose(np.asarray(cloud.normals), np.tile([0, 0, 1.0], (len(scene.vertices), 1)), atol=1e-6)
    np.testing.assert_allclose(np.asarray(cloud.colors) * 255, scene.colors, atol=0.5)


def test_obj_writes_obj_mtl_and_the_photo_as_texture(tmp_path, scene, photo):
    written = export("obj", tmp_path / "scene.obj", scene, texture=photo)
    assert written == output_files("obj", tmp_path / "scene.obj")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.mtl", "scene.obj", "scene_texture.png"]
    loaded = trimesh.load(tmp_path / "scene.obj", force="mesh", process=False)
    assert loaded.visual.kind == "texture"
    np.testing.assert_array_equal(np.asarray(loaded.visual.material.image.convert("RGB")), photo)
    np.testing.assert_allclose(loaded.vertices, gltf(scene.vertices), atol=1e-6)
    np.testing.assert_allclose(loaded.visual.uv, scene.uvs, atol=1e-6)
    # faces still face the camera, now at +z in glTF
    assert np.all(loaded.face_normals[:, 2] > 0)


def test_glb_embeds_the_texture(tmp_path, scene, photo):
    export("glb", tmp_path / "scene.glb", scene, texture=photo)
    loaded = trimesh.load(tmp_path / "scene.glb", force="mesh")
    assert loaded.visual.kind == "texture"
    image = loaded.visual.material.baseColorTexture
    np.testing.assert_array_equal(np.asarray(image.convert("RGB")), photo)
    assert len(loaded.faces) == len(scene.faces)
    np.testing.assert_allclose(loaded.bounds, np.sort(gltf(scene.bounds()), axis=0), atol=1e-6)


def test_npz_matches_the_architecture_table(tmp_path, scene):
    export("npz", tmp_path / "scene.npz", scene, camera=CAMERA)
    with np.load(tmp_path / "scene.npz", allow_pickle=False) as data:
        assert str(data["format"]) == "ppd-npz-1" and str(data["kind"]) == "mesh" and str(data["frame"]) == "opencv"
        np.testing.assert_array_equal(data["vertices"], scene.vertices)
        assert data["faces"].dtype == np.int32 and data["vertices"].dtype == np.float32
        assert data["uvs"].dtype == np.float32 and data["colors"].dtype == np.uint8
        assert os.path.isabs(str(data["image_path"]))
        np.testing.assert_array_equal(data["image_size"], [64, 48])
        np.testing.assert_allclose(data["intrinsics"], CAMERA.intrinsics)
        assert float(data["camera_lens_mm"]) == 28.1 and str(data["camera_sensor_fit"]) == "HORIZONTAL"
        np.testing.assert_allclose(data["camera_shift"], [0.01, -0.02])
    solid = relief_solid(step_depth(), width_mm=30.0, cell_mm=1.0)
    export("npz", tmp_path / "solid.npz", solid, camera=CAMERA)
    with np.load(tmp_path / "solid.npz", allow_pickle=False) as data:
        assert str(data["kind"]) == "solid" and str(data["frame"]) == "print_mm" and "uvs" not in data


def test_failed_write_leaves_nothing_and_keeps_the_old_file(tmp_path, scene):
    target = tmp_path / "keep.stl"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_files([target, tmp_path / "other.mtl"]) as temps:
            temps[0].write_bytes(b"new")
            raise RuntimeError("crash mid-write")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.stl"]


def test_obj_without_texture_coordinates_writes_none_of_its_files(tmp_path, scene):
    bare = MeshData(scene.vertices, scene.faces)
    with pytest.raises(OutputError, match="texture"):
        export("obj", tmp_path / "bare.obj", bare)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_folder_and_bad_requests_are_clear(tmp_path, scene):
    with pytest.raises(OutputError, match="cannot write"):
        export("stl", tmp_path / "missing" / "a.stl", scene)
    with pytest.raises(BadInputError, match="unknown output type"):
        export("fbx", tmp_path / "a.fbx", scene)
    with pytest.raises(BadInputError, match="point cloud"):
        export("stl", tmp_path / "a.stl", MeshData(scene.vertices, np.zeros((0, 3))))
    with pytest.raises(BadInputError, match="camera"):
        export("npz", tmp_path / "a.npz", scene)
    assert list(tmp_path.iterdir()) == []


def test_written_files_get_the_usual_permissions(tmp_path, scene):
    """Atomic writes go through a private temp file; the result must not stay owner-only."""
    old = os.umask(0o022)
    try:
        export("ply", tmp_path / "scene.ply", scene)
    finally:
        os.umask(old)
    assert (tmp_path / "scene.ply").stat().st_mode & 0o777 == 0o644


def test_3mf_keeps_the_locale_and_obj_names_may_be_unicode(tmp_path, scene, photo):
    import locale

    before = locale.setlocale(locale.LC_ALL)
    export("3mf", tmp_path / "solid.3mf", relief_solid(step_depth(), cell_mm=5.0))
    assert locale.setlocale(locale.LC_ALL) == before
    folder = tmp_path / "ünï çødé"
    folder.mkdir()
    locale.setlocale(locale.LC_ALL, "C")  # what pymeshlab used to leave behind
    try:
        obj, mtl, png = export("obj", folder / "phöto 1.obj", scene, texture=photo)
    finally:
        locale.setlocale(locale.LC_ALL, before)
    assert (mtl.name, png.name) == ("phöto_1.mtl", "phöto_1_texture.png")  # no blanks inside the OBJ
    assert "mtllib phöto_1.mtl" in obj.read_text(encoding="utf-8") and png.exists()
    assert len(trimesh.load(obj, force="mesh").faces) == len(scene.faces)
    meshes = pymeshlab.MeshSet()
    meshes.load_new_mesh(str(obj))
    assert list(meshes.current_mesh().textures()) == ["phöto_1_texture.png"]  # MeshLab finds it


def test_an_interrupted_npz_leaves_nothing_and_prints_nothing(tmp_path, scene, monkeypatch):
    import gc
    import sys

    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    real_write = np.lib.format.write_array
    calls = []

    def write_then_interrupt(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_write(*args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", write_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        export("npz", tmp_path / "scene.npz", scene, camera=CAMERA)
    gc.collect()
    assert unraisable == [] and list(tmp_path.iterdir()) == []


def test_mesh_arrays_of_the_wrong_shape_or_range_are_refused(tmp_path):
    with pytest.raises(BadInputError, match=r"vertices must be \(N, 3\)"):
        MeshData(vertices=np.zeros((3, 2)), faces=np.zeros((1, 3), np.int32))
    with pytest.raises(BadInputError, match="faces index vertices 0..5, but there are 3"):
        MeshData(vertices=np.zeros((3, 3)), faces=np.array([[0, 1, 5]]))
    assert MeshData(vertices=np.zeros((2, 4, 3)), faces=np.zeros((0, 3))).vertices.shape == (8, 3)
    empty = MeshData(vertices=np.zeros((0, 3)), faces=np.zeros((0, 3)))
    with pytest.raises(BadInputError, match="empty.ply: nothing to write"):
        export("ply", tmp_path / "empty.ply", empty)
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_is_a_clear_output_error_and_leaves_nothing(tmp_path, scene, monkeypatch):
    import errno
    import pathlib
    import shutil
    from collections import namedtuple

    def no_space(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(pathlib.Path, "write_bytes", no_space)
        with pytest.raises(OutputError, match=r"scene.stl: cannot write \(No space left on device\)"):
            export("stl", tmp_path / "scene.stl", scene)
    assert list(tmp_path.iterdir()) == []
    # lib3mf would abort the process on a full disk, so the 3MF writer checks the space first
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda folder: usage(10**6, 10**6 - 1000, 1000))
    with pytest.raises(OutputError, match=r"scene.3mf: cannot write \(about \d+ KiB needed, 0 KiB free\)"):
        export("3mf", tmp_path / "scene.3mf", relief_solid(step_depth(), cell_mm=5.0))
    assert list(tmp_path.iterdir()) == []


def test_a_missing_texture_file_is_a_clear_error(tmp_path, scene):
    with pytest.raises(BadInputError, match="gone.png: cannot read the texture image"):
        export("glb", tmp_path / "scene.glb", scene, texture=tmp_path / "gone.png")
    assert list(tmp_path.iterdir()) == []
