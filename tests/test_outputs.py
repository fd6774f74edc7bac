"""Writing a job's outputs: the result file's layout, all or none, permissions, full disks."""

import errno
import os
import pathlib
import shutil
from collections import namedtuple

import numpy as np
import pytest

from mesh.data import MeshData
from mesh.grid import grid_mesh
from mesh.solid import relief_solid
from ppd_core.errors import BadInputError, OutputError
from ppd_core.files.outputs import OutputSource, write_outputs
from ppd_core.files.result_file import read_result, result_bytes
from ppd_core.geometry.camera import Intrinsics, camera_record
from tests.mesh_helpers import lift_depth, step_depth

CAMERA = camera_record(Intrinsics(50.0, 50.0, 32.7, 24.0, 64, 48))


@pytest.fixture(scope="module")
def scene():
    return grid_mesh(lift_depth(step_depth(24, 32, near=1.0, far=2.0, column=16), focal=25.0))


@pytest.fixture(scope="module")
def photo():
    return np.random.default_rng(1).integers(0, 255, (48, 64, 3), dtype=np.uint8)


def write(outputs: dict, shape: MeshData, photo=None, geometry: str = "mesh", replace: bool = True):
    """write_outputs for outputs that all hold `shape` (or the depth map, for depth_png)."""
    photo = np.zeros((48, 64, 3), np.uint8) if photo is None else photo
    depth = np.full((24, 32), 1.5, np.float32)
    sources = {kind: OutputSource("depth" if kind == "depth_png" else geometry, shape, depth, photo, "/x/photo.jpg",
                                  CAMERA) for kind in outputs}
    return write_outputs({kind: pathlib.Path(path) for kind, path in outputs.items()}, sources, replace=replace)


def test_result_file_follows_the_architecture_table_and_reads_back(tmp_path, scene):
    path = tmp_path / "scene.npz"
    path.write_bytes(result_bytes(scene, "mesh", CAMERA, "/x/photo.jpg"))
    with np.load(path, allow_pickle=False) as data:
        assert str(data["format"]) == "ppd-npz-1" and str(data["kind"]) == "mesh" and str(data["frame"]) == "opencv"
        np.testing.assert_array_equal(data["vertices"], scene.vertices)
        assert data["faces"].dtype == np.int32 and data["vertices"].dtype == np.float32
        assert data["uvs"].dtype == np.float32 and data["colors"].dtype == np.uint8
        np.testing.assert_array_equal(data["image_size"], [64, 48])
        np.testing.assert_allclose(data["intrinsics"], [50.0, 50.0, 32.7, 24.0])
        assert float(data["camera_lens_mm"]) == pytest.approx(50.0 * 36.0 / 64) and str(data["camera_sensor_fit"]) == "HORIZONTAL"
        np.testing.assert_allclose(data["camera_shift"], [(32 - 32.7) / 64, 0.0])
    result = read_result(str(path))
    assert result.camera == CAMERA and result.image_path == "/x/photo.jpg"
    np.testing.assert_array_equal(result.faces, scene.faces)
    solid = relief_solid(step_depth(), width_mm=30.0, cell_mm=1.0)
    path.write_bytes(result_bytes(solid, "solid", CAMERA, ""))
    with np.load(path, allow_pickle=False) as data:
        assert str(data["kind"]) == "solid" and str(data["frame"]) == "print_mm" and "uvs" not in data


def test_result_files_that_break_the_layout_are_refused(tmp_path, scene):
    bad = MeshData(scene.vertices, scene.faces, frame="opencv")
    path = tmp_path / "bad.npz"
    path.write_bytes(result_bytes(bad, "solid", CAMERA, ""))
    with pytest.raises(BadInputError, match="bad.npz: a solid result must be in frame 'print_mm'"):
        read_result(str(path))
    with pytest.raises(BadInputError, match="missing.npz: result file not found"):
        read_result(str(tmp_path / "missing.npz"))
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(BadInputError, match="text.npz: not a readable NPZ"):
        read_result(str(tmp_path / "text.npz"))


def test_every_file_of_every_output_is_written_and_listed(tmp_path, scene, photo):
    outputs = {"obj": tmp_path / "a b.obj", "ply": tmp_path / "a.ply", "npz": tmp_path / "a.npz",
               "depth_png": tmp_path / "a_depth.png"}
    details, written = write(outputs, scene, photo)
    names = sorted(path.name for path in written)
    assert names == sorted(["a b.obj", "a_b.mtl", "a_b_texture.png", "a.ply", "a.npz", "a_depth.png",
                            "a_depth_preview.png"])
    assert sorted(p.name for p in tmp_path.iterdir()) == names  # no staging folder left
    assert details["obj"]["vertices"] == len(scene.vertices) and details["depth_png"]["size_px"] == [32, 24]


def test_a_failing_output_leaves_nothing_and_keeps_the_old_files(tmp_path, scene):
    (tmp_path / "keep.stl").write_bytes(b"old")
    bare = MeshData(scene.vertices, scene.faces)  # no UVs: the OBJ cannot be written
    with pytest.raises(Exception, match="texture"):
        write({"stl": tmp_path / "keep.stl", "obj": tmp_path / "bare.obj"}, bare)
    assert (tmp_path / "keep.stl").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.stl"]


def test_written_files_get_the_usual_permissions(tmp_path, scene):
    old = os.umask(0o022)
    try:
        write({"ply": tmp_path / "scene.ply"}, scene)
    finally:
        os.umask(old)
    assert (tmp_path / "scene.ply").stat().st_mode & 0o777 == 0o644


def test_an_unwritable_folder_or_a_full_disk_is_a_clear_output_error(tmp_path, scene, monkeypatch):
    with pytest.raises(OutputError, match="cannot write here"):
        write({"stl": tmp_path / "missing" / "a.stl"}, scene)

    def no_space(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(pathlib.Path, "write_bytes", no_space)
        with pytest.raises(OutputError, match=r"scene.stl: cannot write \(No space left on device\)"):
            write({"stl": tmp_path / "scene.stl"}, scene)
    assert list(tmp_path.iterdir()) == []
    # lib3mf would abort the process on a full disk, so the 3MF writer checks the space first
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda folder: usage(10**6, 10**6 - 1000, 1000))
    with pytest.raises(OutputError, match=r"scene.3mf: cannot write \(about \d+ KiB needed, 0 KiB free\)"):
        write({"3mf": tmp_path / "scene.3mf"}, relief_solid(step_depth(), cell_mm=5.0), geometry="solid")
    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_write_leaves_nothing_and_prints_nothing(tmp_path, scene, monkeypatch):
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
        write({"ply": tmp_path / "scene.ply", "npz": tmp_path / "scene.npz"}, scene)
    gc.collect()
    assert unraisable == [] and list(tmp_path.iterdir()) == []
