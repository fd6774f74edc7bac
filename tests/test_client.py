"""The worker client on its own: imports with the standard library only, and starting a
worker with a wrong interpreter fails with an error that says what to do."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import venv
from pathlib import Path

import pytest

from ppd_core import client
from ppd_core.client import WorkerClient, WorkerError, check_interpreter

REPO = Path(__file__).resolve().parents[1]
WITH_REPO = {"PYTHONPATH": str(REPO)}

IMPORT_ALONE = f"""
import sys
sys.path.insert(0, {str(REPO)!r})
before = set(sys.modules)
import ppd_core.client as module
new = set(sys.modules) - before
foreign = sorted({{name.split(".")[0] for name in new}} - set(sys.stdlib_module_names) - {{"ppd_core"}})
assert not foreign, foreign
ours = sorted(name for name in new if name.startswith("ppd_core."))
assert ours == ["ppd_core.client"], ours
assert module.PROTOCOL_VERSION == 2
assert issubclass(module.WorkerError, Exception)
print("ok", sys.version_info[:2])
"""


def interpreters_to_check() -> list:
    """This interpreter plus one each of Python 3.11-3.13 found on this machine, oldest first."""
    found = {f"{sys.version_info[0]}.{sys.version_info[1]}": sys.executable}
    for version in ("3.11", "3.12", "3.13"):
        candidates = [shutil.which(f"python{version}")]
        candidates += [str(p) for p in Path.home().glob(f".pyenv/versions/{version}.*/bin/python{version}")]
        for candidate in filter(None, candidates):
            if version in found:
                break
            if subprocess.run([candidate, "-c", "pass"], capture_output=True).returncode == 0:
                found[version] = candidate
    return [found[version] for version in sorted(found, key=lambda v: tuple(map(int, v.split("."))))]


@pytest.mark.parametrize("python", interpreters_to_check())
def test_client_file_imports_alone_with_the_standard_library(python, tmp_path):
    # -I: no environment variables, no user site; -S: no site-packages at all.
    done = subprocess.run([python, "-I", "-S", "-c", IMPORT_ALONE], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok")
    shutil.copy(REPO / "ppd_core" / "client.py", tmp_path / "client_copy.py")  # the file alone, no package
    copied = "import sys; sys.path.insert(0, '.'); import client_copy; print(client_copy.PROTOCOL_VERSION)"
    done = subprocess.run([python, "-I", "-S", "-c", copied], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(client.PROTOCOL_VERSION)


def test_a_bare_newest_python_drives_a_worker_with_the_client_file_alone(tmp_path):
    """Blender 5.1 has Python 3.13 and no packages: the copied client must still work there."""
    newest = interpreters_to_check()[-1]
    script = IMPORT_ALONE + f"""
handshake = module.check_interpreter({sys.executable!r}, env={{"PYTHONPATH": {str(REPO)!r}}},
                                     log_path={str(tmp_path / "w.log")!r})
print(handshake["type"], handshake["protocol"], handshake["python"])
"""
    done = subprocess.run([newest, "-I", "-S", "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith(f"handshake {client.PROTOCOL_VERSION} ")


def test_missing_interpreter_is_reported(tmp_path):
    missing = str(tmp_path / "no-such-python")
    with pytest.raises(WorkerError) as caught:
        WorkerClient(missing, log_path=str(tmp_path / "w.log")).start()
    assert caught.value.kind == "interpreter_not_found"
    assert missing in str(caught.value)


def test_folder_as_interpreter_is_reported(tmp_path):
    with pytest.raises(WorkerError) as caught:
        check_interpreter(str(tmp_path), log_path=str(tmp_path / "w.log"))
    assert caught.value.kind == "interpreter_not_found"
    assert "\n" not in str(caught.value)


@pytest.mark.skipif(os.name == "nt", reason="needs /bin/false")
def test_program_that_exits_at_once_reports_exit_code(tmp_path):
    with pytest.raises(WorkerError) as caught:
        check_interpreter("/bin/false", log_path=str(tmp_path / "w.log"))
    assert caught.value.kind == "start_failed"
    assert "exit code 1" in str(caught.value)


@pytest.mark.skipif(os.name == "nt", reason="needs /bin/false")
def test_earlier_lines_of_a_shared_log_do_not_mislead_the_diagnosis(tmp_path):
    log = tmp_path / "shared.log"
    log.write_text("Error while finding module specification for 'ppd_core.worker' "
                   "(ModuleNotFoundError: No module named 'ppd_core')\n")
    with pytest.raises(WorkerError) as caught:
        check_interpreter("/bin/false", log_path=str(log))
    assert caught.value.kind == "start_failed" and caught.value.log_tail == []
    assert "No module named" in log.read_text()  # appended to, never truncated


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory) -> str:
    """A real venv with no packages at all: no torch, no ppd_core unless PYTHONPATH says so."""
    folder = tmp_path_factory.mktemp("bare-venv")
    venv.create(folder, with_pip=False, symlinks=os.name != "nt")
    python = str(folder / ("Scripts/python.exe" if os.name == "nt" else "bin/python"))
    probe = subprocess.run([python, "-c", "import torch"], capture_output=True, env={**os.environ, **WITH_REPO})
    if probe.returncode == 0:
        pytest.skip("the base interpreter of this venv has torch")
    return python


def test_interpreter_without_the_package_says_how_to_install_it(bare_python, tmp_path):
    with pytest.raises(WorkerError) as caught:
        check_interpreter(bare_python, env={"PYTHONPATH": None}, log_path=str(tmp_path / "w.log"))
    assert caught.value.kind == "package_missing"
    message = str(caught.value)
    assert f'"{bare_python}" -m pip install depth-from-image' in message


def test_interpreter_without_torch_says_how_to_install_it(bare_python, tmp_path):
    with pytest.raises(WorkerError) as caught:
        check_interpreter(bare_python, env=WITH_REPO, log_path=str(tmp_path / "w.log"))
    assert caught.value.kind == "torch_missing"
    message = str(caught.value)
    assert "torch is not installed" in message and f'"{bare_python}" -m pip install torch' in message


def test_protocol_mismatch_is_reported(monkeypatch, tmp_path):
    monkeypatch.setattr(client, "PROTOCOL_VERSION", 99)
    with pytest.raises(WorkerError) as caught:
        check_interpreter(sys.executable, env=WITH_REPO, log_path=str(tmp_path / "w.log"))
    assert caught.value.kind == "protocol_mismatch"
    assert "protocol 2" in str(caught.value) and "needs protocol 99" in str(caught.value)


def test_check_interpreter_returns_the_handshake_and_stops_the_worker(tmp_path):
    handshake = check_interpreter(sys.executable, env=WITH_REPO, log_path=str(tmp_path / "w.log"))
    assert handshake["protocol"] == client.PROTOCOL_VERSION and handshake["executable"]
    with pytest.raises(ProcessLookupError):
        os.kill(handshake["pid"], 0)


def test_close_while_starting_makes_start_fail_quickly(tmp_path):
    worker = WorkerClient(sys.executable, env=WITH_REPO, log_path=str(tmp_path / "w.log"))
    failures = []

    def start() -> None:
        try:
            worker.start(timeout=60)
        except WorkerError as exc:
            failures.append(exc)

    thread = threading.Thread(target=start)
    thread.start()
    time.sleep(0.2)
    worker.close(timeout=5)
    thread.join(timeout=10)
    assert not thread.is_alive() and failures[0].kind == "not_running"
    assert not worker.alive and worker.poll() == []


def test_submit_before_start_is_refused(tmp_path):
    with pytest.raises(WorkerError) as caught:
        WorkerClient(sys.executable, log_path=str(tmp_path / "w.log")).submit({"photo": "x.jpg"})
    assert caught.value.kind == "not_running"


def test_default_log_goes_to_a_new_file_in_the_temp_folder():
    first, second = WorkerClient(sys.executable), WorkerClient(sys.executable)
    try:
        assert first.log_path != second.log_path
        assert Path(first.log_path).parent == Path(tempfile.gettempdir())
    finally:
        os.remove(first.log_path)
        os.remove(second.log_path)
