"""What a user sees and clicks: the sidebar panel, the preferences (licences, Check, Detect),
the image-only photo browser, path and unit handling, the Auto resolution."""

from __future__ import annotations

import os
import stat

import pytest

from tests.blender_harness import DrawSelf, addon, bpy, drain_timers, prefs, write_photo


def _draw_panel():
    panel = addon("panel").VIEW3D_PT_depth_from_image
    drawer = DrawSelf(None)
    panel.draw(drawer, bpy.context)
    return drawer.layout


def test_panel_offers_the_image_browser_and_keeps_the_last_error(tmp_path):
    addon()
    settings = bpy.context.scene.depth_from_image
    state = bpy.context.window_manager.depth_from_image
    settings.photo_source = "FILE"
    state.last_error = "Python interpreter not found: /nowhere/python (set it in the add-on preferences)"
    layout = _draw_panel()
    ids = [button.idname for button in layout.operators()]
    assert "depth_from_image.choose_photo" in ids and "depth_from_image.run" in ids
    shown = " ".join(layout.labels())
    assert "Python interpreter not found: /nowhere/python" in shown
    state.last_error = ""


def test_panel_shows_progress_and_cancel_while_running(monkeypatch):
    session = addon("session")
    monkeypatch.setattr(session.SESSION, "run", object())
    state = bpy.context.window_manager.depth_from_image
    state.progress, state.stage = 0.4, "Depth: diffusion step 2/4"
    layout = _draw_panel()
    assert ("progress", "Depth: diffusion step 2/4", pytest.approx(0.4)) in layout.log
    ids = [b.idname for b in layout.operators()]
    assert ids.index("depth_from_image.choose_photo") < ids.index("depth_from_image.cancel")
    assert "depth_from_image.run" not in ids
    assert "Esc also cancels" in layout.labels()


def test_status_block_says_what_is_missing_with_its_fix(monkeypatch, tmp_path):
    settings, state, session = addon("settings"), addon("state"), addon("session")
    monkeypatch.setattr(session.SESSION, "client", None)
    p = prefs()
    saved = (p.python, p.weights_folder)
    p.python, p.weights_folder = "", ""
    state.forget_answers()
    layout = _draw_panel()
    shown, ids = " ".join(layout.labels()), [b.idname for b in layout.operators()]
    assert "Backend: not set up" in shown and "depth_from_image.setup_backend" in ids
    assert "Weights: the Hugging Face cache (checked once the backend is set up)" in shown
    p.python = "/usr/bin/python3"
    state.CHECK.update({"for": settings.backend_key(p), "error": "", "handshake": {
        "python": "3.11.7", "torch": "2.13.0", "devices": [{"id": "cpu"}],
        "weights": {"ready": False, "problem": "model weights missing: ppd.pth not in the Hugging Face cache; "
                                               "run `ppd-weights download`, or pass a folder holding them with "
                                               "--weights DIR (or PPD_WEIGHTS)"}}})
    layout = _draw_panel()
    shown, ids = " ".join(layout.labels()), [b.idname for b in layout.operators()]
    assert "Backend: Python 3.11.7, torch 2.13.0, devices cpu" in shown and "depth_from_image.setup_backend" not in ids
    assert "Weights: model weights missing" in shown and "preferences.addon_show" in ids
    compact = _shown(layout)  # long lines wrap: compare without blanks
    step = addon("backend.wording").weights_next_step(bpy.app.online_access, folder_set=False)
    assert "Download Weights" in step and "".join(f"Next: {step}".split()) in compact  # Blender's words
    assert not any(word in shown for word in ("ppd-weights", "--weights", "PPD_WEIGHTS", "HF_HUB_OFFLINE"))
    state.CHECK["handshake"]["weights"] = {"ready": True, "model": "PPD with MoGe-2 semantics and MoGe-2 "
                                           "geometry", "folder": str(tmp_path)}
    shown = "".join("".join(_draw_panel().labels()).split())  # long lines wrap: compare without blanks
    assert "".join(f"Weights: PPD with MoGe-2 semantics and MoGe-2 geometry ({tmp_path})".split()) in shown
    p.python, p.weights_folder = saved


def test_progress_text_names_the_stage():
    session = addon("backend.wording")
    assert session.progress_text({"stage": "diffusion", "message": "diffusion step 2/4"}) == "Depth: diffusion step 2/4"
    assert session.progress_text({"stage": "load", "message": "640x480"}) == "Photo: 640x480"
    assert session.progress_text({"stage": "lift"}) == "Points"


def test_preferences_show_every_weight_file_its_licence_and_model_card():
    from ppd_core.weight_sources import SOURCES

    addon("preferences")
    drawer = DrawSelf(prefs())
    type(prefs()).draw(drawer, bpy.context)
    text = " ".join(drawer.layout.labels())
    assert "CC-BY-NC-4.0" in text and "non-commercial" in text and "MIT" in text
    assert all(source.name in text for source in SOURCES)
    urls = {getattr(b, "url", None) for b in drawer.layout.operators() if b.idname == "wm.url_open"}
    assert {"https://huggingface.co/gangweix/Pixel-Perfect-Depth", "https://huggingface.co/Ruicheng/moge-2-vitl-normal",
            "https://huggingface.co/depth-anything/Depth-Anything-V2-Large"} <= urls


def _shown(layout) -> str:
    """Every label's text, without blanks (long lines wrap anywhere)."""
    return "".join("".join(layout.labels()).split())


def _drawn_preferences():
    drawer = DrawSelf(prefs())
    type(prefs()).draw(drawer, bpy.context)
    return drawer.layout


def test_check_with_a_bad_path_reports_it_in_the_status_block_for_that_path_only(tmp_path):
    preferences, status, state = addon("preferences"), addon("status"), addon("state")
    prefs().python = str(tmp_path / "no" / "python")
    assert bpy.ops.depth_from_image.check_interpreter() == {"FINISHED"}
    drain_timers()
    handshake, error = status._handshake(prefs())
    assert handshake == {} and error.startswith(f"Python interpreter not found: {tmp_path / 'no' / 'python'}")
    layout = _drawn_preferences()
    _assert_shown_whole(layout, f"Backend: {error}", "ERROR", preferences.LABEL_WIDTH)
    assert sum("interpreter not found" in label for label in layout.labels()) == 1  # once: the status block
    prefs().python = str(tmp_path / "other" / "python")  # the Check said nothing about this one
    assert status._handshake(prefs()) == ({}, "")
    assert "not checked yet" in " ".join(_drawn_preferences().labels())
    prefs().python = ""
    state.forget_answers()


def test_status_block_shows_a_handshake_only_for_the_current_backend(monkeypatch, tmp_path):
    """The session's worker's handshake, else the last Check's, and only while the Python
    and the worker's environment are the ones it came from."""
    settings, state, session = addon("settings"), addon("state"), addon("session")
    p = prefs()
    saved = (p.python, p.weights_folder)
    p.python, p.weights_folder = "/opt/a/bin/python", ""
    checked = {"python": "3.11.7", "torch": "2.13.0", "devices": [{"id": "cpu"}],
               "weights": {"ready": True, "model": "PPD with MoGe-2 semantics", "folder": "/hub"}}
    monkeypatch.setattr(session.SESSION, "client", None)
    state.CHECK.update({"for": settings.backend_key(p), "handshake": checked, "error": ""})
    try:
        assert "Backend:Python3.11.7" in _shown(_draw_panel())
        p.weights_folder = str(tmp_path)  # a new Weights Folder: the Check looked elsewhere
        shown = _shown(_draw_panel())
        assert "Python3.11.7" not in shown and "".join(f"Weights: {tmp_path}".split()) in shown
        p.weights_folder = ""
        p.python = "/opt/b/bin/python"  # Detect or Set up chose another Python
        assert "Backend:/opt/b/bin/python(notcheckedyet)" in _shown(_draw_panel())
        worker = type("Client", (), {"handshake": dict(checked, python="3.12.1")})()
        monkeypatch.setattr(session.SESSION, "client", worker)
        monkeypatch.setattr(session.SESSION, "worker_for", settings.backend_key(p))
        assert "Backend:Python3.12.1" in _shown(_draw_panel())  # the session's worker, started for b
        p.python = "/opt/a/bin/python"
        assert "Backend:Python3.11.7" in _shown(_draw_panel())  # back to a: the Check's, not b's worker
    finally:
        p.python, p.weights_folder = saved
        state.forget_answers()


def _assert_shown_whole(layout, message: str, icon: str, width: int) -> None:
    """A long message is drawn over several labels, none cut off: the first with the icon."""
    labels = [entry for entry in layout.log if entry[0] == "label"]
    first = next(i for i, entry in enumerate(labels) if message.startswith(entry[1]) and entry[2] == icon)
    lines = [labels[first][1]]
    for entry in labels[first + 1:]:
        if entry[2] != "BLANK1":
            break
        lines.append(entry[1])
    # Words longer than a line (paths) are split, so compare the text without its spaces.
    assert "".join("".join(lines).split()) == "".join(message.split()) and max(map(len, lines)) <= width


def test_long_messages_wrap_in_the_panel_and_preferences(tmp_path):
    preferences, settings, state = addon("preferences"), addon("settings"), addon("state")
    message = (f'{tmp_path}/venv/bin/python does not have Depth from Image installed; install it '
               f'with: "{tmp_path}/venv/bin/python" -m pip install depth-from-image')
    state.CHECK.update({"for": settings.backend_key(prefs()), "handshake": {}, "error": message})
    _assert_shown_whole(_drawn_preferences(), f"Backend: {message}", "ERROR", preferences.LABEL_WIDTH)
    state.forget_answers()
    state = bpy.context.window_manager.depth_from_image
    state.last_error = message
    _assert_shown_whole(_draw_panel(), message, "ERROR", 60)
    state.last_error = ""
    state.last_result = "IMG_7: 24 vertices, 30 faces in 3 s. " + message
    _assert_shown_whole(_draw_panel(), state.last_result, "CHECKMARK", 60)
    state.last_result = ""


def test_detect_returns_at_once_and_reports_later(tmp_path, monkeypatch):
    """Detect probes interpreters on a thread: a slow one does not hold the button."""
    state = addon("state")
    slow = tmp_path / "bin" / "python3"
    slow.parent.mkdir()
    release = tmp_path / "release"
    slow.write_text(f"#!/bin/sh\nwhile [ ! -e '{release}' ]; do sleep 0.05; done\nexit 3\n")
    slow.chmod(slow.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(slow.parent))
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)
    monkeypatch.delenv("CONDA_PREFIX", raising=False)
    assert bpy.ops.depth_from_image.detect_interpreter() == {"FINISHED"}
    assert state.running("detect") and state.TASKS["detect"].alive  # still probing
    release.write_text("")
    drain_timers()
    assert f"{slow}: no Depth from Image" in state.NOTES["detect"]


def test_preference_paths_never_stay_relative_to_the_open_blend(tmp_path):
    addon("preferences")
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "scene.blend"))
    with pytest.warns(RuntimeWarning) if bpy.app.version >= (4, 5, 0) else _no_warning():
        prefs().python = "//venv/bin/python"
    assert prefs().python == str(tmp_path / "venv" / "bin" / "python")
    with pytest.warns(RuntimeWarning) if bpy.app.version >= (4, 5, 0) else _no_warning():
        prefs().weights_folder = "//weights/"
    assert prefs().weights_folder == str(tmp_path / "weights")
    prefs().weights_folder = ""


class _no_warning:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_choose_photo_filters_images_and_stores_a_relative_path(tmp_path):
    addon()
    rna = bpy.ops.depth_from_image.choose_photo.get_rna_type().properties
    assert rna["filter_image"].default and "*.jpg" in rna["filter_glob"].default
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "scene.blend"))
    (tmp_path / "shots").mkdir()
    photo = write_photo(tmp_path / "shots" / "kitchen.png", 8, 6)
    settings = bpy.context.scene.depth_from_image
    settings.photo_source = "IMAGE"
    assert bpy.ops.depth_from_image.choose_photo(filepath=str(photo)) == {"FINISHED"}
    assert settings.photo_source == "FILE" and settings.photo_path == "//shots/kitchen.png"
    assert bpy.path.abspath(settings.photo_path) == str(photo)
    assert bpy.ops.depth_from_image.choose_photo(filepath=str(photo), relative_path=False) == {"FINISHED"}
    assert settings.photo_path == str(photo)
    settings.photo_path = ""


def test_choose_photos_takes_a_folders_photos_as_the_command_line_finds_them(tmp_path):
    from ppd_core.options import PHOTO_SUFFIXES

    addon()
    rna = bpy.ops.depth_from_image.choose_photos.get_rna_type().properties
    assert rna["filter_glob"].default.split(";") == [f"*{suffix}" for suffix in PHOTO_SUFFIXES]
    folder = tmp_path / "shoot"
    (folder / "later").mkdir(parents=True)
    for name in ("b.JPG", "a.png", "._a.png", ".hidden.jpg", "notes.txt", "later/c.jpg"):
        (folder / name).write_bytes(b"bytes")
    settings = bpy.context.scene.depth_from_image
    settings.photo_source = "FILE"
    assert bpy.ops.depth_from_image.choose_photos(directory=str(folder)) == {"FINISHED"}
    assert [item.path for item in settings.photo_files] == [str(folder / "a.png"), str(folder / "b.JPG")]
    assert settings.photo_source == "FILES"
    with pytest.raises(RuntimeError, match="No photos chosen"):
        bpy.ops.depth_from_image.choose_photos(directory=str(folder / "later" / "none"))
    settings.photo_files.clear()
    settings.photo_source = "FILE"


def test_near_far_are_metres_whatever_the_scene_units_and_mm_fields_say_mm():
    addon()
    props = bpy.types.Scene.bl_rna.properties["depth_from_image"].fixed_type.properties
    assert props["near"].unit == "NONE" and props["far"].unit == "NONE"  # not scaled by a mm scene
    assert "(m)" in props["near"].name and "(mm)" in props["width_mm"].name


def test_auto_resolution_is_preview_on_the_cpu_and_standard_on_a_gpu():
    properties = addon("properties")
    cpu_only = {"devices": [{"id": "cpu", "type": "cpu"}]}
    with_gpu = {"devices": [{"id": "cuda:0", "type": "cuda"}, {"id": "cpu", "type": "cpu"}]}
    assert properties.auto_resolution("auto", cpu_only) == 256 * 192
    assert properties.auto_resolution("auto", with_gpu) == 1024 * 768
    assert properties.auto_resolution("cpu", with_gpu) == 256 * 192
    assert properties.auto_resolution("cuda", with_gpu) == 1024 * 768
    settings = bpy.context.scene.depth_from_image
    assert type(settings).bl_rna.properties["resolution"].default == "AUTO"
    settings.resolution = "AUTO"
    assert properties.job_options(settings, prefs())["resolution"] is None


def test_set_up_backend_refuses_without_online_access_and_says_so():
    preferences, backend_ops, state = addon("preferences"), addon("backend_ops"), addon("state")
    system = bpy.context.preferences.system
    before, earlier_setup = system.use_online_access, state.TASKS.get("setup")
    system.use_online_access = False
    try:
        with pytest.raises(RuntimeError, match="allow online access in Preferences > System > Network"):
            bpy.ops.depth_from_image.setup_backend()
        assert state.TASKS.get("setup") is earlier_setup  # nothing was started
        drawer = DrawSelf(prefs())
        type(prefs()).draw(drawer, bpy.context)
        _assert_shown_whole(drawer.layout, backend_ops.OFFLINE_SETUP, "INTERNET_OFFLINE", preferences.LABEL_WIDTH)
    finally:
        system.use_online_access = before


class _Event:
    def __init__(self, kind: str, value: str = "PRESS") -> None:
        self.type, self.value = kind, value


def test_escape_asks_the_run_to_stop_and_other_keys_pass_through(monkeypatch):
    session = addon("session")
    operators = addon("run_ops")
    run = type("FakeRun", (), {"cancel_requested": False})()
    monkeypatch.setattr(session.SESSION, "run", run)
    operator = operators.DEPTH_OT_from_image.modal
    assert operator(object(), bpy.context, _Event("A")) == {"PASS_THROUGH"} and not run.cancel_requested
    assert operator(object(), bpy.context, _Event("ESC")) == {"RUNNING_MODAL"} and run.cancel_requested


def test_one_run_at_a_time(monkeypatch):
    session = addon("session")
    monkeypatch.setattr(session.SESSION, "run", object())
    assert not bpy.ops.depth_from_image.run.poll() and bpy.ops.depth_from_image.cancel.poll()
    with pytest.raises(session.RunError, match="A photo is already being processed"):
        session.SESSION.start_run(bpy.context)
    assert bpy.context.window_manager.depth_from_image.last_error.startswith("A photo is already being processed")
    bpy.context.window_manager.depth_from_image.last_error = ""


def test_detect_picks_the_first_python_that_has_the_package_and_never_one_without(tmp_path, monkeypatch):
    state = addon("state")
    folder = tmp_path / "bin"
    folder.mkdir()
    for name, code in (("python3", 3), ("python", 0)):  # the probe's exit code: 0 = has ppd_core
        (folder / name).write_text(f"#!/bin/sh\nexit {code}\n")
        (folder / name).chmod(0o755)
    monkeypatch.setenv("PATH", str(folder))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))  # no set-up backend (another test makes one)
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)
    monkeypatch.delenv("CONDA_PREFIX", raising=False)
    prefs().python = ""
    bpy.ops.depth_from_image.detect_interpreter()
    drain_timers()
    assert prefs().python == str(folder / "python")
    assert state.NOTES["detect"] == [f"{folder / 'python3'}: no Depth from Image",
                                            f"{folder / 'python'}: Depth from Image installed"]
    (folder / "python").write_text("#!/bin/sh\nexit 3\n")
    prefs().python = ""
    bpy.ops.depth_from_image.detect_interpreter()
    drain_timers()
    assert prefs().python == ""  # none has the package: nothing is filled in
    assert state.NOTES["detect"][-1] == "No Python with Depth from Image found: use Set up backend"


def test_message_lines_fit_the_region_width():
    ui_text = addon("ui_text")

    class Region:
        width = 300

    context = type("Context", (), {"region": Region(), "preferences": bpy.context.preferences})()
    narrow = ui_text.chars_per_line(context)
    Region.width = 900
    assert 20 <= narrow < ui_text.chars_per_line(context)
    assert ui_text.chars_per_line(type("NoRegion", (), {"region": None})()) == 60


def test_every_value_the_panel_allows_is_one_the_worker_accepts():
    """The sliders' hard limits pass the pipeline's own option checks (no run that fails in
    the worker for a value the panel let through)."""
    pipeline = pytest.importorskip("ppd_core.pipeline")
    pytest.importorskip("cv2")  # JobOptions.validate checks print sizes with mesh.solid
    properties = addon("properties")
    settings = bpy.context.scene.depth_from_image
    rna = type(settings).bl_rna.properties
    names = ("width_mm", "relief_mm", "base_mm", "steps", "near", "far", "fov", "edge_strength")
    saved = {name: getattr(settings, name) for name in names}
    saved.update(preset=settings.preset, fov_source=settings.fov_source, resolution=settings.resolution)
    settings.preset, settings.fov_source = "custom", "MANUAL"
    try:
        for end in ("hard_min", "hard_max"):
            for name in names:
                setattr(settings, name, getattr(rna[name], end))
            if settings.near >= settings.far:
                settings.near, settings.far = rna["near"].hard_min, rna["far"].soft_max
            for resolution in properties.RESOLUTIONS:
                settings.resolution = resolution
                options = properties.job_options(settings, prefs())
                pipeline.JobOptions(**options).validate()
    finally:
        for name, value in saved.items():
            setattr(settings, name, value)


def test_create_camera_is_greyed_out_for_print_solids():
    settings = bpy.context.scene.depth_from_image
    shown = {}
    for output in ("MESH", "POINTS", "SOLID"):
        settings.output = output
        props = {entry[1]: entry for entry in _draw_panel().log if entry[0] == "prop"}
        shown[output] = (props["create_camera"][3], "shading" in props, "width_mm" in props)
    settings.output = "MESH"
    assert shown == {"MESH": (True, True, False), "POINTS": (True, True, False), "SOLID": (False, False, True)}


def test_the_worker_log_rotates_only_before_a_new_worker_and_a_log_in_use_is_kept(monkeypatch, tmp_path):
    """Asking for the log's path (a run, a Check, Open Worker Log) never moves it: a live
    worker's client reads its crash lines back from it. Only a new worker's start does."""
    settings, session = addon("settings"), addon("session")
    monkeypatch.setattr(settings, "LOG_MAX_BYTES", 10)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    path = settings.worker_log_path()
    os.makedirs(os.path.dirname(path))
    with open(path, "w") as handle:
        handle.write("x" * 20)
    assert settings.worker_log_path() == path and os.path.getsize(path) == 20
    session.SESSION._ensure_worker(str(tmp_path / "no-python"), path, {})  # fails to start, after rotating
    session.SESSION.shutdown()
    assert os.path.getsize(path + ".1") == 20
    with open(path, "w") as handle:
        handle.write("y" * 20)

    def in_use(*args):
        raise PermissionError(13, "The process cannot access the file", path)

    monkeypatch.setattr(settings.os, "replace", in_use)
    settings.rotate_log(path)
    assert os.path.getsize(path) == 20  # kept, no error: rotated another time
