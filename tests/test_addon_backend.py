"""Preferences back end: torch wheel index choice, setup commands, interpreter detection, Check."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile

import pytest

from tests.blender_harness import REPO, WORKER_PYTHON, addon, bpy, drain_timers, prefs

NVIDIA_SMI = """
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 550.54.15              Driver Version: 550.54.15      CUDA Version: 12.4     |
|-----------------------------------------+------------------------+----------------------+
"""


@pytest.fixture(scope="module")
def setup_mod():
    return addon("backend.setup")


def test_cuda_version_from_nvidia_smi(setup_mod):
    assert setup_mod.parse_cuda_version(NVIDIA_SMI) == (12, 4)
    assert setup_mod.parse_cuda_version("NVIDIA-SMI has failed because it couldn't communicate") is None


@pytest.mark.parametrize("system, cuda, tag", [
    ("Linux", (12, 4), "cu118"),
    ("Linux", (12, 6), "cu126"),
    ("Windows", (12, 9), "cu128"),
    ("Linux", (13, 1), "cu130"),
    ("Linux", (11, 4), "cpu"),
    ("Linux", None, "cpu"),
    ("Windows", None, "cpu"),
])
def test_torch_index_fits_the_driver(setup_mod, system, cuda, tag):
    url, why = setup_mod.torch_index_url(system, cuda)
    assert url == "https://download.pytorch.org/whl/" + tag and why


def test_macos_uses_the_default_index_for_mps(setup_mod):
    url, why = setup_mod.torch_index_url("Darwin", None)
    assert url is None and "MPS" in why


def test_setup_commands_check_the_package_before_torch(setup_mod, tmp_path):
    venv = str(tmp_path / "env")
    wheel = "/ext/wheels/depth_from_image-0.1.0-py3-none-any.whl"
    commands = setup_mod.setup_commands("/usr/bin/python3", venv, "https://download.pytorch.org/whl/cpu", [wheel])
    python = setup_mod.venv_python(venv)
    assert [label for label, _ in setup_mod.STEPS] == ["Creating the environment", "Updating pip",
                                                       "Checking the package", "Installing torch",
                                                       "Installing Depth from Image"]
    assert commands[0] == ["/usr/bin/python3", "-m", "venv", venv]
    assert commands[2] == [python, "-m", "pip", "install", "--dry-run", "--no-deps", wheel]
    assert commands[3] == [python, "-m", "pip", "install", "torch", "--index-url",
                           "https://download.pytorch.org/whl/cpu"]
    assert commands[4] == [python, "-m", "pip", "install", wheel]
    shared = setup_mod.setup_commands("/usr/bin/python3", venv, None, ["x"], system_site_packages=True,
                                      raw_progress=True)
    assert shared[0] == ["/usr/bin/python3", "-m", "venv", "--system-site-packages", venv]
    assert shared[3] == [python, "-m", "pip", "install", "torch", "--progress-bar", "raw"]
    assert shared[4] == [python, "-m", "pip", "install", "--progress-bar", "raw", "x"]
    assert setup_mod.format_command(["/a b/python", "-m", "venv"]) == '"/a b/python" -m venv'


def test_the_package_is_the_bundled_wheel_unless_overridden(setup_mod, tmp_path):
    (tmp_path / "wheels").mkdir()
    assert setup_mod.bundled_wheel(str(tmp_path)) is None
    with pytest.raises(ValueError, match="carries no wheel"):
        setup_mod.package_arguments("", None)
    wheel = tmp_path / "wheels" / "depth_from_image-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"")
    (tmp_path / "wheels" / "depth_from_image_blender-0.1.0-py3-none-any.whl").write_bytes(b"")  # Blender's, not it
    assert setup_mod.package_arguments("", setup_mod.bundled_wheel(str(tmp_path))) == [str(wheel)]
    (tmp_path / "pyproject.toml").write_text("")
    assert setup_mod.package_arguments(f"  {tmp_path}  ", str(wheel)) == [str(tmp_path)]  # a source folder
    for requirement in ("depth-from-image>=0.2", "depth_from_image[heic] >=0.1, <1", "depth-from-image==0.1.0",
                        "depth-from-image @ https://example.org/d.whl"):
        assert setup_mod.package_arguments(requirement, str(wheel)) == [requirement]
    assert setup_mod.package_arguments(str(wheel), None) == [str(wheel)]


@pytest.mark.parametrize("override, says", [
    ("~/nowhere/depth_from_image-0.1.0-py3-none-any.whl", "does not exist"),
    ("./no-such-folder", "does not exist"),
    ("depth from image", "neither a file, a folder nor a PyPI requirement"),
    ("depth-from-image=>0.1", "neither a file, a folder nor a PyPI requirement"),
])
def test_a_mistyped_package_override_is_refused_before_anything_runs(setup_mod, override, says):
    with pytest.raises(ValueError, match=says):
        setup_mod.package_arguments(override, None)


def test_a_folder_without_a_project_is_refused(setup_mod, tmp_path):
    with pytest.raises(ValueError, match="holds no pyproject.toml"):
        setup_mod.package_arguments(str(tmp_path), None)


def test_the_backend_lives_outside_the_extension(setup_mod):
    assert setup_mod.backend_home("Linux", {"XDG_DATA_HOME": "/data"}) == "/data/depth-from-image"
    assert setup_mod.backend_home("Windows", {"LOCALAPPDATA": r"C:\\Users\\me\\AppData\\Local"}).endswith(
        "depth-from-image")
    assert "Application Support" in setup_mod.backend_home("Darwin", {})


@pytest.mark.parametrize("lines, cause", [
    (["Looking in indexes: https://pypi.org/simple",
      "WARNING: Retrying ... NewConnectionError('<pip._vendor.urllib3.connection.HTTPSConnection>: Failed to "
      "establish a new connection: [Errno -2] Name or service not known')",
      "ERROR: Could not find a version that satisfies the requirement filelock (from torch)",
      "ERROR: No matching distribution found for filelock"], "Name or service not known"),
    (["Collecting torch", "ERROR: Could not install packages due to an OSError: [Errno 28] No space left on device"],
     "No space left on device"),
    (["Collecting nothing", "ERROR: Invalid requirement: 'depth from image'"], "ERROR: Invalid requirement"),
    (["something went wrong"], "something went wrong"),
])
def test_the_root_cause_of_a_failed_step_is_its_telling_line(setup_mod, lines, cause):
    assert cause in setup_mod.root_cause(lines)


def test_failed_setup_reports_the_command_and_logs_it(setup_mod, tmp_path):
    log = tmp_path / "setup.log"
    # A base "python" that exits with an error stands in for a broken interpreter.
    failing = tmp_path / "python-that-fails"
    failing.write_text("#!/bin/sh\necho 'venv: permission denied' >&2\nexit 3\n")
    failing.chmod(failing.stat().st_mode | stat.S_IXUSR)
    setup = setup_mod.start_setup(str(tmp_path / "env"), str(log), package=["x"], base_python=str(failing))
    status = setup.join(60)
    assert "Creating the environment failed (exit code 3)" in status.error and str(failing) in status.error
    assert status.cause == "venv: permission denied" and status.reason  # why these wheels, kept
    assert "not writable" in status.next_step  # what to do about it
    assert status.commands[0].startswith(str(failing)) and len(status.commands) == 5
    text = log.read_text()
    assert f"$ {failing} -m venv" in text and "venv: permission denied" in text


def test_candidates_list_the_setup_venv_then_the_active_venv(tmp_path):
    interpreters = addon("backend.interpreters")
    setup_venv, active = tmp_path / "setup", tmp_path / "active"
    for venv in (setup_venv, active):
        (venv / "bin").mkdir(parents=True)
        (venv / "bin" / "python").write_text("")
    found = interpreters.candidate_interpreters(str(setup_venv), {"VIRTUAL_ENV": str(active), "PATH": ""})
    assert found == [str(setup_venv / "bin" / "python"), str(active / "bin" / "python")]
    missing = interpreters.candidate_interpreters(str(tmp_path / "none"), {"PATH": ""})
    assert missing == []
    alias = tmp_path / "WindowsApps"
    alias.mkdir()
    (alias / "python3").write_text("")
    (alias / "python3").chmod(0o755)
    assert interpreters.candidate_interpreters(None, {"PATH": str(alias)}) == []


def test_package_probe_tells_interpreters_apart(tmp_path, monkeypatch):
    interpreters = addon("backend.interpreters")
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    assert interpreters.has_worker_package(WORKER_PYTHON)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    assert interpreters.has_worker_package(WORKER_PYTHON) == _installed()
    assert not interpreters.has_worker_package(str(tmp_path / "no-python"))


def _installed() -> bool:
    """Whether the worker Python has depth-from-image installed (not just on PYTHONPATH)."""
    code = "import importlib.metadata as m; m.distribution('depth-from-image')"
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    return subprocess.run([WORKER_PYTHON, "-c", code], capture_output=True, env=env, cwd="/", check=False).returncode == 0


def test_check_shows_versions_and_devices_or_the_problem(tmp_path, monkeypatch):
    backend_ops, status = addon("backend_ops"), addon("status")
    client = backend_ops.worker_client
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    handshake = client.check_interpreter(WORKER_PYTHON, 120, log_path=str(tmp_path / "w.log"))
    assert backend_ops.check_error_text(handshake) == ""
    text, ok = status.backend_line(prefs(), handshake)
    assert ok and text.startswith(f"Backend: Python {handshake['python']}, torch ") and "devices cpu (" in text
    try:
        client.check_interpreter(str(tmp_path / "missing" / "python"), 10)
    except client.WorkerError as error:
        text = backend_ops.check_error_text(error)
    assert text.startswith(f"Python interpreter not found: {tmp_path / 'missing' / 'python'}")
    assert os.path.isfile(tmp_path / "w.log")


def _fake_python(folder, name: str, version: str):
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(f"#!/bin/sh\necho {version}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_setup_base_python_skips_old_pythons_and_falls_back_to_blenders(setup_mod, tmp_path):
    old = _fake_python(tmp_path / "a", "python3", "3.8")
    good = _fake_python(tmp_path / "a", "python", "3.12")
    assert setup_mod.python_version(str(good)) == (3, 12)
    assert setup_mod.base_interpreter(path=str(tmp_path / "a")) == str(good)
    old.write_text("#!/bin/sh\nexit 9009\n")  # a stub that runs no Python (Windows' Store alias does this)
    good.unlink()
    assert setup_mod.python_version(str(old)) is None
    assert setup_mod.base_interpreter(path=str(tmp_path / "a")) == sys.executable


def test_remove_backend_waits_for_runs_and_downloads_then_closes_the_idle_worker(monkeypatch, tmp_path):
    backend_ops, session, settings, state = addon("backend_ops"), addon("session"), addon("settings"), addon("state")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    folder = settings.backend_dir()
    os.makedirs(os.path.join(folder, "bin"))
    monkeypatch.delitem(state.TASKS, "download", raising=False)
    remove = bpy.ops.depth_from_image.remove_backend
    assert remove.poll()
    monkeypatch.setattr(session.SESSION, "run", object())
    assert not remove.poll() and not bpy.ops.depth_from_image.setup_backend.poll()
    monkeypatch.setattr(session.SESSION, "run", None)
    unfinished = type("Download", (), {"status": lambda self: type("Status", (), {"done": False})()})()
    monkeypatch.setitem(state.TASKS, "download", unfinished)
    assert not remove.poll()
    monkeypatch.delitem(state.TASKS, "download")

    closed = []
    worker = type("Client", (), {"handshake": {"python": "3.12.1"}, "close": lambda self, timeout: closed.append(1)})()
    monkeypatch.setattr(session.SESSION, "starter", None)
    monkeypatch.setattr(session.SESSION, "client", worker)
    p = prefs()
    saved, p.python = p.python, "/usr/bin/python3"  # a Python outside the backend: the preference stays
    state.CHECK.update({"for": settings.backend_key(p), "handshake": {"python": "3.12.1"}, "error": ""})
    try:
        assert remove("EXEC_DEFAULT") == {"FINISHED"}
        assert closed and session.SESSION.client is None  # closed before its files go
        assert state.CHECK["for"] is None  # the status block no longer shows the removed backend
        drain_timers()
        assert not os.path.exists(folder) and p.python == "/usr/bin/python3"
        assert state.NOTES["removal"] == f"Removed the backend {folder}" and state.NOTES["removal_ok"]
    finally:
        p.python = saved
        state.NOTES.update(removal="", removal_ok=False)


def test_download_weights_runs_online_with_utf8_pipes(monkeypatch, tmp_path):
    weights_ops, tasks = addon("weights_ops"), addon("backend.tasks")
    made = []

    def recorder(python, folder, names, env, video=False):
        made.append(env)
        return tasks.Task("download", lambda task: None).start()

    monkeypatch.setattr(weights_ops.weights_download, "start_download", recorder)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("PYTHONIOENCODING", raising=False)
    system = bpy.context.preferences.system
    p = prefs()
    saved = (system.use_online_access, p.python, p.accept_licences, p.weights_folder)
    system.use_online_access, p.python, p.accept_licences, p.weights_folder = True, sys.executable, True, str(tmp_path)
    try:
        assert bpy.ops.depth_from_image.download_weights() == {"FINISHED"}
        drain_timers()
    finally:
        system.use_online_access, p.python, p.accept_licences, p.weights_folder = saved
    assert made[0]["PYTHONIOENCODING"] == "utf-8" and "HF_HUB_OFFLINE" not in made[0]


def test_the_download_runs_in_a_neutral_folder(monkeypatch, tmp_path):
    """`python -m` puts the working folder first on sys.path: Blender's must not lend a ppd_core."""
    weights_download = addon("backend.weights_download")
    fake = tmp_path / "python"
    fake.write_text('#!/bin/sh\necho "{\\"file\\": \\"$(pwd -P)\\", \\"bytes\\": 1}"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.chdir(tmp_path)
    download = weights_download.start_download(str(fake), str(tmp_path / "w"), ["moge2.pt"], dict(os.environ))
    status = download.join(30)
    assert status.done and not status.error and status.current == os.path.realpath(tempfile.gettempdir())
