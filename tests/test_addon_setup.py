"""From the zip to the first mesh without a terminal: the zip built without bpy, validated by
Blender's own tool, installed; Set up backend from the wheel the zip carries; a photo end to
end; then a queue of photos, and a re-mesh that does not run the network."""

from __future__ import annotations

import glob
import os
import site
import subprocess
import sys
import time

import pytest

from tests.blender_harness import (
    REPO,
    addon,
    bpy,
    drive,
    installed_zip,
    prefs,
    write_photo,
    write_small_weights,
)


def test_the_zip_builds_without_bpy_and_blenders_tool_accepts_it(tmp_path, monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("ppd_addon_build", REPO / "addon" / "build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    tool = build.find_blender_ext()
    monkeypatch.setattr(build, "find_blender_ext", lambda: None)  # as on a machine without bpy
    zip_path = build.build(str(tmp_path))
    done = subprocess.run([sys.executable, tool, "validate", zip_path], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and "Error" not in done.stdout + done.stderr, done.stdout + done.stderr


def _wait_for_setup(timeout: float = 600.0):
    """Drive the add-on's task timer until Set up backend has ended (its last step copies the
    interpreter into the preferences); its status."""
    state = addon("state")
    deadline = time.monotonic() + timeout
    while state.pending():
        state.poll_tasks()
        assert time.monotonic() < deadline, "Set up backend did not finish"
        time.sleep(0.1)
    return state.status("setup")


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    """Set up backend as a user presses it, offline: pip is pointed at a folder of wheels (the
    one the zip carries among them) and sees the other dependencies, as with "Reuse the base
    Python's packages", through PYTHONPATH (this test environment's site-packages, which has no
    ppd_core of its own: the backend's ppd_core comes from the wheel)."""
    installed_zip()
    settings = addon("settings")
    extension = settings.EXTENSION_DIR
    wheels = tmp_path_factory.mktemp("wheels")
    bundled = glob.glob(os.path.join(extension, "wheels", "depth_from_image-*.whl"))
    assert len(bundled) == 1
    os.symlink(bundled[0], wheels / os.path.basename(bundled[0]))
    saved = {key: os.environ.get(key) for key in ("PIP_NO_INDEX", "PIP_FIND_LINKS", "PYTHONPATH", "HF_HUB_OFFLINE")}
    os.environ.update(PIP_NO_INDEX="1", PIP_FIND_LINKS=str(wheels), HF_HUB_OFFLINE="1",
                      PYTHONPATH=os.pathsep.join(site.getsitepackages()))
    p = prefs()
    before = (p.python, p.package_spec, p.weights_folder, p.device, p.precision)
    p.python, p.package_spec, p.device, p.precision = "", "", "cpu", "fp32"
    system = bpy.context.preferences.system
    online = system.use_online_access
    system.use_online_access = True
    try:
        assert bpy.ops.depth_from_image.setup_backend() == {"FINISHED"}
        status = _wait_for_setup()
        yield settings, status
    finally:
        system.use_online_access = online
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        p = prefs()
        p.python, p.package_spec, p.weights_folder, p.device, p.precision = before


def test_set_up_backend_installs_the_bundled_wheel_and_a_photo_runs_end_to_end(backend, session, tmp_path):
    settings, status = backend
    assert status.done and not status.error, f"{status.error} / {status.cause}"
    python = prefs().python
    assert python.startswith(settings.backend_dir())  # outside the extension's folder
    where = subprocess.run([python, "-c", "import ppd_core, sys; print(ppd_core.__file__)"],
                           capture_output=True, text=True, check=True, cwd=tmp_path).stdout.strip()
    assert where.startswith(settings.backend_dir())  # from the wheel, not this checkout
    prefs().weights_folder = str(write_small_weights(tmp_path / "weights"))
    settings = bpy.context.scene.depth_from_image
    settings.photo_source, settings.photo_path, settings.output = "FILE", str(write_photo(tmp_path / "yard.png", 64,
                                                                                           48)), "SOLID"
    settings.preset, settings.steps, settings.resolution = "tabletop", 1, "PREVIEW"
    session.SESSION.start_run(bpy.context)
    state = bpy.context.window_manager.depth_from_image
    assert drive(session) == session.FINISHED, state.last_error
    assert len(bpy.data.objects["yard solid"].data.polygons) > 0


def test_a_queue_of_photos_each_into_its_own_collection(backend, session, tmp_path):
    prefs().weights_folder = str(write_small_weights(tmp_path / "weights"))
    settings = bpy.context.scene.depth_from_image
    settings.photo_files.clear()
    for n in range(3):
        settings.photo_files.add().path = str(write_photo(tmp_path / f"shot {n}.png", 64, 48, seed=n))
    (tmp_path / "broken.png").write_bytes(b"not a png")
    settings.photo_files.add().path = str(tmp_path / "broken.png")
    settings.photo_source, settings.output, settings.preset = "FILES", "SOLID", "tabletop"
    settings.steps, settings.resolution = 1, "PREVIEW"
    state = bpy.context.window_manager.depth_from_image
    session.SESSION.start_run(bpy.context)
    fractions = []
    outcome = drive(session, on_step=lambda: state.running and fractions.append(state.progress))
    assert outcome == session.FINISHED, state.last_error
    assert all(f"shot {n}" in bpy.data.collections for n in range(3))
    assert state.last_result.startswith("3 of 4 photos imported.") and "broken" in state.last_error
    assert fractions == sorted(fractions) and max(fractions) > 0.5  # one bar for the whole queue


def test_remeshing_with_a_new_edge_strength_does_not_run_the_network(backend, session, tmp_path):
    prefs().weights_folder = str(write_small_weights(tmp_path / "fresh weights"))  # a model load, then the network
    settings = bpy.context.scene.depth_from_image
    settings.photo_source, settings.photo_path = "FILE", str(write_photo(tmp_path / "room.png", 64, 48, seed=9))
    settings.output, settings.preset, settings.steps, settings.resolution = "SOLID", "tabletop", 2, "FAST"
    state = bpy.context.window_manager.depth_from_image
    started = time.monotonic()
    session.SESSION.start_run(bpy.context)
    assert drive(session) == session.FINISHED, state.last_error
    first = time.monotonic() - started
    runs = session.SESSION.last_stats["network_runs"]

    settings.edge_strength, settings.relief_mm = 0.9, 12.0  # only lifting and meshing change
    started = time.monotonic()
    session.SESSION.start_run(bpy.context)
    assert drive(session) == session.FINISHED, state.last_error
    again = time.monotonic() - started
    assert "Depth reused: only lifting and meshing ran." in state.last_result
    assert session.SESSION.last_stats["network_runs"] == runs  # the network was not called
    assert again < first / 10, (again, first)
