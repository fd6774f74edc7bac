"""One scale and one camera for a whole clip, through the real clip path (`plan_clip`, `run_clip`) on a
rendered clip with a moving camera: the video model is a stand-in that knows the exact depth but
answers each window in an affine frame of its own, so only the window alignment and the one fit
make the frames agree."""

from __future__ import annotations

import numpy as np
import pytest

import ppd_core.clip_scale as clip_scale_module
from benchmarks.clip_scenes import OracleMoGe, OracleNetwork, moving_camera_clip, write_clip_video
from ppd_core.clip import ClipRun, plan_clip, run_clip
from ppd_core.files.depth_file import read_depth_file
from ppd_core.files.result_file import read_result
from ppd_core.model.precision_check import PrecisionChoice
from ppd_core.model.video_inference import VideoModel
from ppd_core.options import JobOptions

FRAMES, WIDTH, HEIGHT = 30, 96, 72  # 3 windows; frames of 4:3, the network squashes them to 64x64


@pytest.fixture(scope="module")
def scene_clip():
    return moving_camera_clip("boxes", FRAMES, WIDTH, HEIGHT)


def oracle_model(scene_clip, size=(64, 64), seed: int = 3) -> VideoModel:
    """The video model with the stand-ins for its network and MoGe-2 that know the clip's depth."""
    network = OracleNetwork(scene_clip, size, seed=seed)
    return VideoModel(network, OracleMoGe(scene_clip), network.device, PrecisionChoice("fp32", "a test"))


@pytest.fixture(scope="module")
def clip_run(scene_clip, tmp_path_factory):
    """The clip run once through the real path, with every call of the one fit counted."""
    folder = tmp_path_factory.mktemp("clip")
    video = write_clip_video(folder / "walk.mkv", scene_clip.frames)
    model = oracle_model(scene_clip)
    network, moge = model.network, model.moge2
    fits = []
    real_fit = clip_scale_module.fit_log_depth
    patch = pytest.MonkeyPatch()
    patch.setattr(clip_scale_module, "fit_log_depth", lambda *a, **k: fits.append(real_fit(*a, **k)) or fits[-1])
    options = JobOptions(points=True)
    plan = plan_clip(video, ["npz"], options)
    try:
        record = run_clip(ClipRun(plan, options, model))
    finally:
        patch.undo()
    return plan, record, fits, network, moge


def test_the_fit_runs_once_and_every_frame_carries_the_same_map(clip_run):
    plan, record, fits, network, moge = clip_run
    assert len(fits) == 1 and moge.calls == 3  # MoGe-2 on the three keyframes of the first window, one fit
    assert len(network.windows) == 3 and record["depth"]["keyframes"] == [0, 8, 15]
    maps = {(result.depth_info["fit"]["a"], result.depth_info["fit"]["b"])
            for result in (read_result(plan.outputs(index)["npz"]) for index in plan.frames)}
    assert maps == {(fits[0].a, fits[0].b)}
    assert record["depth"]["fit"]["a"] == fits[0].a


def test_one_scale_for_the_whole_clip_drifts_less_than_one_percent(clip_run, scene_clip):
    """The windows came in three different affine frames; every frame's metric depth (its 16-bit
    PNG) still has the true scale, the last as the first."""
    plan = clip_run[0]
    scales = []
    for index in plan.frames:
        metric = read_depth_file(plan.depth_path(index), "metric")
        truth = scene_clip.renderings[index].depth
        usable = np.isfinite(metric) & np.isfinite(truth)
        scales.append(np.median(metric[usable] / truth[usable]))
    scales = np.array(scales)
    assert np.all(np.abs(scales - 1) < 0.01)
    assert scales.max() / scales.min() - 1 < 0.01


def test_one_camera_for_the_clip_at_its_own_aspect(clip_run, scene_clip):
    plan, record = clip_run[:2]
    true = scene_clip.renderings[0].intrinsics
    camera = record["camera"]
    assert (camera["width"], camera["height"]) == (WIDTH, HEIGHT)
    assert camera["fx"] == pytest.approx(true.fx, rel=1e-6) and camera["fy"] == pytest.approx(true.fy, rel=1e-6)
    cameras = {tuple(read_result(plan.outputs(index)["npz"]).camera.intrinsics.__dict__.values())
               for index in plan.frames}
    assert len(cameras) == 1
