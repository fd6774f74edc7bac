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

import pytest

from ppd_core.client import WorkerClient

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
    wait_for(client, lambda e: e["type"] in ("result", "error") and found.setdefault(e["id"], e) and set(ids) <= set(found), timeout)
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
    """One worker shared by the tests that leave it healthy."""
    client = start_worker(tmp_path_factory.mktemp("worker"))
    yield client
    client.close()


def test_handshake_names_versions_devices_and_pid(worker):
    import torch

    import ppd_core

    shake = worker.handshake
    assert shake["type"] == "handshake" and shake["protocol"] == 1
    assert shake["version"] == ppd_core.__version__ and shake["torch"] == torch.__version__
    assert shake["pid"] == worker.pid
    cpu = [device for device in shake["devices"] if device["type"] == "cpu"]
    assert len(cpu) == 1 and cpu[0]["name"] and cpu[0]["memory_gb"] > 0
    assert worker.alive and not worker.busy


def test_garbage_on_stdin_gets_an_error_and_the_worker_lives_on(worker):
    send_raw(worker, b"this is not json\n")
    events = wait_for(worker, lambda e: e["type"] == "error")
    assert events[-1]["kind"] == "bad_input" and events[-1]["id"] is None
    assert "not a JSON line" in events[-1]["message"]
    send_raw(worker, b'{"type": "job", "id": "broken"}\n')
    events = wait_for(worker, lambda e: e["type"] == "error")
    assert events[-1]["id"] == "broken" and "no photo" in events[-1]["message"]
    send_raw(worker, b'["a list"]\n{"type": "explode"}\n\xff\xfe\n')
    errors = [e for e in wait_for(worker, lambda e: "UnicodeDecodeError" in e.get("message", "") or "utf-8" in e.get("message", "")) if e["type"] == "error"]
    assert len(errors) == 3
    assert worker.alive


def test_cancel_of_a_queued_job_answers_at_once(tmp_path):
    client = start_worker(tmp_path)
    try:
        os.kill(client.pid, signal.SIGSTOP)
        ids = [client.submit({"photo": str(tmp_path / "a.jpg"), "outputs": {"npz": str(tmp_path / f"{n}.npz")}}) for n in range(2)]
        client.cancel()
        os.kill(client.pid, signal.SIGCONT)
        answered = answers(client, ids)
        assert [answered[job_id]["kind"] for job_id in ids] == ["cancelled", "cancelled"]
        assert not client.busy
    finally:
        client.close()


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


PARENT_SCRIPT = textwrap.dedent(
    """
    import subprocess, sys, os
    worker = subprocess.Popen([sys.executable, "-m", "ppd_core.worker"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    worker.stdout.readline()
    # A sleeper inherits the worker's stdin pipe, so only the parent check can notice.
    sleeper = subprocess.Popen(["sleep", "30"], pass_fds=[worker.stdin.fileno()],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print(worker.pid, sleeper.pid, flush=True)
    os._exit(0)
    """
)


@POSIX_ONLY
def test_worker_exits_when_its_parent_dies_even_if_stdin_stays_open():
    parent = subprocess.run(
        [sys.executable, "-c", PARENT_SCRIPT], capture_output=True, text=True, env={**os.environ, **WORKER_ENV}, timeout=60
    )
    worker_pid, sleeper_pid = map(int, parent.stdout.split())
    try:
        assert wait_gone(worker_pid, timeout=5)
    finally:
        os.kill(sleeper_pid, signal.SIGKILL)


@POSIX_ONLY
def test_a_killed_worker_is_reported_with_its_log_tail(tmp_path):
    client = start_worker(tmp_path)
    os.kill(client.pid, signal.SIGSTOP)  # the job cannot answer before the kill
    job_id = client.submit({"photo": str(tmp_path / "a.jpg"), "outputs": {"npz": str(tmp_path / "a.npz")}})
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
def test_a_silent_job_times_out_and_the_worker_is_stopped(tmp_path):
    client = start_worker(tmp_path, event_timeout=1.0)
    pid = client.pid
    os.kill(pid, signal.SIGSTOP)  # hung: alive but silent
    job_id = client.submit({"photo": str(tmp_path / "a.jpg"), "outputs": {"npz": str(tmp_path / "a.npz")}})
    events = wait_for(client, lambda e: e["type"] == "error", timeout=10)
    assert events[-1]["kind"] == "timeout" and events[-1]["id"] == job_id
    assert not client.alive and wait_gone(pid, timeout=5)
    client.close()
