"""`ppd-mesh clip.mp4 ...` end to end with tiny random weights in the released key layouts: the files it
writes, --frames and --stride, a folder of frames with --video, resuming, and bad clips."""

from __future__ import annotations

import json
import os
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from pxr import Usd

from benchmarks.clip_scenes import write_clip_video
from ppd_core.files.clip_video import video_problem
from ppd_core.files.depth_file import read_depth_file
from ppd_core.files.output_check import output_problem
from ppd_core.files.result_file import read_result
from ppd_core.mesh import main
from tests.checkpoints import write_small_moge
from tests.video_weights import one_thread, tiny_video_model, write_video_weights  # noqa: F401 (a fixture)

HEIGHT, WIDTH = 40, 56


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """ppvd.pth, pi3.safetensors (Pi3's model.safetensors under the name the folder wants) and moge2.pt."""
    folder = tmp_path_factory.mktemp("video_weights")
    _, pi3 = write_video_weights(folder, tiny_video_model(seed=5))
    pi3.rename(folder / "pi3.safetensors")
    write_small_moge(folder)
    return folder


def frames(count: int) -> list[np.ndarray]:
    """A red square sliding over a blue-grey background."""
    clip = []
    for k in range(count):
        frame = np.full((HEIGHT, WIDTH, 3), (60, 90, 140), np.uint8)
        frame[10:30, 5 + 3 * k:25 + 3 * k] = (200, 40, 40)
        clip.append(frame)
    return clip


@pytest.fixture
def clip(tmp_path) -> Path:
    return write_clip_video(tmp_path / "walk.mkv", frames(5))


def test_a_clip_gives_a_folder_of_frames_a_depth_sequence_a_video_and_a_record(clip, weights, capsys):
    assert main([str(clip), "--ply", "--npz", "--weights", str(weights), "--quiet"]) == 0
    folder = clip.parent / "walk"
    for k in range(5):
        assert (folder / f"walk_{k:06d}.ply").stat().st_size > 0
        result = read_result(folder / f"walk_{k:06d}.npz")
        assert (result.camera.width, result.camera.height) == (WIDTH, HEIGHT)  # the frame's own aspect
        assert result.depth_info["clip"]["frame"] == k
        depth_png = folder / "depth" / f"walk_{k:06d}.png"
        assert Image.open(depth_png).mode.startswith("I;16") and Image.open(depth_png).size == (WIDTH, HEIGHT)
        assert np.isfinite(read_depth_file(depth_png, "metric")).any()
    assert video_problem(folder / "walk_depth.mp4", 5) is None
    record = json.loads((folder / "walk_clip.json").read_text())
    assert record["frames"] == [0, 1, 2, 3, 4] and record["camera"]["width"] == WIDTH
    assert record["depth"]["scale"].startswith("fit to MoGe-2 on frames 0, 4")  # the short window's keyframes
    assert not [p for p in folder.rglob(".ppd-staging-*")]
    out = capsys.readouterr().out
    assert "walk.mkv: 5 frames ->" in out and "depth video:" in out


def test_frames_and_stride_choose_the_frames_and_keep_their_numbers(clip, weights):
    assert main([str(clip), "--npz", "--usd", "--frames", "1:5", "--stride", "2", "--preset", "tabletop",
                 "--weights", str(weights), "--quiet"]) == 0
    folder = clip.parent / "walk"
    assert sorted(p.name for p in folder.glob("*.npz")) == ["walk_000001.npz", "walk_000003.npz"]
    stage = Usd.Stage.Open(str(folder / "walk.usda"))  # one object whose geometry follows the time
    points = stage.GetPrimAtPath("/depth/surface").GetAttribute("points")
    for time, index in ((2, 1), (3, 1), (4, 3)):  # time = frame + 1; a frame holds until the next one
        own = Usd.Stage.Open(str(folder / f"walk_{index:06d}.usdc"))
        own_points = own.GetPrimAtPath("/depth/surface").GetAttribute("points").Get(0)
        assert np.array_equal(np.asarray(points.Get(time)), np.asarray(own_points))
        assert len(points.Get(time)) == len(read_result(folder / f"walk_{index:06d}.npz").vertices)
    record = json.loads((folder / "walk_clip.json").read_text())
    assert record["frames"] == [1, 3] and record["depth"]["depth_range_m"] == [0.3, 1.5]
    with av.open(str(folder / "walk_depth.mp4")) as video:
        assert float(video.streams.video[0].average_rate) == 12  # 24 fps, every second frame


@pytest.mark.slow
def test_a_folder_of_frames_is_a_clip_with_video_and_a_run_resumes(tmp_path, weights, capsys):
    """Slow (about 20 s): three runs of the network."""
    shoot = tmp_path / "shoot"
    shoot.mkdir()
    for k, frame in enumerate(frames(4)):
        Image.fromarray(frame).save(shoot / f"frame_{k + 1}.png")  # frame_10 would sort after frame_9
    args = [str(shoot), "--video", "--ply", "--weights", str(weights), "--quiet"]
    assert main(args) == 0
    folder = tmp_path / "shoot_3d"
    plys = sorted(folder.glob("*.ply"))
    assert [p.name for p in plys] == [f"shoot_{k:06d}.ply" for k in range(4)]
    assert main(args) == 1  # the files are there: not overwritten without --force
    assert "already exists" in capsys.readouterr().err
    os.unlink(plys[1])
    plys[2].write_bytes(plys[2].read_bytes()[:100])  # cut short, as by a full disk
    untouched = plys[0].stat().st_mtime_ns
    assert main(args + ["--skip-existing"]) == 0
    assert plys[0].stat().st_mtime_ns == untouched
    assert output_problem("ply", plys[1]) is None and output_problem("ply", plys[2]) is None
    record = json.loads((folder / "shoot_clip.json").read_text())
    assert (record["written"], record["kept"]) == (2, 2)
    assert main(args + ["--skip-existing", "--preset", "outdoor"]) == 1  # other options: no mixed clip
    assert "other options" in capsys.readouterr().err


def test_a_clip_cannot_run_with_photos_or_on_ray(clip, tmp_path, capsys):
    photo = tmp_path / "a.png"
    Image.fromarray(frames(1)[0]).save(photo)
    assert main([str(clip), str(photo), "--ply"]) == 2
    assert main([str(clip), "--ply", "--ray"]) == 2
    err = capsys.readouterr().err
    assert "not a clip" in err and "--ray" in err


@pytest.mark.parametrize("problem, words", [
    ("garbage", "not a readable video"),
    ("missing", "no such file"),
    ("no frames", "no frames"),
    ("too large", "more than the"),
    ("frames beyond", "selects none"),
])
def test_a_bad_clip_is_one_line_and_exit_1_before_any_network(problem, words, tmp_path, capsys, monkeypatch):
    path = tmp_path / "bad.mp4"
    args = ["--ply", "--weights", str(tmp_path / "no weights here")]  # never reached
    if problem == "garbage":
        path.write_bytes(b"\x00not a video" * 100)
    elif problem == "no frames":
        path = path.with_suffix(".mkv")
        with av.open(str(path), "w") as container:
            stream = container.add_stream("ffv1", rate=24)
            stream.width, stream.height, stream.pix_fmt = 64, 48, "bgr0"
            container.start_encoding()
    elif problem == "too large":
        monkeypatch.setattr("ppd_core.files.clip_file.MAX_IMAGE_PIXELS", 1000)
        write_clip_video(path.with_suffix(".mkv"), frames(2))
        path = path.with_suffix(".mkv")
    elif problem == "frames beyond":
        write_clip_video(path.with_suffix(".mkv"), frames(2))
        path = path.with_suffix(".mkv")
        args += ["--frames", "5:9"]
    assert main([str(path)] + args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and words in err[0], err
    assert not (tmp_path / "bad").exists()


def test_a_clip_is_never_written_over_its_own_frames(tmp_path, capsys):
    """Frames in `depth_3d/depth/`, run with -o where their clip's outputs would land on them: refused
    before anything runs, even with --force, and the frame is as it was."""
    frames_folder = tmp_path / "depth_3d" / "depth"
    frames_folder.mkdir(parents=True)
    frame = frames_folder / "depth_000000.png"
    Image.fromarray(frames(1)[0]).save(frame)
    before = frame.read_bytes()
    assert main([str(frames_folder), "--video", "--ply", "--force", "-o", str(tmp_path),
                 "--weights", str(tmp_path / "none")]) == 1
    err = capsys.readouterr().err
    assert "refusing to overwrite a frame of the clip" in err and "weights" not in err
    assert frame.read_bytes() == before
