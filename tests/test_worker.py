"""A real worker subprocess driven through the client: handshake, jobs, progress, cancel,
garbage on stdin, crashes, hangs, and exiting when its parent goes away."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import trimesh
from PIL import Image

from ppd_core.client import WorkerClient
from ppd_core.errors import BadInputError, Cancelled, OutputError, WeightsMissingError
from ppd_core.protocol import ERROR_KINDS
from ppd_core.worker import JobProgress, error_for
from tests.checkpoints import write_small_weights

REPO = Path(__file__).resolve().parents[1]
WORKER_ENV = {"PYTHONPATH": str(REPO)}
POSIX_ONLY = pytest.mark.skipif(os.name == "nt", reason="uses POSIX signals")


def wait_for(client: WorkerClient, done: Callable[[dict], bool], timeout: float = 60) -> list:
    """Poll until an event satisfies `done`; return every event seen, that one last."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in client.poll():
            seen.append(event)
            if done(event):
                return seen
        time.sleep(0.02)
    raise AssertionError(f"no matching event within {timeout} s; saw {seen}")


def answers(client: WorkerClient, ids: list, timeout: float = 60) -> dict:
    """Poll until every job in `ids` has its result or error; return them by id."""
    found: dict = {}

    def all_answered(event: dict) -> bool:
        if event["type"] in ("result", "error"):
            found[event["id"]] = event
        return set(ids) <= set(found)

    wait_for(client, all_answered, timeout)
    return found


def send_raw(client: WorkerClient, data: bytes) -> None:
    """Write bytes to the worker's stdin as they are, bypassing the client's JSON encoding."""
    client._proc.stdin.write(data)
    client._proc.stdin.flush()


def is_gone(pid: int) -> bool:
    """True when the process no longer exists or is a zombie waiting to be reaped."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_gone(pid):
            return True
        time.sleep(0.05)
    return False


def start_worker(tmp_path: Path, **kwargs) -> WorkerClient:
    client = WorkerClient(sys.executable, env=WORKER_ENV, log_path=str(tmp_path / "worker.log"), **kwargs)
    client.start(timeout=60)
    return client


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    """One worker shared by the tests that leave it healthy (its model stays loaded)."""
    client = start_worker(tmp_path_factory.mktemp("worker"))
    yield client
    client.close()


@pytest.fixture(scope="module")
def photo_job(tmp_path_factory) -> Callable[..., dict]:
    """Make jobs on a small photo with small random weights; `steps` sets the diffusion length.

    near/far are close together because the random network's p spreads far outside [0, 1];
    a narrow range keeps every depth positive so the mesh has triangles.
    """
    folder = tmp_path_factory.mktemp("photo")
    weights = write_small_weights(folder / "weights")
    y, x = np.mgrid[0:96, 0:128]
    Image.fromarray(np.stack([x * 2, y * 2, x + y], -1).astype(np.uint8)).save(folder / "photo.png")

    def make(name: str, steps: int = 4, **outputs: str) -> dict:
        outputs = outputs or {"npz": str(folder / f"{name}.npz"), "stl": str(folder / f"{name}.stl")}
        options = {"weights": str(weights), "steps": steps, "resolution": 128 * 96, "near": 5.0, "far": 5.1}
        return {"photo": str(folder / "photo.png"), "outputs": outputs, "options": options}

    return make


def test_handshake_names_versions_devices_and_pid(worker):
    import torch

    import ppd_core

    shake = worker.handshake
    from ppd_core.client import PROTOCOL_VERSION

    assert shake["type"] == "handshake" and shake["protocol"] == PROTOCOL_VERSION
    assert shake["weights"]["ready"] or "ppd-weights download" in shake["weights"]["problem"]
    assert shake["version"] == ppd_core.__version__ and shake["torch"] == torch.__version__
    assert shake["pid"] == worker.pid
    cpu = [device for device in shake["devices"] if device["type"] == "cpu"]
    assert len(cpu) == 1 and cpu[0]["name"] and cpu[0]["memory_gb"] > 0
    assert worker.alive and not worker.busy


def test_a_full_job_writes_npz_and_stl_with_monotone_progress(worker, photo_job):
    job = photo_job("full")
    job_id = worker.submit(job)
    assert worker.busy
    events = [e for e in wait_for(worker, lambda e: e["type"] in ("result", "error")) if e.get("id") == job_id]
    result = events[-1]
    assert result["type"] == "result", result
    assert not worker.busy
    fractions = [e["fraction"] for e in events if e["type"] == "progress"]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    diffusion = {e["fraction"] for e in events if e["type"] == "progress" and e["stage"] == "diffusion"}
    assert len(diffusion - {min(diffusion)}) >= 4  # one event per step, after the one at its start
    assert result["outputs"] == job["outputs"]
    with np.load(job["outputs"]["npz"], allow_pickle=False) as arrays:
        assert str(arrays["format"]) == "ppd-npz-1"
        assert arrays["vertices"].shape[0] == result["stats"]["vertices"] > 0
    solid = trimesh.load(job["outputs"]["stl"])
    assert len(solid.faces) > 0 and solid.is_watertight
    assert result["stats"]["model_loads"] == 1


def test_a_second_job_reuses_the_loaded_model(worker, photo_job):
    worker.submit(photo_job("first"))  # whichever test runs first loads the model
    job_id = worker.submit(photo_job("again"))
    result = answers(worker, [job_id])[job_id]
    assert result["type"] == "result", result
    assert result["stats"]["model_reused"] and result["stats"]["model_loads"] == 1


def test_cancel_mid_diffusion_leaves_no_files_and_the_next_job_works(worker, photo_job):
    job = photo_job("cancelled", steps=400)
    job_id = worker.submit(job)
    steps = []

    def third_step(event: dict) -> bool:
        if event.get("id") == job_id and event.get("stage") == "diffusion":
            steps.append(event)
        return len(steps) == 3

    wait_for(worker, third_step)
    worker.cancel(job_id)
    events = wait_for(worker, lambda e: e.get("id") == job_id and e["type"] in ("result", "error"))
    assert events[-1]["kind"] == "cancelled"
    progress = [e for e in events if e["type"] == "progress"]
    assert all(e["stage"] == "diffusion" for e in progress)
    assert len(steps) + len(progress) < 50  # stopped within a few of the 400 steps
    assert not any(os.path.exists(path) for path in job["outputs"].values())
    assert not list(Path(job["outputs"]["npz"]).parent.glob("cancelled*"))
    after = photo_job("after_cancel")
    after_id = worker.submit(after)
    assert answers(worker, [after_id])[after_id]["type"] == "result"
    assert all(os.path.exists(path) for path in after["outputs"].values())


def test_a_depth_file_job_never_loads_the_model(tmp_path, photo_job):
    client = start_worker(tmp_path)
    try:
        depth_mm = np.full((96, 128), 2000, np.uint16)
        depth_mm[:, 64:] = 2100
        Image.fromarray(depth_mm).save(tmp_path / "depth.png")
        job = photo_job("from_depth", npz=str(tmp_path / "from_depth.npz"))
        job["options"] = {"depth_file": str(tmp_path / "depth.png"), "resolution": 128 * 96}
        job_id = client.submit(job)
        result = answers(client, [job_id])[job_id]
        assert result["type"] == "result", result
        assert result["stats"]["model_loads"] == 0 and not result["stats"]["model_reused"]
        with np.load(job["outputs"]["npz"], allow_pickle=False) as arrays:
            depths = arrays["vertices"][:, 2]
            assert len(depths) > 0 and depths.min() > 1.99 and depths.max() < 2.11  # the file's 2.0 m and 2.1 m
    finally:
        client.close()


def test_the_result_names_the_preview_next_to_the_other_outputs(worker, photo_job, tmp_path):
    Image.fromarray(np.full((96, 128), 2000, np.uint16)).save(tmp_path / "depth.png")
    job = photo_job("shown", npz=str(tmp_path / "shown.npz"), preview=str(tmp_path / "shown_preview.png"))
    job["options"] = {"depth_file": str(tmp_path / "depth.png"), "resolution": 128 * 96}
    job_id = worker.submit(job)
    result = answers(worker, [job_id])[job_id]
    assert result["type"] == "result", result
    assert result["outputs"]["preview"] == job["outputs"]["preview"]
    assert Image.open(result["outputs"]["preview"]).size == (512, 384)
    assert result["stats"]["details"]["preview"] == {"size_px": [512, 384], "renderer": "oblique view"}


def test_a_bad_job_gets_a_one_line_error_and_the_worker_lives_on(worker, photo_job, tmp_path):
    missing = photo_job("missing")
    missing["photo"] = str(tmp_path / "no-such-photo.jpg")
    unknown = photo_job("unknown")
    unknown["options"]["colour"] = "red"
    errors = answers(worker, [worker.submit(missing), worker.submit(unknown)])
    first, second = errors.values()
    assert first["kind"] == "bad_input" and "no-such-photo.jpg" in first["message"]
    assert second["kind"] == "bad_input" and "colour" in second["message"]
    assert worker.alive


def test_relative_paths_are_taken_from_the_clients_folder(worker, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "here.png")
    job_id = worker.submit({"photo": "here.png", "outputs": {"npz": "out.npz"}, "options": {"depth_file": "nowhere.png"}})
    error = answers(worker, [job_id])[job_id]
    assert error["kind"] == "bad_input" and str(tmp_path / "nowhere.png") in error["message"]


def test_garbage_on_stdin_gets_an_error_and_the_worker_lives_on(worker):
    send_raw(worker, b"this is not json\n")
    events = wait_for(worker, lambda e: e["type"] == "error")
    assert events[-1]["kind"] == "bad_input" and events[-1]["id"] is None
    assert "not a JSON line" in events[-1]["message"]
    send_raw(worker, b'{"type": "job", "id": "broken"}\n')
    events = wait_for(worker, lambda e: e["type"] == "error")
    assert events[-1]["id"] == "broken" and "no photo" in events[-1]["message"]
    send_raw(worker, b'["a list"]\n{"type": "explode"}\n\xff\xfe\n')
    events = wait_for(worker, lambda e: "utf-8" in e.get("message", ""))  # the third line's error
    errors = [e for e in events if e["type"] == "error"]
    assert len(errors) == 3
    assert worker.alive


@POSIX_ONLY
def test_cancel_without_id_drops_every_job(worker, tmp_path):
    os.kill(worker.pid, signal.SIGSTOP)  # so that both jobs wait when the cancel arrives
    try:
        jobs = [{"photo": str(tmp_path / "a.jpg"), "outputs": {"npz": str(tmp_path / f"{n}.npz")}} for n in range(2)]
        ids = [worker.submit(job) for job in jobs]
        worker.cancel()
    finally:
        os.kill(worker.pid, signal.SIGCONT)
    answered = answers(worker, ids)
    assert [answered[job_id]["kind"] for job_id in ids] == ["cancelled", "cancelled"]
    assert not worker.busy and worker.alive


def test_closing_stdin_makes_the_worker_exit_quickly():
    proc = subprocess.Popen(
        [sys.executable, "-m", "ppd_core.worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **WORKER_ENV},
    )
    handshake = json.loads(proc.stdout.readline())
    assert handshake["type"] == "handshake"
    proc.stdin.close()
    assert proc.wait(timeout=5) == 0
    for line in proc.stdout.read().splitlines():
        json.loads(line)  # whatever else it said is still a JSON event


def test_close_during_a_job_stops_it_quickly_and_leaves_no_files(tmp_path, photo_job):
    client = start_worker(tmp_path)
    job = photo_job("closed", steps=400)
    client.submit(job)
    wait_for(client, lambda e: e.get("stage") == "diffusion")
    pid = client.pid
    started = time.monotonic()
    client.close(timeout=5)
    assert time.monotonic() - started < 5  # stdin closing was enough: no terminate needed
    assert is_gone(pid) and not client.alive
    assert "cancelled: the worker is shutting down" in Path(client.log_path).read_text()
    assert not any(os.path.exists(path) for path in job["outputs"].values())


@POSIX_ONLY
def test_sigterm_unwinds_a_running_job(tmp_path, photo_job):
    client = start_worker(tmp_path)
    job = photo_job("terminated", steps=400)
    client.submit(job)
    wait_for(client, lambda e: e.get("stage") == "diffusion")
    os.kill(client.pid, signal.SIGTERM)
    crash = wait_for(client, lambda e: e.get("kind") == "worker_crashed", timeout=10)[-1]
    assert crash["exit_code"] == 128 + signal.SIGTERM
    assert not any(os.path.exists(path) for path in job["outputs"].values())
    client.close()


PARENT_SCRIPT = textwrap.dedent(
    """
    import subprocess, sys, os
    worker = subprocess.Popen([sys.executable, "-m", "ppd_core.worker"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=open(sys.argv[1], "wb"))
    worker.stdout.readline()
    # A sleeper inherits the worker's stdin pipe, so only the parent check can notice.
    sleeper = subprocess.Popen(["sleep", "30"], pass_fds=[worker.stdin.fileno()],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print(worker.pid, sleeper.pid, flush=True)
    os._exit(0)
    """
)


@POSIX_ONLY
def test_worker_exits_when_its_parent_dies_even_if_stdin_stays_open(tmp_path):
    log = tmp_path / "worker.log"
    parent = subprocess.run(
        [sys.executable, "-c", PARENT_SCRIPT, str(log)],
        capture_output=True,
        text=True,
        env={**os.environ, **WORKER_ENV},
        timeout=60,
    )
    worker_pid, sleeper_pid = map(int, parent.stdout.split())
    try:
        assert wait_gone(worker_pid, timeout=5)
    finally:
        os.kill(sleeper_pid, signal.SIGKILL)
    text = log.read_text()
    assert "stopping: parent process" in text and "Fatal" not in text


@POSIX_ONLY
def test_a_killed_worker_is_reported_with_its_log_tail(tmp_path, photo_job):
    client = start_worker(tmp_path)
    job_id = client.submit(photo_job("killed", steps=400))
    wait_for(client, lambda e: e.get("stage") == "diffusion")
    os.kill(client.pid, signal.SIGKILL)
    events = wait_for(client, lambda e: e.get("kind") == "worker_crashed", timeout=10)
    crash = events[-1]
    assert crash["id"] == job_id and crash["exit_code"] == -signal.SIGKILL
    assert "SIGKILL" in crash["message"] and client.log_path in crash["message"]
    assert any("starting" in line for line in crash["log_tail"])
    assert not client.alive and not client.busy
    assert client.poll() == []
    client.close()


@POSIX_ONLY
def test_every_queued_job_gets_its_own_answer_when_the_worker_dies(tmp_path, photo_job):
    client = start_worker(tmp_path)
    ids = [client.submit(photo_job(f"queued{n}", steps=400)) for n in range(3)]
    wait_for(client, lambda e: e.get("stage") == "diffusion")
    os.kill(client.pid, signal.SIGKILL)
    got = answers(client, ids, timeout=10)
    assert set(got) == set(ids) and {event["kind"] for event in got.values()} == {"worker_crashed"}
    assert not client.busy
    client.close()


@POSIX_ONLY
def test_a_silent_job_times_out_and_the_worker_is_stopped(tmp_path):
    client = start_worker(tmp_path, event_timeout=0.5)
    pid = client.pid
    os.kill(pid, signal.SIGSTOP)  # hung: alive but silent
    job_id = client.submit({"photo": str(tmp_path / "a.jpg"), "outputs": {"npz": str(tmp_path / "a.npz")}})
    events = wait_for(client, lambda e: e["type"] == "error", timeout=10)
    assert events[-1]["kind"] == "timeout" and events[-1]["id"] == job_id
    assert not client.alive and wait_gone(pid, timeout=5)
    client.close()


STRAY_OUTPUT = textwrap.dedent(
    """
    import os
    from ppd_core.worker import take_stdout
    events = take_stdout()
    print("stray print")
    os.write(1, b"stray C-level write\\n")
    events.write(b'{"type": "log"}\\n')
    events.flush()
    """
)


def test_only_events_reach_stdout_even_from_c_level_writes():
    done = subprocess.run(
        [sys.executable, "-c", STRAY_OUTPUT], capture_output=True, env={**os.environ, **WORKER_ENV}, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == b'{"type": "log"}\n'
    assert b"stray print" in done.stderr and b"stray C-level write" in done.stderr


def test_out_of_memory_becomes_an_actionable_error():
    import torch

    event = error_for(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), "j")
    assert event["kind"] == "out_of_memory" and event["id"] == "j"
    assert "resolution" in event["message"] and "precision" in event["message"]
    assert error_for(MemoryError(), "j")["kind"] == "out_of_memory"
    assert error_for(Cancelled("stop"), "j")["kind"] == "cancelled"
    crash = error_for(ValueError("line one\nline two"), "j")
    assert crash["kind"] == "internal" and "\n" not in crash["message"] and "ValueError" in crash["message"]
    for exc in (BadInputError("x"), WeightsMissingError("x"), OutputError("x"), ImportError("x")):
        assert error_for(exc, "j")["kind"] in ERROR_KINDS


def test_progress_is_one_whole_job_fraction_that_never_goes_back():
    sent = []

    class Recorder:
        def emit(self, event):
            sent.append(event)

    progress = JobProgress("j", (("a", 1.0), ("b", 3.0)), Recorder(), lambda: None)
    progress("a", 0.5, "half of a")
    progress("b", 0.5, "half of b")
    progress("a", 1.0, "a again, late")
    progress("unknown", 0.3, "a stage the table does not list")
    assert [e["fraction"] for e in sent] == [0.125, 0.625, 0.625, 0.625]
    with pytest.raises(Cancelled):
        JobProgress("j", (("a", 1.0),), Recorder(), lambda: (_ for _ in ()).throw(Cancelled("stop")))("a", 0.1, "")
