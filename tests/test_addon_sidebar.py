"""What the sidebar shows while the backend is set up and after it failed, the weights check
that runs by itself, the precision line, and the Print Solid method. Set up backend runs
against a stand-in Python (a shell script) that answers as pip does, so no download happens."""

from __future__ import annotations

import os
import stat
import time

import pytest

from tests.blender_harness import (
    REPO,
    WORKER_PYTHON,
    DrawSelf,
    addon,
    bpy,
    drain_timers,
    prefs,
    write_small_weights,
)

TORCH_WHEEL = "torch-2.6.0-cp311-cp311-linux_x86_64.whl"
# The environment's python: pip 24.2 (so --progress-bar raw), a dry run that refuses
# "bad-package", and a torch download that holds at 1.0 of 2.5 GB until the test releases it.
ENV_PYTHON = """#!/bin/sh
echo "$*" >> "{log}"
case "$*" in
  "-m pip --version") echo "pip 24.2 from /fake/pip (python 3.11)";;
  *--dry-run*bad-package*) echo "Collecting bad-package"
     echo "ERROR: Could not find a version that satisfies the requirement bad-package (from versions: none)"
     echo "ERROR: No matching distribution found for bad-package"; exit 1;;
  *--dry-run*) echo "Would install depth-from-image-0.1.0";;
  *"install torch"*) echo "Collecting torch"
     echo "  Downloading {wheel} (2500.0 MB)"
     echo "Progress 0 of 2500000000"
     echo "Progress 1000000000 of 2500000000"
     while [ ! -e "{release}" ]; do sleep 0.05; done
     echo "Progress 2500000000 of 2500000000"
     echo "Successfully installed torch-2.6.0";;
  *) echo "Successfully installed";;
esac
"""
BASE_PYTHON = """#!/bin/sh
for last; do :; done
mkdir -p "$last/bin" && cp "{env_python}" "$last/bin/python" && chmod +x "$last/bin/python"
"""


def _draw_panel():
    drawer = DrawSelf(None)
    addon("panel").VIEW3D_PT_depth_from_image.draw(drawer, bpy.context)
    return drawer.layout


def _shown(layout) -> str:
    return "".join("".join(layout.labels()).split())


@pytest.fixture
def fake_pythons(tmp_path, monkeypatch):
    """A base Python whose `-m venv` makes an environment of the stand-in python; the backend's
    folder in tmp_path; online access on; the package the extension's wheel."""
    setup, state = addon("backend.setup"), addon("state")
    env_python, base = tmp_path / "env-python", tmp_path / "base-python"
    log, release = tmp_path / "pip-args.log", tmp_path / "release"
    env_python.write_text(ENV_PYTHON.format(log=log, wheel=TORCH_WHEEL, release=release))
    base.write_text(BASE_PYTHON.format(env_python=env_python))
    for script in (env_python, base):
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(setup, "base_interpreter", lambda: str(base))
    monkeypatch.setattr(setup, "driver_cuda_version", lambda: None)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    system = bpy.context.preferences.system
    p = prefs()
    saved = (system.use_online_access, p.python, p.package_spec)
    system.use_online_access, p.python, p.package_spec = True, "", ""
    state.forget_answers()
    yield log, release
    release.write_text("")
    if "setup" in state.TASKS:
        state.TASKS["setup"].join(30)
    drain_timers()
    state.TASKS.pop("setup", None)
    system.use_online_access, p.python, p.package_spec = saved
    state.forget_answers()


def _wait(condition, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_the_sidebar_shows_set_up_bytes_and_cancel_and_then_the_interpreter(fake_pythons):
    log, release = fake_pythons
    settings, state = addon("settings"), addon("state")
    assert bpy.ops.depth_from_image.setup_backend() == {"FINISHED"}
    _wait(lambda: (state.status("setup").download or addon("backend.pip_output").Download()).done == 10**9)
    layout = _draw_panel()
    shown = _shown(layout)
    assert "".join(f"Backend: being set up in {settings.backend_dir()}".split()) in shown
    [bar] = [entry for entry in layout.log if entry[0] == "progress" and entry[1].startswith("Installing torch")]
    assert bar[1] == f"Installing torch: {TORCH_WHEEL}: 1.00 of 2.50 GB"
    assert bar[2] == pytest.approx(0.02 + 0.05 + 0.03 + 0.75 * 0.4)  # the earlier steps, then 40 % of torch's share
    ids = [button.idname for button in layout.operators()]
    assert "depth_from_image.cancel_setup" in ids and "depth_from_image.setup_backend" not in ids
    release.write_text("")
    state.TASKS["setup"].join(30)
    drain_timers()
    python = os.path.join(settings.backend_dir(), "bin", "python")
    assert state.status("setup").error == "" and prefs().python == python
    assert "".join(f"Backend: {python} (not checked yet)".split()) in _shown(_draw_panel())
    calls = log.read_text().splitlines()  # (the weights check may have run the stand-in too, after)
    [check] = [number for number, call in enumerate(calls) if "--dry-run" in call]
    torch = calls.index("-m pip install torch --progress-bar raw --index-url https://download.pytorch.org/whl/cpu")
    package = calls[check].split()[-1]
    assert package.endswith(".whl") and check < torch  # the package resolved first, then torch, then it
    assert calls.index(f"-m pip install --progress-bar raw {package}") > torch


def test_a_failed_set_up_says_why_and_what_next_in_the_sidebar_before_any_torch(fake_pythons):
    log, _ = fake_pythons
    state = addon("state")
    prefs().package_spec = "bad-package"
    assert bpy.ops.depth_from_image.setup_backend() == {"FINISHED"}
    state.TASKS["setup"].join(30)
    drain_timers()
    layout = _draw_panel()
    shown = _shown(layout)
    assert "Backend:notsetup" in shown
    assert "".join("Set up failed: Checking the package failed (exit code 1)".split()) in shown
    assert "".join("Cause: ERROR: Could not find a version that satisfies the requirement bad-package".split()) in shown
    assert "".join("Next: correct Package in the add-on preferences".split()) in shown
    ids = [button.idname for button in layout.operators()]
    assert "depth_from_image.open_log" in ids and "depth_from_image.setup_backend" in ids
    assert not any("install torch" in call for call in log.read_text().splitlines())  # found before torch


def test_a_package_path_that_does_not_exist_is_refused_at_once(fake_pythons, tmp_path):
    state = addon("state")
    prefs().package_spec = str(tmp_path / "dist" / "depth_from_image-9.whl")
    with pytest.raises(RuntimeError, match="does not exist: correct the path"):
        bpy.ops.depth_from_image.setup_backend()
    assert "setup" not in state.TASKS


def test_the_weights_check_runs_by_itself_when_the_panel_first_draws(monkeypatch, tmp_path):
    """Without a worker, the first draw asks the backend (`ppd-weights where --json`, no torch)
    which model the Weights Folder makes; the draw does not wait for the answer."""
    state, session = addon("state"), addon("session")
    weights = write_small_weights(tmp_path / "weights")
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setattr(session.SESSION, "client", None)
    p = prefs()
    saved = (p.python, p.weights_folder)
    p.python, p.weights_folder = WORKER_PYTHON, str(weights)
    state.forget_answers()
    try:
        started = time.monotonic()
        shown = _shown(_draw_panel())
        assert time.monotonic() - started < 0.5 and state.running("weights-check")
        assert "".join(f"Weights: looking in {weights}".split()) in shown
        task = state.TASKS["weights-check"]
        drain_timers()
        layout = _draw_panel()
        assert state.TASKS["weights-check"] is task  # asked once for these settings
        assert ("label", "Weights: PPD with Depth Anything V2 semantics; no MoGe-2", "CHECKMARK") in [
            (kind, text[:56], icon) for kind, text, icon in (e for e in layout.log if e[0] == "label")]
        (weights / "ppd.pth").unlink()
        assert bpy.ops.depth_from_image.check_weights() == {"FINISHED"}
        drain_timers()
        shown = _shown(_draw_panel())
        assert "".join(f"Weights: the Weights Folder {weights} lacks ppd.pth. Next:".split()) in shown
        assert "--weights" not in shown and "ppd-weights" not in shown
    finally:
        p.python, p.weights_folder = saved
        state.forget_answers()


def test_the_status_block_shows_the_precision_on_the_runs_device_and_why(monkeypatch):
    settings, state, session = addon("settings"), addon("state"), addon("session")
    monkeypatch.setattr(session.SESSION, "client", None)
    monkeypatch.setattr(session.SESSION, "last_stats", {})
    p = prefs()
    saved = (p.python, p.precision, p.device)
    p.python, p.precision, p.device = "/opt/a/bin/python", "auto", "auto"
    why = "the CPU has AMX-BF16, runs bf16 matmuls 3.6x as fast, and every layer agreed with fp32 within 0.4 %"
    handshake = {"python": "3.12.1", "torch": "2.13.0", "devices": [{"id": "cuda:0"}, {"id": "cpu"}],
                 "precision": {"cuda:0": {"auto": "bf16", "why": "the GPU runs bf16"},
                               "cpu": {"auto": "bf16", "why": why}}}
    try:
        state.CHECK.update({"for": settings.backend_key(p), "handshake": handshake, "error": ""})
        assert "".join("Precision on cuda:0: bf16 (the GPU runs bf16)".split()) in _shown(_draw_panel())
        p.device, p.precision = "cpu", "fp32"
        state.CHECK["for"] = settings.backend_key(p)
        assert "".join(f"Precision on cpu: fp32, as set (Auto would run bf16: {why})".split()) in _shown(_draw_panel())
    finally:
        p.python, p.precision, p.device = saved
        state.forget_answers()


def test_print_solid_always_sends_the_relief_method_the_panel_describes():
    properties = addon("properties")
    settings = bpy.context.scene.depth_from_image
    saved = (settings.output, settings.mesh_method)
    try:
        settings.output, settings.mesh_method = "MESH", "POISSON"
        assert properties.job_options(settings, prefs())["method"] == "poisson"
        settings.output = "SOLID"  # the panel hides Method for a solid: Poisson tried earlier must not leak in
        assert properties.job_options(settings, prefs())["method"] == "grid"
        shown = [entry[1] for entry in _draw_panel().log if entry[0] == "prop"]
        assert "mesh_method" not in shown and "width_mm" in shown
    finally:
        settings.output, settings.mesh_method = saved
