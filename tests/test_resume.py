"""--skip-existing resumes a batch: what is complete is kept as it is, what is missing is
written, what was cut short or cannot be read is written anew; in-process and --subprocess."""

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from ppd_core.batch import read_manifest
from ppd_core.errors import BadInputError
from ppd_core.files.output_check import output_problem
from ppd_core.mesh import main
from ppd_core.protocol import parse_request

H, W = 48, 64


@pytest.fixture
def scene(tmp_path):
    """Two photos and a metric depth map (a box before a wall) that suits both."""
    rng = np.random.default_rng(11)
    photos = []
    for name in ("a.png", "b.png"):
        photos.append(tmp_path / name)
        Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(photos[-1])
    depth = np.full((H, W), 2.0, np.float32)
    depth[10:35, 15:45] = 1.0
    np.save(tmp_path / "depth.npy", depth)
    return photos, tmp_path / "depth.npy"


def stamp(*paths: Path) -> dict:
    """Each file's inode and modification time: the same file, untouched, has the same stamp."""
    return {path: (path.stat().st_ino, path.stat().st_mtime_ns) for path in paths}


@pytest.mark.parametrize("worker", [False, True], ids=["in-process", "subprocess"])
def test_adding_an_output_kind_writes_only_the_new_one(scene, tmp_path, capsys, worker):
    photos, depth = scene
    out = tmp_path / "out"
    first = [str(photos[0]), "--depth", str(depth), "--quiet", "-o", str(out)]
    assert main(first + ["--stl"]) == 0
    before = stamp(out / "a.stl")
    assert main(first + ["--stl", "--glb"]) == 1  # without --skip-existing: refused, as before
    assert "a.stl: already exists" in capsys.readouterr().err and not (out / "a.glb").exists()

    resumed = first + ["--stl", "--glb", "--skip-existing"] + (["--subprocess"] if worker else [])
    assert main(resumed) == 0
    captured = capsys.readouterr()
    assert stamp(out / "a.stl") == before  # the complete STL is not rewritten
    assert output_problem("glb", out / "a.glb") is None and len(trimesh.load(out / "a.glb", force="mesh").faces) > 0
    assert f"{out / 'a.stl'}: kept, complete from an earlier run" in captured.out
    assert f"{out / 'a.glb'}: " in captured.out and "faces" in captured.out

    assert main(resumed + ["--depth-exr"]) == 0  # a third kind: the two before are kept
    assert stamp(out / "a.stl") == before and (out / "a_depth.exr").is_file()
    capsys.readouterr()
    assert main([arg for arg in resumed if arg != "--quiet"] + ["--depth-exr"]) == 0  # nothing left to do
    assert f"{photos[0]}: skipped, its outputs are all complete" in capsys.readouterr().out
    assert stamp(out / "a.stl") == before


def test_the_manifest_says_what_was_kept_written_and_redone(scene, tmp_path, capsys):
    photos, depth = scene
    out = tmp_path / "out"
    for photo in photos:  # --depth names one photo's depth: each photo on its own
        assert main([str(photo), "--depth", str(depth), "--stl", "--quiet", "-o", str(out)]) == 0
    (out / "b.stl").write_bytes((out / "b.stl").read_bytes()[:1000])
    manifest = tmp_path / "m.jsonl"
    for photo in photos:
        code = main([str(photo), "--depth", str(depth), "--stl", "--npz", "--skip-existing", "--quiet",
                     "-o", str(out), "--manifest", str(manifest)])
        assert code == 0
    a, b = read_manifest(manifest)
    assert a["status"] == "done" and a["kept"] == ["stl"] and "redone" not in a
    assert b["status"] == "done" and "kept" not in b and list(b["redone"]) == ["stl"]
    assert b["redone"]["stl"].startswith("1000 bytes, but its header counts") and "cut short" in b["redone"]["stl"]
    assert a["outputs"] == {"stl": str(out / "a.stl"), "npz": str(out / "a.npz")}
    assert all(output_problem(kind, Path(path)) is None for record in (a, b) for kind, path in record["outputs"].items())


def test_cut_short_and_unreadable_outputs_are_redone_and_the_rest_kept(scene, tmp_path, capsys):
    photos, depth = scene
    out = tmp_path / "out"
    run = [str(photos[0]), "--depth", str(depth), "--stl", "--glb", "--3mf", "--npz", "--obj", "--preview",
           "--quiet", "-o", str(out)]
    assert main(run) == 0
    sizes = {name: (out / name).stat().st_size for name in ("a.stl", "a.glb", "a.3mf")}
    for name in sizes:  # cut short, as by a copy that was interrupted
        with open(out / name, "r+b") as file:
            file.truncate(sizes[name] // 3)
    (out / "a_texture.png").write_bytes(b"\x89PNG\r\n\x1a\n but nothing a decoder can read")  # unreadable
    kept = stamp(out / "a.npz", out / "a_preview.png")
    capsys.readouterr()

    assert main(run + ["--skip-existing", "--manifest", str(tmp_path / "m.jsonl")]) == 0  # no --force needed
    out_text = capsys.readouterr().out
    assert stamp(out / "a.npz", out / "a_preview.png") == kept
    for kind, name in (("stl", "a.stl"), ("glb", "a.glb"), ("3mf", "a.3mf"), ("obj", "a.obj")):
        assert output_problem(kind, out / name) is None, name
    assert {name: (out / name).stat().st_size for name in ("a.stl", "a.glb")} == {  # whole again
        name: sizes[name] for name in ("a.stl", "a.glb")}
    assert trimesh.load(out / "a.stl").is_watertight
    with zipfile.ZipFile(out / "a.3mf") as archive:
        assert archive.testzip() is None
    Image.open(out / "a_texture.png").load()
    record = read_manifest(tmp_path / "m.jsonl")[-1]
    assert record["kept"] == ["npz", "preview"] and set(record["redone"]) == {"stl", "glb", "3mf", "obj"}
    assert record["redone"]["obj"].startswith("a_texture.png: ")
    assert out_text.count("written anew: the old one was broken") == 4
    assert not [name for name in os.listdir(out) if name.startswith(".ppd-staging")]


def test_a_kept_output_still_decides_what_the_preview_shows(scene, tmp_path):
    photos, depth = scene
    out = tmp_path / "out"
    base = [str(photos[0]), "--depth", str(depth), "--quiet", "-o", str(out)]
    assert main(base + ["--stl", "--preview"]) == 0  # the preview of the solid the STL holds
    solid_preview = (out / "a_preview.png").read_bytes()
    (out / "a_preview.png").unlink()
    assert main(base + ["--stl", "--preview", "--skip-existing"]) == 0
    assert (out / "a_preview.png").read_bytes() == solid_preview  # not the scene mesh's


def test_a_worker_job_may_keep_only_outputs_it_names():
    job = b'{"type": "job", "id": "1", "photo": "a.jpg", "outputs": {"stl": "a.stl", "glb": "a.glb"}, '
    assert parse_request(job + b'"keep": ["stl"]}')["keep"] == ["stl"]
    with pytest.raises(BadInputError, match="'keep'"):
        parse_request(job + b'"keep": ["ply"]}')
    with pytest.raises(BadInputError, match="'keep'"):
        parse_request(job + b'"keep": "stl"}')


def test_the_pipeline_refuses_to_keep_every_output(scene, tmp_path):
    from ppd_core.options import JobOptions
    from ppd_core.pipeline import run_photo

    photos, depth = scene
    with pytest.raises(BadInputError, match="something must be written"):
        run_photo(photos[0], {"stl": tmp_path / "a.stl"}, JobOptions(depth_file=str(depth)), keep=["stl"])
