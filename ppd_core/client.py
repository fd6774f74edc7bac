"""Start and talk to the inference worker (`python -m ppd_core.worker`) from any Python.

Standard library only, and no other module of this package: the Blender add-on imports it
from the wheel it carries (Blender's Python has no torch), and it works copied alone. The
worker runs with the interpreter the user chose; the two speak JSON lines (see
docs/protocol.md). Events are read on a background thread, so `poll()` never blocks Blender.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from typing import Any, Optional

WORKER_MODULE = "ppd_core.worker"
PACKAGE_PIP_NAME = "depth-from-image"
LOG_TAIL_LINES = 12
PROTOCOL_VERSION = 2
"""Both ends' version of the wire format (the worker reads it from here): 2 since the job
option "depth" became "depth_file"."""
DEFAULT_EVENT_TIMEOUT = 600.0
_EOF = object()


class WorkerError(Exception):
    """The worker could not be started or used; `kind` says why, the message how to fix it.

    Kinds: interpreter_not_found, package_missing, torch_missing, protocol_mismatch,
    start_failed, start_timeout, not_running. `log_tail` holds the last lines of the
    worker's log when they help.
    """

    def __init__(self, kind: str, message: str, log_tail: Optional[list] = None) -> None:
        super().__init__(" ".join(message.split()))
        self.kind = kind
        self.log_tail = list(log_tail or [])


def read_log_tail(path: str, lines: int = LOG_TAIL_LINES, start: int = 0) -> list:
    """Return the last `lines` non-empty lines of a log file written after byte `start`
    ([] if it cannot be read): a shared, appended log also holds earlier workers' lines."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(start, size - 16384))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    return [line.rstrip() for line in text.splitlines() if line.strip()][-lines:]


def describe_exit(code: Optional[int]) -> str:
    """Say how a process ended, naming the signal when it was killed by one."""
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def worker_environment(additions: dict) -> dict:
    """The inherited environment with `additions` (a value of None removes a variable), and
    UTF-8 pipes whatever the platform's default."""
    env = dict(os.environ)
    for key, value in additions.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = str(value)
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def spawn_worker(python: str, env: dict, log_path: str) -> tuple:
    """Start `python -m ppd_core.worker` with pipes for stdin and stdout and its stderr appended
    to `log_path`; (the process, the log's size before it started). WorkerError says why not."""
    platform_args: dict = {}
    if os.name == "nt":
        platform_args["creationflags"] = getattr(subprocess, "CREATE_NO_WINDOW", 0) | getattr(
            subprocess, "CREATE_NEW_PROCESS_GROUP", 0
        )
    else:
        # Its own session: a Ctrl-C in Blender's terminal must not kill a running job.
        platform_args["start_new_session"] = True
    try:
        log = open(log_path, "ab")
    except OSError as exc:
        raise WorkerError("start_failed", f"cannot write the worker log {log_path}: {exc.strerror}") from exc
    try:
        start = log.tell()
        process = subprocess.Popen(
            [python, "-m", WORKER_MODULE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            env=worker_environment(env),
            # A neutral folder: `-m` puts the working folder on sys.path.
            cwd=tempfile.gettempdir(),
            **platform_args,
        )
        return process, start
    except FileNotFoundError as exc:
        raise WorkerError(
            "interpreter_not_found",
            f"Python interpreter not found: {python}; set the path of a Python 3.10+ "
            f"that has torch and {PACKAGE_PIP_NAME} installed",
        ) from exc
    except OSError as exc:
        raise WorkerError(
            "interpreter_not_found",
            f"cannot run the Python interpreter {python}: {exc.strerror or exc}; "
            "set the path of a Python executable (a file, not a folder)",
        ) from exc
    finally:
        log.close()


def stop_process(process: subprocess.Popen, timeout: float) -> None:
    """Wait `timeout` seconds for a process whose stdin was closed, then terminate it, then kill it."""
    for stop in (None, process.terminate, process.kill):
        if stop is not None:
            try:
                stop()
            except OSError:
                pass
        try:
            process.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            continue


def with_absolute_paths(job: dict) -> dict:
    """A copy of `job` whose photo, output and depth/weights paths are absolute."""
    def absolute(path: Any) -> Any:
        return os.path.abspath(path) if isinstance(path, str) and path else path

    request = dict(job)
    request["photo"] = absolute(job.get("photo"))
    if isinstance(job.get("outputs"), dict):
        request["outputs"] = {kind: absolute(path) for kind, path in job["outputs"].items()}
    if isinstance(job.get("options"), dict):
        request["options"] = dict(job["options"])
        for key in ("depth_file", "weights"):
            if key in request["options"]:
                request["options"][key] = absolute(request["options"][key])
    return request


class WorkerClient:
    """One worker process: start it, submit jobs, poll events, cancel, close.

    `python` is the interpreter that has torch and this package; `env` adds variables to
    the inherited environment (a value of None removes one); `log_path` receives the
    worker's stderr (default: a new file in the temp folder); a job that gives no event
    for `event_timeout` seconds is reported as a "timeout" error and the worker stopped.
    """

    def __init__(
        self,
        python: str,
        *,
        log_path: Optional[str] = None,
        env: Optional[dict] = None,
        event_timeout: float = DEFAULT_EVENT_TIMEOUT,
    ) -> None:
        self.python = python
        self.env = dict(env or {})
        self.event_timeout = float(event_timeout)
        if log_path is None:
            handle, log_path = tempfile.mkstemp(prefix="ppd-worker-", suffix=".log")
            os.close(handle)
        self.log_path = log_path
        self.handshake: Optional[dict] = None
        self._proc: Optional[subprocess.Popen] = None
        self._events: queue.Queue = queue.Queue()
        self._reader: Optional[threading.Thread] = None
        self._write_lock = threading.Lock()
        self._pending: list = []
        self._last_sign = time.monotonic()
        self._stopped = False
        self._log_start = 0

    # -- state ---------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        """True while the worker process runs and has not been closed or given up on."""
        return self._proc is not None and not self._stopped and self._proc.poll() is None

    @property
    def busy(self) -> bool:
        """True while a submitted job has not yet answered with a result or an error."""
        return bool(self._pending)

    @property
    def pid(self) -> Optional[int]:
        """The worker's process id, or None before start."""
        return self._proc.pid if self._proc is not None else None

    # -- start ---------------------------------------------------------------------------

    def start(self, timeout: float = 120) -> dict:
        """Start the worker and wait for its handshake; return the handshake event."""
        if self._proc is not None or self._stopped:
            raise WorkerError("not_running", "this worker client was already started or closed; make a new one")
        self._proc, self._log_start = spawn_worker(self.python, self.env, self.log_path)
        self._reader = threading.Thread(target=self._read_events, name="ppd-worker-events", daemon=True)
        self._reader.start()
        try:
            self.handshake = self._await_handshake(timeout)
        except WorkerError:
            self._stop_process(1.0)
            raise
        self._last_sign = time.monotonic()
        return self.handshake

    def _await_handshake(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WorkerError(
                    "start_timeout",
                    f"the worker ({self.python}) sent no handshake within {timeout:g} s; see its log {self.log_path}",
                    read_log_tail(self.log_path, start=self._log_start),
                )
            if self._stopped:
                raise WorkerError("not_running", "the worker was closed before its handshake")
            try:
                event = self._events.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            if event is _EOF:
                raise self._start_failure()
            kind = event.get("type")
            if kind == "handshake":
                self._check_protocol(event)
                return event
            if kind == "error":
                raise WorkerError(str(event.get("kind", "start_failed")), str(event.get("message", "")))

    def _start_failure(self) -> WorkerError:
        try:
            code = self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        tail = read_log_tail(self.log_path, start=self._log_start)
        text = "\n".join(tail)
        if "No module named" in text and "ppd_core" in text:
            return WorkerError(
                "package_missing",
                f"{self.python} does not have Depth from Image installed; install it with: "
                f'"{self.python}" -m pip install {PACKAGE_PIP_NAME}',
                tail,
            )
        return WorkerError(
            "start_failed",
            f"the worker ({self.python}) stopped during start ({describe_exit(code)}); "
            f"its log {self.log_path} ends: {' | '.join(tail[-3:]) or '(empty)'}",
            tail,
        )

    def _check_protocol(self, handshake: dict) -> None:
        theirs = handshake.get("protocol")
        if theirs != PROTOCOL_VERSION:
            raise WorkerError(
                "protocol_mismatch",
                f"the worker in {self.python} speaks protocol {theirs} (package {handshake.get('version')}) "
                f"but this client needs protocol {PROTOCOL_VERSION}; install the matching version: "
                f'"{self.python}" -m pip install --upgrade {PACKAGE_PIP_NAME}',
            )

    # -- events --------------------------------------------------------------------------

    def _read_events(self) -> None:
        """Background thread: parse stdout lines into the event queue until EOF."""
        stream = self._proc.stdout
        try:
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", errors="replace").strip()
                if line:
                    self._events.put(self._parse(line))
        except (OSError, ValueError):
            pass
        self._events.put(_EOF)

    @staticmethod
    def _parse(line: str) -> dict:
        try:
            event = json.loads(line)
        except ValueError:
            event = None
        if isinstance(event, dict) and isinstance(event.get("type"), str):
            return event
        return {"type": "log", "level": "warning", "message": f"unreadable worker output: {line[:200]}"}

    def poll(self) -> list:
        """Return the events received since the last call, without blocking; never raises.

        A dead worker yields a {"type": "error", "kind": "worker_crashed"} event for every job
        still waiting for an answer, and a job silent for longer than `event_timeout` yields
        kind "timeout" for every waiting job (the worker is then stopped, as it is hung).
        """
        events = []
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                break
            if event is _EOF:
                events.extend(self._crash_events())
                continue
            self._last_sign = time.monotonic()
            if event.get("type") in ("result", "error") and event.get("id") in self._pending:
                self._pending.remove(event["id"])
            events.append(event)
        events.extend(self._timeout_events())
        return events

    def _crash_events(self) -> list:
        """One worker_crashed error per job still waiting for an answer (one with id None when
        none was), so every queued job learns its fate, not only the running one."""
        if self._stopped or self._proc is None:
            return []
        try:
            code = self._proc.wait(timeout=1)
        except subprocess.TimeoutExpired:  # it closed its stdout but lives on: it cannot talk, stop it
            self._stop_process(1.0)
            code = self._proc.returncode
        self._stopped = True
        tail = read_log_tail(self.log_path, start=self._log_start)
        pending, self._pending = self._pending or [None], []
        message = (f"the worker stopped unexpectedly ({describe_exit(code)}); "
                   f"its log {self.log_path} ends: {' | '.join(tail[-3:]) or '(empty)'}")
        return [{"type": "error", "id": job_id, "kind": "worker_crashed", "message": message, "exit_code": code,
                 "log_tail": tail} for job_id in pending]

    def _timeout_events(self) -> list:
        """A timeout error for every waiting job once the worker has been silent too long."""
        if not self._pending or self._stopped:
            return []
        silent = time.monotonic() - self._last_sign
        if silent <= self.event_timeout:
            return []
        pending, self._pending = self._pending, []
        self._stop_process(1.0)
        message = f"the worker gave no sign of life for {silent:.0f} s and was stopped; see its log {self.log_path}"
        return [{"type": "error", "id": job_id, "kind": "timeout", "message": message} for job_id in pending]

    # -- requests ------------------------------------------------------------------------

    def submit(self, job: dict) -> str:
        """Send a job (adding "type" and an "id" if missing) and return its id.

        Relative paths are made absolute here, as the worker runs in another folder.

        If the worker died just before, the job still counts as pending so that the next
        `poll()` reports the crash for it.
        """
        if self._proc is None or self._stopped:
            raise WorkerError("not_running", "the worker is not running; start it first")
        request = with_absolute_paths(job)
        request["type"] = "job"
        request["id"] = str(request.get("id") or uuid.uuid4().hex)
        if not self._pending:
            self._last_sign = time.monotonic()
        self._pending.append(request["id"])
        self._send(request)
        return request["id"]

    def cancel(self, job_id: Optional[str] = None) -> None:
        """Ask the worker to stop one job, or (no id) the running job and every queued one."""
        if self._proc is None or self._stopped:
            return
        request: dict = {"type": "cancel"}
        if job_id is not None:
            request["id"] = job_id
        self._send(request)

    def _send(self, request: dict) -> None:
        data = (json.dumps(request) + "\n").encode("utf-8")
        with self._write_lock:
            try:
                self._proc.stdin.write(data)
                self._proc.stdin.flush()
            except (OSError, ValueError):
                pass  # The worker is gone; the reader's EOF makes poll() report the crash.

    # -- stop ----------------------------------------------------------------------------

    def close(self, timeout: float = 5) -> None:
        """Stop the worker: close its stdin and wait, then terminate, then kill.

        Events not yet polled are dropped: after close, `poll()` returns [].
        """
        self._stopped = True
        self._pending.clear()
        if self._proc is not None:
            self._stop_process(timeout)
        while True:
            try:
                self._events.get_nowait()
            except queue.Empty:
                break

    def _stop_process(self, timeout: float) -> None:
        self._stopped = True
        with self._write_lock:
            try:
                self._proc.stdin.close()
            except (OSError, ValueError):
                pass
        stop_process(self._proc, timeout)
        if self._reader is not None:
            self._reader.join(timeout=timeout)
        try:
            self._proc.stdout.close()
        except (OSError, ValueError):
            pass

    def __enter__(self) -> "WorkerClient":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def check_interpreter(
    python: str, timeout: float = 120, *, env: Optional[dict] = None, log_path: Optional[str] = None
) -> dict:
    """Start a worker with `python`, return its handshake and stop it; raises WorkerError."""
    client = WorkerClient(python, env=env, log_path=log_path)
    try:
        return client.start(timeout)
    finally:
        client.close()
