"""The completeness check of existing outputs (`ppd_core.files.output_check`): every file the
pipeline writes passes; the same files cut short, or damaged, do not."""

import json
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from ppd_core.files.output_check import CHECKS, MISSING, output_problem
from ppd_core.files.outputs import ENCODERS
from ppd_core.options import OUTPUT_KINDS, JobOptions, output_files
from ppd_core.pipeline import run_photo

H, W = 48, 64


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """{kind: path} of one output of every kind written by the pipeline, and a point-cloud PLY."""
    root = tmp_path_factory.mktemp("outputs")
    photo = root / "photo.png"
    Image.fromarray(np.random.default_rng(5).integers(0, 255, (H, W, 3), dtype=np.uint8)).save(photo)
    depth = np.full((H, W), 2.0, np.float32)
    depth[10:35, 15:45] = 1.0
    np.save(root / "depth.npy", depth)
    options = JobOptions(depth_file=str(root / "depth.npy"))
    outputs = {kind: root / "out" / f"photo{spec.suffix}" for kind, spec in OUTPUT_KINDS.items()}
    (root / "out").mkdir()
    run_photo(photo, outputs, options)
    points = root / "points" / "photo.ply"
    points.parent.mkdir()
    run_photo(photo, {"ply": points}, JobOptions(depth_file=str(root / "depth.npy"), points=True))
    return outputs, points


def test_every_kind_has_a_check_and_its_written_outputs_are_complete(written):
    outputs, points = written
    assert set(CHECKS) == set(OUTPUT_KINDS) == set(ENCODERS)
    assert {kind: output_problem(kind, path) for kind, path in outputs.items()} == dict.fromkeys(OUTPUT_KINDS)
    assert output_problem("ply", points) is None
    assert output_problem("stl", outputs["stl"].with_name("other.stl")) == MISSING


def cut(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


@pytest.mark.parametrize("kind", list(OUTPUT_KINDS))
def test_every_file_cut_in_half_or_by_its_last_byte_is_found_out(written, kind, tmp_path):
    outputs, _ = written
    for number, original in enumerate(output_files(kind, outputs[kind])):
        data = original.read_bytes()
        text = original.suffix in (".obj", ".mtl", ".json")  # a trailing newline is no loss: cut before it
        lengths = [len(data) // 2, len(data.rstrip() if text else data) - 1]
        for length in lengths:
            folder = tmp_path / f"{number}-{length}"
            folder.mkdir()
            for file in output_files(kind, outputs[kind]):
                (folder / file.name).write_bytes(file.read_bytes())
            cut(folder / original.name, length)
            problem = output_problem(kind, folder / outputs[kind].name)
            assert problem is not None and problem != MISSING, (original.name, length)


def test_the_words_say_what_is_wrong(written, tmp_path):
    outputs, points = written
    copy = tmp_path / "a.stl"
    copy.write_bytes(outputs["stl"].read_bytes()[:1000])
    triangles = (outputs["stl"].stat().st_size - 84) // 50
    assert output_problem("stl", copy) == f"1000 bytes, but its header counts {triangles} triangles " \
                                          f"({outputs['stl'].stat().st_size} bytes): cut short"
    glb = tmp_path / "a.glb"
    glb.write_bytes(outputs["glb"].read_bytes()[:500])
    assert output_problem("glb", glb) == f"cut short: 500 of {outputs['glb'].stat().st_size} bytes (by its header)"
    npz = tmp_path / "a.npz"
    npz.write_bytes(outputs["npz"].read_bytes()[:-30])
    assert output_problem("npz", npz).startswith("not a readable zip archive")
    cloud = tmp_path / "c.ply"
    cloud.write_bytes(points.read_bytes()[:-7])
    assert output_problem("ply", cloud).startswith("cut short")
    preview = tmp_path / "a_preview.png"
    preview.write_bytes(b"not a picture at all")
    assert output_problem("preview", preview).startswith("cut short: no PNG end chunk")
    folder = tmp_path / "b.stl"
    folder.mkdir()
    assert output_problem("stl", folder) == "b.stl: is a folder"


def test_a_damaged_member_of_a_zip_and_a_missing_side_file_are_found_out(written, tmp_path):
    outputs, _ = written
    data = bytearray(outputs["3mf"].read_bytes())
    data[200] ^= 0xFF  # inside the first member's compressed bytes: its CRC no longer holds
    damaged = tmp_path / "a.3mf"
    damaged.write_bytes(bytes(data))
    assert output_problem("3mf", damaged) is not None
    for file in output_files("obj", outputs["obj"]):
        (tmp_path / file.name).write_bytes(file.read_bytes())
    (tmp_path / "photo_texture.png").unlink()
    assert output_problem("obj", tmp_path / "photo.obj") == "photo_texture.png: not there"


def test_an_obj_cut_at_the_end_of_a_line_is_found_out_by_its_counts(written, tmp_path):
    outputs, _ = written
    for file in output_files("obj", outputs["obj"]):
        (tmp_path / file.name).write_bytes(file.read_bytes())
    obj = tmp_path / "photo.obj"
    text = obj.read_bytes()
    obj.write_bytes(text[:text.rfind(b"\n", 0, len(text) - 100) + 1])
    assert "cut short" in output_problem("obj", obj) and "faces" in output_problem("obj", obj)


def test_ascii_stl_and_ply_from_elsewhere_are_checked_too(tmp_path):
    box = trimesh.creation.box()
    stl = tmp_path / "box.stl"
    stl.write_bytes(trimesh.exchange.stl.export_stl_ascii(box).encode())
    assert output_problem("stl", stl) is None
    cut(stl, stl.stat().st_size // 2)
    assert "endsolid" in output_problem("stl", stl)
    ply = tmp_path / "box.ply"
    ply.write_bytes(trimesh.exchange.ply.export_ply(box, encoding="ascii"))
    assert output_problem("ply", ply) is None
    lines = ply.read_bytes().splitlines(keepends=True)
    ply.write_bytes(b"".join(lines[:-3]))
    assert output_problem("ply", ply).startswith("cut short")


def test_a_camera_json_without_its_keys_is_not_complete(written, tmp_path):
    outputs, _ = written
    for file in output_files("depth_exr", outputs["depth_exr"]):
        (tmp_path / file.name).write_bytes(file.read_bytes())
    camera = tmp_path / "photo_depth_camera.json"
    record = json.loads(camera.read_text())
    del record["fx"]
    camera.write_text(json.dumps(record))
    assert output_problem("depth_exr", tmp_path / "photo_depth.exr") == "photo_depth_camera.json: lacks fx"
