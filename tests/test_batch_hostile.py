"""Naming photos the hostile way: folder links that loop, one photo by several paths, a
manifest that names an input, --ray without Ray Data. Each ends in the right photos or one
line, within seconds, with nothing half-written and no input changed."""

import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ppd_core.batch import find_photos, run_batch
from ppd_core.errors import OutputError
from ppd_core.mesh import main
from ppd_core.options import JobOptions
from tests.batch_helpers import H, W, small_run
from tests.hostile_files import folder_state


def photo_at(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(len(str(path))).integers(0, 255, (H, W, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def looped(tmp_path, monkeypatch) -> list[Path]:
    """shoot/ with photos at three depths, two links back up (a loop each), a second link to a
    subfolder, and a link to a folder outside whose photo belongs to the shoot."""
    monkeypatch.chdir(tmp_path)
    photos = [photo_at(Path(name)) for name in ("shoot/a.png", "shoot/day/b.png", "shoot/day/deep/c.png",
                                                "elsewhere/d.png")]
    Path("shoot/day/deep/up").symlink_to("../..", target_is_directory=True)     # back to shoot/
    Path("shoot/day/again").symlink_to("..", target_is_directory=True)          # back to shoot/
    Path("shoot/twin").symlink_to("day", target_is_directory=True)              # day/ a second time
    Path("shoot/outside").symlink_to("../elsewhere", target_is_directory=True)  # a real folder, once
    return photos


def found_quickly(arguments, recursive=False):
    notes = []
    start = time.perf_counter()
    photos, problems = find_photos(arguments, recursive, on_note=notes.append)
    assert time.perf_counter() - start < 5, "the search went round the loop"
    assert problems == []
    return photos, notes


@pytest.mark.parametrize("arguments,recursive", [
    (["shoot/**/*.png"], False), (["shoot"], True), (["shoot/**"], False), (["**/*.png"], False),
])
def test_every_way_of_naming_photos_visits_each_real_folder_once_and_stops_at_loops(looped, arguments, recursive):
    photos, notes = found_quickly(arguments, recursive)
    resolved = sorted(photo.resolve() for photo in photos)
    assert resolved == sorted(photo.resolve() for photo in looped), photos
    assert any("a link back to" in note and "(a loop); not followed" in note for note in notes), notes
    assert all(note.count("\n") == 0 for note in notes)


def test_glob_parts_after_a_loop_and_hidden_folders_follow_globs_rules(looped):
    Path("shoot/.hidden").mkdir()
    photo_at(Path("shoot/.hidden/e.png"))
    assert found_quickly(["shoot/*/deep/*.png"])[0] == [Path("shoot/day/deep/c.png")]
    assert found_quickly(["shoot/.hidden/*.png"])[0] == [Path("shoot/.hidden/e.png")]  # named: found
    assert Path("shoot/.hidden/e.png") not in found_quickly(["shoot/**/*.png"])[0]      # `**` skips hidden


def test_the_command_says_the_loop_in_one_line_and_runs_each_photo_once(looped, small_weights, capsys):
    code = main(["shoot/**/*.png", "--stl", "--quiet", "--no-manifest", *small_run(small_weights)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    notes = captured.err.strip().splitlines()
    assert notes and all(line.startswith("ppd-mesh: shoot/") and "not followed" in line for line in notes)
    assert "4 photos: 4 done" in captured.out
    assert sorted(path.resolve() for path in Path(".").rglob("*.stl")) == sorted(
        photo.resolve().with_suffix(".stl") for photo in looped)


def test_a_photo_named_by_different_paths_runs_once(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    photo = photo_at(Path("a/x.png"))
    np.save("depth.npy", np.full((H, W), 2.0, np.float32))
    Path("link.png").symlink_to(photo)
    Path("list.txt").write_text("a/x.png\na/../a/x.png\n")
    for names in (["a/x.png", "a/../a/x.png"], ["a/x.png", "link.png", "@list.txt"]):
        assert main([*names, "--stl", "--depth", "depth.npy", "--preset", "tabletop"]) == 0, capsys.readouterr().err
        captured = capsys.readouterr()
        assert "already the output" not in captured.err and captured.out.count("a/x.stl") == 1
        assert Path("a/x.stl").is_file() and not Path("link.stl").exists()
        Path("a/x.stl").unlink()
    records = list(run_batch(["a/x.png", "a/./x.png", "link.png"], ["stl"],
                             JobOptions(depth_file="depth.npy", preset="tabletop")))
    assert [record.status for record in records] == ["done"]


@pytest.mark.parametrize("format", ["BMP", "JPEG"])
def test_a_manifest_naming_an_input_or_an_output_is_refused_and_nothing_changes(tmp_path, monkeypatch, capsys,
                                                                               format):
    monkeypatch.chdir(tmp_path)
    photo = Path(f"photo.{format.lower()}")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (H, W, 3), dtype=np.uint8)).save(photo, format=format)
    np.save("depth.npy", np.full((H, W), 2.0, np.float32))
    Path("list.txt").write_text(f"{photo}\n")
    Path("folder").mkdir()
    os.mkfifo("pipe")  # opening it to read or append would block the run
    Path("loop").symlink_to("loop")
    before = folder_state(tmp_path)
    run = [str(photo), "--stl", "--depth", "depth.npy", "--preset", "tabletop", "--manifest"]
    for manifest, problem in ((str(photo), "refusing to overwrite the photo itself"),
                              ("./depth.npy", "refusing to overwrite the depth file"),
                              ("photo.stl", "already the output of"),
                              ("folder", "is a folder"),
                              ("list.txt", "not a manifest"),
                              ("pipe", "not a regular file"),
                              ("/dev/null", "not a regular file"),
                              ("loop", "not a regular file"),
                              ("missing/m.jsonl", "no such folder")):
        assert main([*run, manifest]) == 2, manifest
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("ppd-mesh: error: cannot write the manifest:") and problem in err[0]
        assert folder_state(tmp_path) == before, manifest
    with pytest.raises(OutputError, match="refusing to overwrite the photo itself"):
        list(run_batch([photo], ["stl"], JobOptions(depth_file="depth.npy"), manifest=photo))
    assert main([*run, "run.jsonl"]) == 0 and Path("run.jsonl").read_text().startswith('{"photo": ')
    assert main([*run, "run.jsonl", "--force"]) == 0 and len(Path("run.jsonl").read_text().splitlines()) == 2


def test_ray_without_ray_data_is_a_usage_error_that_writes_nothing(tmp_path, monkeypatch, capsys):
    pytest.importorskip("ray")
    monkeypatch.chdir(tmp_path)
    photo_at(Path("shoot/a.png"))
    Path("shoot/b.png").write_bytes(b"a corrupt photo, settled before any runner runs")
    monkeypatch.setitem(sys.modules, "ray.data", None)  # Ray imports, Ray Data does not
    before = folder_state(tmp_path)
    assert main(["shoot", "--stl", "--ray"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'depth-from-image[ray]'" in err[0]
    assert folder_state(tmp_path) == before  # no manifest, no output


def test_a_depth_file_or_output_that_is_a_link_loop_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    photo_at(Path("photo.png"))
    np.save("depth.npy", np.full((H, W), 2.0, np.float32))
    Path("loop.npy").symlink_to("loop.npy")
    Path("photo.stl").symlink_to("photo.stl")
    before = folder_state(tmp_path)
    for flags, problem in ((["--depth", "loop.npy"], "loop.npy: no such depth file"),
                           (["--depth", "depth.npy"], "photo.stl: already exists")):
        assert main(["photo.png", "--stl", "--quiet", "--preset", "tabletop", *flags]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and problem in err[0], err
        assert folder_state(tmp_path) == before


def test_names_too_long_for_the_file_system_are_one_line_each(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    photo_at(Path("photo.png"))
    np.save("depth.npy", np.full((H, W), 2.0, np.float32))
    long = "y" * 300  # a file name of over 255 bytes: the file system refuses to look it up
    before = folder_state(tmp_path)
    run = ["--stl", "--quiet", "--preset", "tabletop"]
    for arguments, code in (([f"{long}.png", "--depth", "depth.npy"], 1), (["photo.png", "--depth", f"{long}.npy"], 1),
                            (["photo.png", "--depth", "depth.npy", "-o", f"{long}.stl"], 2),
                            (["photo.png", "--depth", "depth.npy", "--manifest", f"{long}.jsonl"], 2)):
        assert main([*arguments, *run]) == code, arguments
        err = [line for line in capsys.readouterr().err.strip().splitlines()]
        assert len(err) == 1 and ("File name too long" in err[0] or "name too long" in err[0]), err
        assert "internal error" not in err[0] and "Traceback" not in err[0]
        assert folder_state(tmp_path) == before


def test_an_unreachable_or_malformed_ray_address_is_a_usage_error_within_seconds(tmp_path, monkeypatch, capsys):
    """ray.init waits for an address nobody answers at for good (over 7 minutes seen)."""
    import socket

    pytest.importorskip("ray.data")
    monkeypatch.chdir(tmp_path)
    photo_at(Path("shoot/a.png"))
    with socket.socket() as probe:  # a port nothing listens on once it is closed again
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    before = folder_state(tmp_path)
    for address, problem in ((f"127.0.0.1:{closed}", "cannot reach the Ray cluster"),
                             (f"ray://127.0.0.1:{closed}", "cannot reach the Ray cluster"),
                             ("nowhere", "expected auto, HOST:PORT or ray://HOST:PORT")):
        start = time.perf_counter()
        assert main(["shoot", "--stl", "--ray-address", address]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and problem in err[0] and time.perf_counter() - start < 10, err
        assert folder_state(tmp_path) == before
