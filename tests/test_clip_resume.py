"""A clip's run cut short resumes at the window it was in, and its frames come out exactly as an
uninterrupted run's; without a usable saved state (damaged, or an earlier frame missing) it
starts from the first window, as safely as before."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.clip_scenes import write_clip_video
from ppd_core.clip import ClipRun, plan_clip, run_clip
from ppd_core.model.precision_check import PrecisionChoice
from ppd_core.model.video_inference import VideoModel
from ppd_core.options import JobOptions
from ppd_core.video import window_count
from tests.video_weights import one_thread, tiny_video_model  # noqa: F401 (a fixture)

FRAMES = 42  # three windows: 16 + 13 + 13 new frames
STOP_AFTER = 33  # a frame of the third window


class Interrupted(Exception):
    """Stands in for Ctrl+C or a crash between two frames."""


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    rng = np.random.default_rng(3)
    base = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    frames = [np.roll(base, 2 * k, axis=1) for k in range(FRAMES)]
    return write_clip_video(tmp_path_factory.mktemp("clip") / "walk.mkv", frames)


@pytest.fixture(scope="module")
def model() -> VideoModel:
    return VideoModel(tiny_video_model(seed=5), None, torch.device("cpu"), PrecisionChoice("fp32", "a test"))


@pytest.fixture
def windows_run(model, monkeypatch) -> list:
    """The network's windows run, counted."""
    calls = []
    sample = model.network.sample_window

    def counted(*args, **kwargs):
        calls.append(1)
        return sample(*args, **kwargs)

    monkeypatch.setattr(model.network, "sample_window", counted)
    return calls


def run(video: Path, model: VideoModel, output: Path, *, skip_existing: bool = False, stop_after=None) -> dict:
    options = JobOptions(preset="indoor")
    plan = plan_clip(video, ["ply"], options, output=output, skip_existing=skip_existing)

    def on_frame(index: int, stats: dict) -> None:
        if index == stop_after:
            raise Interrupted

    return run_clip(ClipRun(plan, options, model, replace=skip_existing, on_frame=on_frame))


def depth_files(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted((folder / "depth").glob("*.png"))}


@pytest.fixture(scope="module")
def uninterrupted(video, model, tmp_path_factory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("whole")
    run(video, model, folder)
    assert not list(folder.glob("walk/.*"))  # the resume state goes when the run ends
    return depth_files(folder / "walk")


def test_a_run_cut_short_resumes_at_its_window_with_the_same_frames(video, model, uninterrupted, windows_run,
                                                                    tmp_path):
    assert window_count(FRAMES) == 3
    with pytest.raises(Interrupted):
        run(video, model, tmp_path, stop_after=STOP_AFTER)
    assert len(windows_run) == 3 and (tmp_path / "walk" / ".walk_resume.npz").is_file()
    windows_run.clear()
    record = run(video, model, tmp_path, skip_existing=True)
    assert len(windows_run) == 1  # the third window alone: the first two are not computed again
    assert (record["written"], record["kept"]) == (FRAMES - 1 - STOP_AFTER, STOP_AFTER + 1)
    assert depth_files(tmp_path / "walk") == uninterrupted
    assert not (tmp_path / "walk" / ".walk_resume.npz").exists()


@pytest.mark.parametrize("damage", ["a frame before the saved window is missing", "the state is cut short"])
def test_without_a_usable_state_the_resume_starts_from_the_first_window(damage, video, model, uninterrupted,
                                                                        windows_run, tmp_path):
    with pytest.raises(Interrupted):
        run(video, model, tmp_path, stop_after=STOP_AFTER)
    state = tmp_path / "walk" / ".walk_resume.npz"
    if damage == "the state is cut short":
        state.write_bytes(state.read_bytes()[:200])
    else:
        (tmp_path / "walk" / "depth" / "walk_000003.png").unlink()
    windows_run.clear()
    run(video, model, tmp_path, skip_existing=True)
    assert len(windows_run) == 3
    assert depth_files(tmp_path / "walk") == uninterrupted


def test_the_options_a_resume_compares_are_json_ready_whatever_the_caller_passed(tmp_path):
    import json

    from ppd_core.clip import depth_options

    given = depth_options(JobOptions(align_to=tmp_path / "lidar.png", preset="indoor"))
    assert json.loads(json.dumps(given)) == given and given["align_to"] == str(tmp_path / "lidar.png")
