"""The add-on's run: start checks, a real worker end to end, cancel, worker lifetime.

Background Blender has no event loop, so the tests call the modal operator's timer step
(`session.SESSION.step`) themselves, as the timer would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.blender_harness import (
    MODULE,
    REPO,
    WORKER_PYTHON,
    addon,
    bpy,
    datablock_counts,
    drive,
    grid_result,
    prefs,
    write_photo,
    write_result_npz,
    write_small_weights,
)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return write_small_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture
def worker_env(monkeypatch, weights):
    """The worker runs this checkout's ppd_core with the small random-weight checkpoint."""
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    p = prefs()
    saved = (p.python, p.weights_folder, p.device, p.precision)
    p.python, p.weights_folder, p.device, p.precision = WORKER_PYTHON, str(weights), "cpu", "fp32"
    settings = bpy.context.scene.depth_from_image
    settings.steps, settings.resolution, settings.create_camera = 2, "AUTO", True  # Preview on this CPU
    yield p
    p = prefs()
    p.python, p.weights_folder, p.device, p.precision = saved


def test_bad_interpreter_path_is_a_clear_message_in_the_panel(session, tmp_path):
    prefs().python = "/nonexistent/bin/python3"
    bpy.context.scene.depth_from_image.photo_path = str(write_photo(tmp_path / "a.png", 8, 6))
    with pytest.raises(session.RunError):
        session.SESSION.start_run(bpy.context)
    state = bpy.context.window_manager.depth_from_image
    assert state.last_error.startswith("Python interpreter not found: /nonexistent/bin/python3")
    assert not state.running and not session.SESSION.running


def test_interpreter_without_the_package_fails_with_the_fix(session, tmp_path, monkeypatch):
    monkeypatch.delenv("PYTHONPATH", raising=False)
    venv = tmp_path / "empty-venv"
    subprocess.run([WORKER_PYTHON, "-m", "venv", "--without-pip", str(venv)], check=True)
    prefs().python = str(venv / "bin" / "python")
    settings = bpy.context.scene.depth_from_image
    settings.photo_source, settings.photo_path = "FILE", str(write_photo(tmp_path / "a.png", 8, 6))
    session.SESSION.start_run(bpy.context)
    assert drive(session, timeout=60) == session.FAILED
    error = bpy.context.window_manager.depth_from_image.last_error
    assert "does not have Depth from Image installed" in error and "Set up backend" in error
    assert "pip" not in error


def test_missing_photo_and_bad_range_are_refused_before_any_work(session, tmp_path):
    prefs().python = sys.executable
    settings = bpy.context.scene.depth_from_image
    settings.photo_source, settings.photo_path = "FILE", str(tmp_path / "nope.jpg")
    with pytest.raises(session.RunError, match="Photo not found: .*nope.jpg"):
        session.SESSION.start_run(bpy.context)
    settings.photo_path = str(write_photo(tmp_path / "a.png", 8, 6))
    settings.preset, settings.near, settings.far = "custom", 5.0, 2.0
    with pytest.raises(session.RunError, match="Near .* must be less than Far"):
        session.SESSION.start_run(bpy.context)
    settings.preset = "indoor"
    settings.photo_source, settings.photo_image = "IMAGE", None
    with pytest.raises(session.RunError, match="No image chosen"):
        session.SESSION.start_run(bpy.context)
    lost = bpy.data.images.new("lost", 8, 8)
    lost.source, lost.filepath = "FILE", str(tmp_path / "gone.png")
    settings.photo_image = lost
    with pytest.raises(session.RunError, match="Image 'lost' has no file on disk"):
        session.SESSION.start_run(bpy.context)
    assert bpy.context.window_manager.depth_from_image.last_error.startswith("Image 'lost' has no file")
    assert not session.SESSION.running
    settings.photo_source = "FILE"


def test_end_to_end_with_moge_semantics_points_say_where_scale_and_camera_came_from(session, worker_env, tmp_path):
    moge = write_small_weights(tmp_path / "moge", "write_small_ppd_moge")
    prefs().weights_folder = str(moge)
    photo = write_photo(tmp_path / "street.png", 64, 48, seed=4)
    settings = bpy.context.scene.depth_from_image
    settings.photo_source, settings.photo_path, settings.output = "FILE", str(photo), "POINTS"
    settings.preset, settings.fov_source = "auto", "AUTO"
    session.SESSION.start_run(bpy.context)
    state = bpy.context.window_manager.depth_from_image
    assert drive(session) == session.FINISHED, state.last_error
    cloud = bpy.data.objects["street points"]
    assert 0 < len(cloud.data.vertices) <= 64 * 48
    scale = state.last_result.split("Scale: ", 1)[1].split(";")[0]
    assert "MoGe-2" in scale and "camera: MoGe-2" in state.last_result
    assert "of the network's depth lay outside its trained range and was clipped" in state.last_result  # random


def test_end_to_end_solid_then_packed_photo_with_one_worker(session, worker_env, tmp_path):
    """A random network's depth is noise, which a scene mesh would cut to nothing; print
    solids keep every pixel, so they carry the end-to-end runs (mesh import: test_addon_import)."""
    photo = write_photo(tmp_path / "garden.png", 64, 48)
    settings = bpy.context.scene.depth_from_image
    settings.photo_source, settings.photo_path, settings.output = "FILE", str(photo), "SOLID"
    settings.width_mm, settings.preset = 80.0, "tabletop"
    bpy.ops.ed.undo_push(message="before")
    state = bpy.context.window_manager.depth_from_image
    seen = []

    session.SESSION.start_run(bpy.context)
    run = session.SESSION.run
    temp_dir = run.temp_dir
    outcome = drive(session, on_step=lambda: state.running and seen.append(state.progress))
    assert run.options["resolution"] == 256 * 192  # Auto chose Preview: the worker has no GPU
    assert outcome == session.FINISHED, state.last_error
    assert seen == sorted(seen) and seen[-1] > 0.5 and not os.path.exists(temp_dir)
    solid = bpy.data.objects["garden solid"]
    assert solid.users_collection[0].name == "garden" and len(solid.data.polygons) > 0
    assert state.last_result.startswith("garden solid: ") and not state.last_error
    xs = [v.co.x for v in solid.data.vertices]
    assert max(xs) - min(xs) == pytest.approx(80.0, abs=0.05)  # millimetres, as asked
    assert tuple(solid.scale) == pytest.approx((0.001,) * 3)  # 80 mm = 0.08 m in the scene, units untouched
    pid = session.SESSION.client.pid

    bpy.ops.ed.undo()
    assert "garden solid" not in bpy.data.objects and "garden" not in bpy.data.collections

    packed = bpy.data.images.load(str(write_photo(tmp_path / "packed.png", 48, 40, seed=1)))
    packed.pack()
    settings = bpy.context.scene.depth_from_image
    settings.photo_source, settings.photo_image = "IMAGE", packed
    session.SESSION.start_run(bpy.context)
    copy = session.SESSION.run.photos[0].photo.path
    assert copy.startswith(session.SESSION.run.temp_dir) and os.path.isfile(copy)
    assert drive(session) == session.FINISHED, state.last_error
    assert len(bpy.data.objects["packed solid"].data.polygons) > 0 and not os.path.exists(copy)
    assert session.SESSION.client.pid == pid and session.SESSION.client.alive


def test_cancel_leaves_nothing_and_disable_stops_the_worker(session, worker_env, tmp_path):
    settings = bpy.context.scene.depth_from_image
    settings.photo_source, settings.output = "FILE", "MESH"
    settings.photo_path = str(write_photo(tmp_path / "cancel me.png", 64, 48))
    settings.steps, settings.resolution = 8, "FAST"
    before = datablock_counts()
    state = bpy.context.window_manager.depth_from_image

    session.SESSION.start_run(bpy.context)
    temp_dir = session.SESSION.run.temp_dir
    deadline = time.monotonic() + 120
    while not state.stage.startswith("Depth: diffusion"):
        assert session.SESSION.step(bpy.context) == session.RUNNING, state.last_error
        assert time.monotonic() < deadline
        time.sleep(0.02)
    session.SESSION.request_cancel()
    assert drive(session, timeout=60) == session.CANCELLED
    assert datablock_counts() == before and not os.path.exists(temp_dir)
    assert state.stage == "Cancelled" and not state.running and not state.last_error
    client = session.SESSION.client
    assert client is not None and client.alive

    pid = client.pid
    bpy.ops.preferences.addon_disable(module=MODULE)
    try:
        assert not client.alive
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # closed and reaped
    finally:
        bpy.ops.preferences.addon_enable(module=MODULE)


def test_worker_killed_mid_run_is_reported_and_leaves_nothing(session, worker_env, tmp_path):
    settings = bpy.context.scene.depth_from_image
    settings.photo_source, settings.output = "FILE", "SOLID"
    settings.photo_path = str(write_photo(tmp_path / "doomed.png", 64, 48))
    settings.steps, settings.resolution = 8, "FAST"
    before = datablock_counts()
    state = bpy.context.window_manager.depth_from_image

    session.SESSION.start_run(bpy.context)
    deadline = time.monotonic() + 120
    while not state.stage.startswith("Depth: diffusion"):
        assert session.SESSION.step(bpy.context) == session.RUNNING, state.last_error
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(session.SESSION.client.pid, signal.SIGKILL)
    assert drive(session, timeout=60) == session.FAILED
    assert "the worker stopped unexpectedly (killed by signal SIGKILL)" in state.last_error
    assert datablock_counts() == before and session.SESSION.client is None


def test_interpreter_folder_says_which_file_to_pick(session, tmp_path):
    venv = tmp_path / "env"
    (venv / "bin").mkdir(parents=True)
    prefs().python = str(venv)
    bpy.context.scene.depth_from_image.photo_path = str(write_photo(tmp_path / "a.png", 8, 6))
    with pytest.raises(session.RunError, match="is a folder: .*env; choose the python executable inside it"):
        session.SESSION.start_run(bpy.context)
    assert str(venv / "bin" / "python") in bpy.context.window_manager.depth_from_image.last_error
    assert not session.SESSION.running


def test_unwritable_worker_log_is_a_message_not_a_stuck_run(session, tmp_path, monkeypatch):
    blocker = tmp_path / "a file"
    blocker.write_text("")  # its folder cannot be made, even by root
    monkeypatch.setattr(addon("settings"), "worker_log_path", lambda: str(blocker / "logs" / "worker.log"))
    prefs().python = sys.executable
    settings = bpy.context.scene.depth_from_image
    settings.photo_source, settings.photo_path = "FILE", str(write_photo(tmp_path / "a.png", 8, 6))
    with pytest.raises(session.RunError, match="Cannot write the worker log: .*Not a directory"):
        session.SESSION.start_run(bpy.context)
    assert not session.SESSION.running  # the next click can start a run


def test_a_new_run_clears_the_last_result_and_a_dropped_run_reads_cancelled(session, tmp_path):
    state = bpy.context.window_manager.depth_from_image
    state.last_result = "garden: 10 vertices, 8 faces in 3 s"
    prefs().python = str(tmp_path / "missing-python")
    bpy.context.scene.depth_from_image.photo_path = str(write_photo(tmp_path / "a.png", 8, 6))
    with pytest.raises(session.RunError):
        session.SESSION.start_run(bpy.context)
    assert state.last_result == "" and state.last_error.startswith("Python interpreter not found")
    assert session.SESSION.step(bpy.context) == session.CANCELLED  # no run: nothing finished


def test_blender_quitting_stops_the_worker(tmp_path, weights):
    """A Python that imports bpy, enables the add-on, starts a worker and exits without
    disabling anything (as Blender quits): the worker is gone right after."""
    script = tmp_path / "quit.py"
    script.write_text(f"""
import atexit, os, sys, time
WORKER = []
def report():  # registered first, so it runs after the add-on's own exit handler
    try:
        os.kill(WORKER[0], 0)
        alive = open(f"/proc/{{WORKER[0]}}/stat").read().split(")")[-1].split()[0] != "Z"
    except ProcessLookupError:
        alive = False
    print("ALIVE AT EXIT", alive, flush=True)
atexit.register(report)
os.environ["BLENDER_USER_RESOURCES"] = {str(tmp_path / "user")!r}
sys.path.insert(0, {str(REPO)!r})
import bpy
from tests.blender_harness import build_zip
zip_path = build_zip({str(tmp_path / "dist")!r})
bpy.ops.extensions.package_install_files(filepath=str(zip_path), repo="user_default", enable_on_install=True)
import importlib
session = importlib.import_module("{MODULE}.session")
session.SESSION._ensure_worker({WORKER_PYTHON!r}, {str(tmp_path / "w.log")!r}, {{}})
session.SESSION.starter.task.join(120)
WORKER.append(session.SESSION.starter.client.pid)
print("WORKER", WORKER[0], flush=True)
""")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=240)
    pids = [int(line.split()[1]) for line in done.stdout.splitlines() if line.startswith("WORKER ")]
    assert done.returncode == 0 and pids, done.stderr[-2000:]
    # Closed by the add-on's exit handler, not left to notice later that its parent died.
    assert "ALIVE AT EXIT False" in done.stdout, done.stdout


@pytest.fixture
def online():
    system = bpy.context.preferences.system
    before = system.use_online_access
    yield system
    system.use_online_access = before


def test_worker_respects_blenders_online_access(session, online, tmp_path):
    """Blender's "Allow Online Access" off: the worker runs with Hugging Face offline, and a
    change of the setting starts a new worker rather than reusing the old one."""
    log = str(tmp_path / "w.log")
    p = prefs()
    saved, p.weights_folder = p.weights_folder, ""
    online.use_online_access = False
    session.SESSION._ensure_worker(WORKER_PYTHON, log, addon("settings").worker_env(p))
    offline_client = session.SESSION.starter.client
    assert offline_client.env == {"HF_HUB_OFFLINE": "1"}
    message = session.error_text({"kind": "weights_missing", "message": "ppd.pth not found"})
    assert message.startswith("ppd.pth not found. Next: allow online access in Preferences > System > Network")
    assert "Download Weights" in message
    online.use_online_access = True
    p.weights_folder = str(tmp_path)
    session.SESSION._ensure_worker(WORKER_PYTHON, log, addon("settings").worker_env(p))
    started = session.SESSION.starter.client
    assert started is not offline_client and started.env == {"PPD_WEIGHTS": str(tmp_path)}
    message = session.error_text({"kind": "weights_missing", "message": "ppd.pth not found"}, str(tmp_path))
    assert "downloads into the Weights Folder), or copy the missing files there" in message
    assert "online access" not in message
    p.weights_folder = saved
    session.SESSION.shutdown()
    assert not offline_client.alive and session.SESSION.starter is None


def import_as_a_result(session, photo, npz, temp_dir, job_id: str, create_camera: bool = True,
                       keep_previous: bool = False) -> str:
    """Feed `npz` to the session as the worker's result of a one-photo run; return the outcome."""
    item = session.QueuedPhoto(photo, str(npz), job_id=job_id)
    run = session.Run(scene_name=bpy.context.scene.name, photos=[item], options={}, shading="EMISSION",
                      create_camera=create_camera, temp_dir=str(temp_dir), submitted=True,
                      keep_previous=keep_previous)
    session.SESSION.run = run
    session.SESSION._handle(bpy.context, run, {"type": "result", "id": job_id, "outputs": {"npz": str(npz)}})
    return session.SESSION._conclude(bpy.context, run)


def test_import_survives_the_chosen_image_being_deleted_mid_run(session, tmp_path):
    """The run keeps the image's name, not a Python reference that deleting or undo can
    invalidate; without the image the photo file from the NPZ textures the mesh."""
    photos = addon("scene.photo_source")
    photo = write_photo(tmp_path / "desk.png", 6, 4)
    image = bpy.data.images.load(str(photo))
    temp_dir = tmp_path / "run"
    temp_dir.mkdir()
    npz = write_result_npz(temp_dir / "result.npz", grid_result(width=6, height=4), image_path=photo)
    source = photos.SourcePhoto(str(photo), image.name, "desk")
    bpy.data.images.remove(image)
    outcome = import_as_a_result(session, source, npz, temp_dir, "job-1")
    assert outcome == session.FINISHED, bpy.context.window_manager.depth_from_image.last_error
    assert bpy.context.window_manager.depth_from_image.last_result.startswith("desk: 24 vertices, 30 faces in ")
    texture = next(n for n in bpy.data.objects["desk"].data.materials[0].node_tree.nodes if n.type == "TEX_IMAGE")
    assert bpy.path.abspath(texture.image.filepath) == str(photo) and not temp_dir.exists()
    assert bpy.context.view_layer.objects.active == bpy.data.objects["desk"]


def test_a_point_cloud_result_is_counted_in_points(session, tmp_path):
    photos = addon("scene.photo_source")
    temp_dir = tmp_path / "run"
    temp_dir.mkdir()
    npz = write_result_npz(temp_dir / "result.npz", grid_result(width=6, height=4), kind="points")
    source = photos.SourcePhoto(str(tmp_path / "x.png"), "", "cloud")
    assert import_as_a_result(session, source, npz, temp_dir, "job-2", create_camera=False) == session.FINISHED
    assert bpy.context.window_manager.depth_from_image.last_result.startswith("cloud points: 24 points in ")


def test_the_result_line_carries_the_importers_warning(session, tmp_path):
    photos = addon("scene.photo_source")
    heic = tmp_path / "IMG_7.heic"
    heic.write_bytes(b"HEIC bytes Blender cannot decode" * 4)
    temp_dir = tmp_path / "run"
    temp_dir.mkdir()
    npz = write_result_npz(temp_dir / "result.npz", grid_result(width=6, height=4), image_path=heic)
    source = photos.SourcePhoto(str(heic), "", "IMG_7")
    assert import_as_a_result(session, source, npz, temp_dir, "job-3") == session.FINISHED
    result = bpy.context.window_manager.depth_from_image.last_result
    assert result.startswith("IMG_7: 24 vertices, 30 faces in ") and result.endswith(
        "Blender cannot read IMG_7.heic as a texture: the mesh shows its vertex colours")


def test_each_photo_of_a_queue_is_timed_from_when_the_worker_began_it(session, tmp_path, monkeypatch):
    """The worker runs the queue in order: the first photo from its submission, each next one
    from the answer before it, not every photo from the start of the run."""
    photos = addon("scene.photo_source")
    clock = [100.0]
    monkeypatch.setattr(session, "time", type("Clock", (), {"monotonic": staticmethod(lambda: clock[0])}))
    client = type("Client", (), {"handshake": {}, "submit": lambda self, job: job["photo"]})()
    monkeypatch.setattr(session.SESSION, "client", client)
    temp_dir = tmp_path / "run"
    temp_dir.mkdir()
    items = []
    for name in ("first", "second"):
        npz = write_result_npz(temp_dir / f"{name}.npz", grid_result(width=6, height=4), kind="points")
        items.append(session.QueuedPhoto(photos.SourcePhoto(str(tmp_path / f"{name}.png"), "", name), str(npz)))
    run = session.Run(scene_name=bpy.context.scene.name, photos=items, options={}, shading="EMISSION",
                      create_camera=False, temp_dir=str(temp_dir))
    session.SESSION.run = run
    assert session.SESSION._submit(run) == ""
    for item, answered_at in zip(items, (130.0, 140.0)):
        clock[0] = answered_at
        session.SESSION._handle(bpy.context, run, {"type": "result", "id": item.job_id,
                                                   "outputs": {"npz": item.npz_path}})
    assert session.SESSION._conclude(bpy.context, run) == session.FINISHED
    assert [item.message.split(" in ")[1].split(" s.")[0] for item in items] == ["30", "10"]


def _collections() -> dict:
    """{collection: sorted names of its objects} of the scene's results."""
    return {c.name: sorted(o.name for o in c.objects) for c in bpy.context.scene.collection.children}


def test_a_rerun_replaces_the_photos_result_unless_kept_and_names_stay_in_step(session, tmp_path):
    photos = addon("scene.photo_source")
    photo = write_photo(tmp_path / "desk.png", 6, 4)
    source = photos.SourcePhoto(str(photo), "", "desk")
    arrays = grid_result(width=6, height=4)

    def rerun(number: int, **keep) -> str:
        temp_dir = tmp_path / f"run{number}"
        temp_dir.mkdir()
        npz = write_result_npz(temp_dir / "result.npz", arrays, image_path=photo)
        return import_as_a_result(session, source, npz, temp_dir, f"job-{number}", **keep)

    assert rerun(1) == session.FINISHED
    first = datablock_counts()
    old_mesh = bpy.data.objects["desk"].data
    assert rerun(2) == session.FINISHED
    assert _collections() == {"desk": ["desk", "desk camera"]} and datablock_counts() == first
    assert bpy.data.objects["desk"].data != old_mesh and bpy.context.scene.camera.name == "desk camera"
    assert rerun(3, keep_previous=True) == session.FINISHED  # beside it, named in step
    assert _collections() == {"desk": ["desk", "desk camera"], "desk.001": ["desk.001", "desk.001 camera"]}
    assert bpy.context.scene.camera.name == "desk.001 camera"
    assert rerun(4) == session.FINISHED  # replaces the latest only; the kept one stays
    assert _collections() == {"desk": ["desk", "desk camera"], "desk.001": ["desk.001", "desk.001 camera"]}
    assert "desk.002" not in bpy.data.meshes and "desk.001 photo" in bpy.data.materials
    other = photos.SourcePhoto(str(tmp_path / "elsewhere" / "desk.png"), "", "desk")  # another photo, same name
    temp_dir = tmp_path / "other"
    temp_dir.mkdir()
    npz = write_result_npz(temp_dir / "result.npz", arrays, image_path=photo)
    assert import_as_a_result(session, other, npz, temp_dir, "job-other") == session.FINISHED
    assert set(_collections()) == {"desk", "desk.001", "desk.002"}


def test_a_failed_rerun_keeps_the_previous_result(session, tmp_path):
    photos = addon("scene.photo_source")
    photo = write_photo(tmp_path / "shelf.png", 6, 4)
    source = photos.SourcePhoto(str(photo), "", "shelf")
    temp_dir = tmp_path / "good"
    temp_dir.mkdir()
    npz = write_result_npz(temp_dir / "result.npz", grid_result(width=6, height=4), image_path=photo)
    assert import_as_a_result(session, source, npz, temp_dir, "job-good") == session.FINISHED
    before = (_collections(), datablock_counts())
    temp_dir = tmp_path / "broken"
    temp_dir.mkdir()
    (temp_dir / "result.npz").write_bytes(b"not an npz")
    assert import_as_a_result(session, source, temp_dir / "result.npz", temp_dir, "job-broken") == session.FAILED
    assert (_collections(), datablock_counts()) == before


def test_the_result_line_says_how_much_depth_was_clipped():
    wording = addon("backend.wording")
    event = {"stats": {"depth": {"scale": "Indoor range (0.8-10 m)", "camera": "60 degrees (default)",
                                 "clipped_px": 23289, "clipped_share": 0.474}}}
    assert wording.sources_text(event) == [
        "Scale: Indoor range (0.8-10 m); camera: 60 degrees (default).",
        "47.4% of the network's depth lay outside its trained range and was clipped (23,289 px)."]
    event["stats"]["depth"].update(clipped_px=0, network_reused=True)
    assert wording.sources_text(event)[1:] == ["Depth reused: only lifting and meshing ran."]
