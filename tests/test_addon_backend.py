"""Preferences back end: torch wheel index choice, setup commands, interpreter detection, Check."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time

import pytest

from tests.blender_harness import REPO, WORKER_PYTHON, addon

NVIDIA_SMI = """
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 550.54.15              Driver Version: 550.54.15      CUDA Version: 12.4     |
|-----------------------------------------+------------------------+----------------------+
"""


@pytest.fixture(scope="module")
def setup_mod():
    return addon("backend_setup")


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


def test_setup_commands_create_the_venv_then_install_torch_then_the_package(setup_mod, tmp_path):
    venv = str(tmp_path / "env")
    commands = setup_mod.setup_commands("/usr/bin/python3", venv, "https://download.pytorch.org/whl/cpu",
                                        ["/ext/wheels/depth_from_image-0.1.0-py3-none-any.whl"])
    python = setup_mod.venv_python(venv)
    assert commands[0] == ["/usr/bin/python3", "-m", "venv", venv]
    assert commands[2] == [python, "-m", "pip", "install", "torch", "--index-url",
                           "https://download.pytorch.org/whl/cpu"]
    assert commands[3] == [python, "-m", "pip", "install", "/ext/wheels/depth_from_image-0.1.0-py3-none-any.whl"]
    shared = setup_mod.setup_commands("/usr/bin/python3", venv, None, ["x"], system_site_packages=True)
    assert shared[0] == ["/usr/bin/python3", "-m", "venv", "--system-site-packages", venv]
    assert setup_mod.format_command(["/a b/python", "-m", "venv"]) == '"/a b/python" -m venv'


def test_the_package_is_the_bundled_wheel_unless_overridden(setup_mod, tmp_path):
    (tmp_path / "wheels").mkdir()
    assert setup_mod.bundled_wheel(str(tmp_path)) is None
    with pytest.raises(ValueError, match="carries no wheel"):
        setup_mod.package_arguments("", None)
    wheel = tmp_path / "wheels" / "depth_from_image-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"")
    assert setup_mod.package_arguments("", setup_mod.bundled_wheel(str(tmp_path))) == [str(wheel)]
    assert setup_mod.package_arguments(f"  {tmp_path}  ", str(wheel)) == [str(tmp_path)]  # a source folder
    assert setup_mod.package_arguments("depth-from-image>=0.2", str(wheel)) == ["depth-from-image>=0.2"]
    assert setup_mod.package_arguments("other.whl", None) == [os.path.abspath("other.whl")]


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
    setup = setup_mod.BackendSetup(str(tmp_path / "env"), str(log), package=["x"], base_python=str(failing))
    setup.start()
    deadline = time.monotonic() + 60
    while not setup.status().done:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    status = setup.status()
    assert "Creating the environment failed (exit code 3)" in status.error and str(failing) in status.error
    assert status.cause == "venv: permission denied" and status.reason  # why these wheels, kept
    assert status.commands[0].startswith(str(failing)) and len(status.commands) == 4
    text = log.read_text()
    assert f"$ {failing} -m venv" in text and "venv: permission denied" in text


def test_candidates_list_the_setup_venv_then_the_active_venv(tmp_path):
    interpreters = addon("interpreters")
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
    interpreters = addon("interpreters")
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
    preferences = addon("backend_ops")
    client = preferences.worker_client
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    handshake = client.check_interpreter(WORKER_PYTHON, 120, log_path=str(tmp_path / "w.log"))
    ok, text = preferences.check_result_text(handshake)
    assert ok and text.startswith("OK: Depth from Image 0.1.0, torch ") and "devices: cpu (" in text
    try:
        client.check_interpreter(str(tmp_path / "missing" / "python"), 10)
    except client.WorkerError as error:
        ok, text = preferences.check_result_text(error)
    assert not ok and text.startswith(f"Python interpreter not found: {tmp_path / 'missing' / 'python'}")
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
