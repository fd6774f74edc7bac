"""A movie as the add-on's photo source, end to end with a real worker and tiny random video weights:
one object whose geometry follows the timeline (the worker's USD stage, imported natively), the
movie as its texture frame by frame, the clip's camera; a re-run replaces it."""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest

from tests.blender_harness import REPO, WORKER_PYTHON, addon, bpy, drive, prefs, projected_pixels

HEIGHT, WIDTH, FRAMES = 40, 56, 4


@pytest.fixture(scope="module")
def video_weights(tmp_path_factory):
    """ppvd.pth, pi3.safetensors and moge2.pt of tiny random networks, written by the worker's Python."""
    folder = tmp_path_factory.mktemp("video_weights")
    code = ("import sys; from pathlib import Path; from tests.video_weights import tiny_video_model, "
            "write_video_weights; from tests.checkpoints import write_small_moge; f = Path(sys.argv[1]); "
            "pi3 = write_video_weights(f, tiny_video_model(seed=5))[1]; pi3.rename(f / 'pi3.safetensors'); "
            "write_small_moge(f)")
    done = subprocess.run([WORKER_PYTHON, "-c", code, str(folder)], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    if done.returncode:
        pytest.skip(f"no worker Python with torch: {done.stderr.strip().splitlines()[-1:]}")
    return folder


@pytest.fixture
def movie(tmp_path):
    from benchmarks.clip_scenes import write_clip_video

    frames = []
    for k in range(FRAMES):
        frame = np.full((HEIGHT, WIDTH, 3), (60, 90, 140), np.uint8)
        frame[8:32, 6 + 5 * k:30 + 5 * k] = (220, 60, 40)
        frames.append(frame)
    (tmp_path / "shots").mkdir()
    return write_clip_video(tmp_path / "shots" / "walk.mkv", frames)


@pytest.fixture
def clip_worker(monkeypatch, video_weights):
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    p = prefs()
    saved = (p.python, p.weights_folder, p.device, p.precision)
    p.python, p.weights_folder, p.device, p.precision = WORKER_PYTHON, str(video_weights), "cpu", "fp32"
    settings = bpy.context.scene.depth_from_image
    settings.output, settings.create_camera, settings.preset = "MESH", True, "tabletop"
    yield p
    p = prefs()
    p.python, p.weights_folder, p.device, p.precision = saved


def evaluated_vertices(obj, frame: int) -> np.ndarray:
    bpy.context.scene.frame_set(frame)
    evaluated = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
    points = np.empty(len(evaluated.data.vertices) * 3, np.float32)
    evaluated.data.vertices.foreach_get("co", points)
    return points.reshape(-1, 3)


def test_a_movie_becomes_one_object_that_follows_the_timeline(session, clip_worker, movie):
    settings = bpy.context.scene.depth_from_image
    settings.photo_source, settings.photo_path = "FILE", str(movie)
    session.SESSION.start_run(bpy.context)
    state = bpy.context.window_manager.depth_from_image
    assert drive(session) == session.FINISHED, state.last_error
    assert f"{FRAMES} frames in {movie.parent / 'walk'}" in state.last_result
    scene = bpy.context.scene
    assert (scene.frame_start, scene.frame_end) == (1, FRAMES)
    surface = bpy.data.objects["walk"]
    assert [m.type for m in surface.modifiers] == ["MESH_SEQUENCE_CACHE"]
    assert surface.users_collection[0].name == "walk"
    # Each frame shows that frame's file: the worker's own USD of frame k at time k + 1.
    from pxr import Usd

    for frame in (1, FRAMES):
        own = Usd.Stage.Open(str(movie.parent / "walk" / f"walk_{frame - 1:06d}.usdc"))
        expected = np.asarray(own.GetPrimAtPath("/depth/surface").GetAttribute("points").Get(0))
        shown = evaluated_vertices(surface, frame)
        assert len(shown) == len(expected)
        world = np.asarray(surface.matrix_world)
        np.testing.assert_allclose(shown @ world[:3, :3].T + world[:3, 3], expected @ np.asarray(
            [[1, 0, 0], [0, 0, -1], [0, 1, 0]]).T, atol=1e-5)  # the importer's quarter turn: y up -> z up
    texture = next(n for n in surface.data.materials[0].node_tree.nodes if n.type == "TEX_IMAGE")
    assert texture.image.source == "MOVIE" and texture.image_user.use_auto_refresh
    camera = scene.camera
    assert camera.name == "walk camera" and (scene.render.resolution_x, scene.render.resolution_y) == (WIDTH, HEIGHT)
    # The camera sees each vertex where its pixel is: the UV the worker gave it, in pixels.
    bpy.context.scene.frame_set(1)
    evaluated = surface.evaluated_get(bpy.context.evaluated_depsgraph_get())
    uvs = np.empty(len(evaluated.data.loops) * 2, np.float32)
    evaluated.data.uv_layers["st"].data.foreach_get("uv", uvs)
    corners = np.empty(len(evaluated.data.loops), np.int32)
    evaluated.data.loops.foreach_get("vertex_index", corners)
    some = corners[:50]
    pixels = projected_pixels(scene, camera, evaluated, some)
    expected = np.column_stack([uvs.reshape(-1, 2)[:50, 0] * WIDTH, (1 - uvs.reshape(-1, 2)[:50, 1]) * HEIGHT])
    np.testing.assert_allclose(pixels, expected, atol=0.05)

    session.SESSION.start_run(bpy.context)  # a re-run replaces the clip's result
    assert drive(session) == session.FINISHED, state.last_error
    assert len([o for o in bpy.data.objects if o.type == "MESH"]) == 1


def test_a_movie_loaded_in_blender_is_a_clip(session, movie, tmp_path):
    photo_source = addon("scene.photo_source")
    image = bpy.data.images.load(str(movie))
    settings = bpy.context.scene.depth_from_image
    settings.photo_source, settings.photo_image = "IMAGE", image
    found = photo_source.resolve_photo(settings, str(tmp_path))
    assert image.source == "MOVIE" and found.clip and found.path == str(movie)
    settings.output = "SOLID"
    prefs().python = WORKER_PYTHON
    with pytest.raises(session.RunError, match="print solid is made from one photo"):
        session.SESSION.start_run(bpy.context)
    settings.output = "MESH"


def test_the_video_files_are_fetched_only_after_their_terms_are_accepted(monkeypatch, tmp_path):
    """The preferences show the terms; the download is refused until they are accepted, and the backend's
    command accepts them only then."""
    import sys

    from tests.blender_harness import RecordingLayout, drain_timers

    weights_ops, tasks = addon("weights_ops"), addon("backend.tasks")
    weights_download = addon("backend.weights_download")
    preferences = addon("preferences")
    commands = []

    def recorder(python, folder, names, env, video=False):
        commands.append(weights_download.download_command(python, folder, names, video))
        return tasks.Task("download", lambda task: None).start()

    monkeypatch.setattr(weights_ops.weights_download, "start_download", recorder)
    system = bpy.context.preferences.system
    p = prefs()
    saved = (system.use_online_access, p.python, p.accept_video_terms, p.weights_folder)
    system.use_online_access, p.python, p.weights_folder = True, sys.executable, str(tmp_path)
    try:
        p.accept_video_terms = False
        layout = RecordingLayout()
        preferences._draw_video_weights(layout, p, 80)
        shown = " ".join(layout.labels())
        assert "CC BY-NC 4.0" in shown and "no licence stated" in shown
        assert not bpy.ops.depth_from_image.download_video_weights.poll()
        p.accept_video_terms = True
        assert bpy.ops.depth_from_image.download_video_weights() == {"FINISHED"}
        drain_timers()
    finally:
        system.use_online_access, p.python, p.accept_video_terms, p.weights_folder = saved
    assert commands == [[sys.executable, "-m", "ppd_core.model.weights", "download", "--dir", str(tmp_path),
                         "--video", "--accept-video-terms", "--json"]]
