"""Flying points per frame of a clip, through the real clip path, within the photo pipeline's bounds."""

from __future__ import annotations

import numpy as np

from benchmarks.clip_scenes import moving_camera_clip, write_clip_video
from benchmarks.edge_quality import FLYING_TOLERANCE, degraded_depth, lift_ours
from ppd_core.clip import ClipRun, plan_clip, run_clip
from ppd_core.files.depth_file import read_depth_file
from ppd_core.files.result_file import read_result
from ppd_core.geometry.camera import unproject
from ppd_core.options import JobOptions
from tests.test_clip_scale import oracle_model

FRAMES, WIDTH, HEIGHT, NETWORK = 29, 160, 120, (64, 64)  # two windows; squashed 2.5x across, 1.9x down


def test_each_frame_flies_no_more_than_the_same_frame_as_a_photo(tmp_path):
    """The network's depth goes back to the frame's size bilinearly, as a real network's 512x512 does:
    lifted raw, that makes flying points at every edge. Through the clip path every frame keeps
    nine in ten of its points and has no more flying points than the photo pipeline leaves on the
    same frame's depth degraded as its edge benchmark degrades a photo's (4x down, bilinear up)."""
    scene_clip = moving_camera_clip("boxes", FRAMES, WIDTH, HEIGHT)
    video = write_clip_video(tmp_path / "walk.mkv", scene_clip.frames)
    options = JobOptions(points=True)
    plan = plan_clip(video, ["npz"], options)
    run_clip(ClipRun(plan, options, oracle_model(scene_clip, NETWORK)))
    for index in plan.frames:
        scene, rendering = scene_clip.scenes[index], scene_clip.renderings[index]

        def flying(cloud: np.ndarray) -> int:
            return int(np.count_nonzero(scene.distance_to_surface(cloud) > FLYING_TOLERANCE * cloud[:, 2]))

        points = read_result(plan.outputs(index)["npz"]).vertices
        raw = unproject(read_depth_file(plan.depth_path(index), "metric"), rendering.intrinsics).reshape(-1, 3)
        raw = raw[np.isfinite(raw).all(1)]
        photo = lift_ours(degraded_depth(scene, rendering, "down4+bilinear"), rendering.intrinsics, rendering.rgb)[0]
        assert flying(raw) > 300  # the resize really makes flying points
        assert flying(points) <= flying(photo)
        assert len(points) >= 0.9 * len(raw)
