"""The one image-size gate: photo, depth map, metric reference and texture files whose
headers claim more pixels than allowed are refused in one line before any decoder runs
(files built by tests/hostile_files.py, a few hundred bytes each)."""

import os
import time

import cv2
import numpy as np
import pytest
from PIL import Image

from mesh.data import MeshData, MeshError
from mesh.export import glb_bytes
from mesh.image_size import MAX_IMAGE_PIXELS, check_image_size, image_size
from ppd_core.errors import BadInputError
from ppd_core.files.depth_file import read_depth_file
from ppd_core.files.photo import load_image
from ppd_core.mesh import main
from tests.hostile_files import exr_claiming, folder_state, npy_claiming, npz_claiming, png_claiming, tiff_claiming

ONE_LINE_LIMIT = r"more than the 100 MP limit of an image"

OVERSIZED = {  # name -> builder of a file past the limit; over 1 GP, OpenCV's own cap fires first without the gate
    "huge.png": lambda path: png_claiming(path, 40000, 40000),
    "huge.tif": lambda path: tiff_claiming(path, 40000, 40000),
    "rgb_float.tif": lambda path: tiff_claiming(path, 12000, 9000, channels=3),  # Pillow cannot decode this TIFF
    "huge.exr": lambda path: exr_claiming(path, 40000, 40000),
    "huge.npy": lambda path: npy_claiming(path, 20000, 20000),
}


def test_the_gate_reads_true_sizes_from_files_the_libraries_write(tmp_path):
    os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")
    depth = np.ones((5, 7), np.float32)
    written = {"grey.png": np.ones((5, 7), np.uint16), "depth.tif": depth, "rgb.tif": np.dstack([depth] * 3),
               "depth.exr": depth}
    for name, values in written.items():
        assert cv2.imwrite(str(tmp_path / name), values), name
    Image.new("RGB", (7, 5)).save(tmp_path / "photo.jpg")
    np.save(tmp_path / "depth.npy", depth)
    for name in [*written, "photo.jpg"]:
        assert image_size(tmp_path / name) == (7, 5), name
    assert image_size(tmp_path / "depth.npy") == (35, 1)
    assert check_image_size(tmp_path / "depth.exr") == (7, 5)
    (tmp_path / "notes.txt").write_text("no image")
    assert image_size(tmp_path / "notes.txt") is None


@pytest.mark.parametrize("name", list(OVERSIZED))
def test_an_oversized_depth_file_is_one_line_before_any_decoding(tmp_path, name):
    path = OVERSIZED[name](tmp_path / name)
    start = time.perf_counter()
    with pytest.raises(BadInputError, match=ONE_LINE_LIMIT) as refused:
        read_depth_file(path, "metric")
    assert time.perf_counter() - start < 2
    message = str(refused.value)
    assert message.startswith(f"{path}: ") and "\n" not in message and "OpenCV" not in message


@pytest.mark.parametrize("name", ["huge.png", "huge.tif", "rgb_float.tif"])
def test_an_oversized_photo_is_the_same_one_line(tmp_path, name):
    path = OVERSIZED[name](tmp_path / name)
    with pytest.raises(BadInputError, match=f"{name}: .*{ONE_LINE_LIMIT}"):
        load_image(path)


def test_just_over_the_limit_is_refused_with_its_size(tmp_path):
    path = png_claiming(tmp_path / "big.png", 12000, 8400)  # 100.8 MP, under Pillow's own bomb limit
    assert 12000 * 8400 > MAX_IMAGE_PIXELS
    with pytest.raises(BadInputError, match=r"big\.png: 12000x8400 is 101 MP, " + ONE_LINE_LIMIT):
        load_image(path)


def test_a_texture_file_goes_through_the_same_gate(tmp_path):
    scene = MeshData(np.array([[0, 0, 1], [1, 0, 1], [0, 1, 1]], np.float32), np.array([[0, 1, 2]], np.int32),
                     uvs=np.array([[0, 0], [1, 0], [0, 1]], np.float32))
    path = png_claiming(tmp_path / "texture.png", 40000, 40000)
    with pytest.raises(MeshError, match=f"texture.png: .*{ONE_LINE_LIMIT}"):
        glb_bytes(scene, path)


@pytest.mark.parametrize("name", ["huge.png", "huge.tif", "huge.exr"])
def test_an_oversized_reference_or_depth_fails_the_photo_in_one_line_writing_nothing(tmp_path, capsys, name):
    """--align-to and --depth through the command: exit 1, one line naming the file, nothing written."""
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(photo)
    np.save(tmp_path / "depth.npy", np.linspace(0, 1, 48 * 64, dtype=np.float32).reshape(48, 64))
    huge = OVERSIZED[name](tmp_path / name)
    before = folder_state(tmp_path)
    for flags in (["--depth", str(tmp_path / "depth.npy"), "--depth-kind", "normalized", "--align-to", str(huge)],
                  ["--depth", str(huge)]):
        assert main([str(photo), "--stl", "--quiet", *flags]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and name in err[0] and "more than the 100 MP limit" in err[0], err
        assert "internal error" not in err[0]
    assert folder_state(tmp_path) == before


@pytest.mark.parametrize("name,builder,problem", [
    ("declared.npz", lambda path: npz_claiming(path, 10**6, 10**6), "'depth': an array of 1000000000000 values"),
    ("deflated.npz", lambda path: npz_claiming(path, 48 * 200, 64 * 200, compressed_data=True),  # 0.5 MB on disk
     "'depth': an array of 122880000 values is 123 MP"),
    ("short.npz", lambda path: npz_claiming(path, 48, 64), "a damaged result file"),
])
def test_a_result_file_that_unpacks_to_gigabytes_or_nothing_is_one_line(tmp_path, capsys, name, builder, problem):
    """--depth result.npz (re-meshing) and the Blender importer read result files: each member
    is sized from its header before it is unpacked."""
    from ppd_core.files.result_file import read_result

    photo = tmp_path / "photo.png"
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(photo)
    path = builder(tmp_path / name)
    before = folder_state(tmp_path)
    start = time.perf_counter()
    assert main([str(photo), "--stl", "--quiet", "--depth", str(path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and name in err[0] and problem in err[0] and "internal error" not in err[0], err
    assert time.perf_counter() - start < 5 and folder_state(tmp_path) == before
    if "damaged" not in problem:
        with pytest.raises(BadInputError, match=problem):
            read_result(path)
