"""The worker as a process: its command, environment and log, how it ended, how to stop it.

Standard library only, like `ppd_core.client`, which uses it (the Blender add-on imports
both from the wheel it carries; Blender's Python has no torch).
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from typing import Optional

WORKER_MODULE = "ppd_core.worker"
PACKAGE_PIP_NAME = "depth-from-image"
LOG_TAIL_LINES = 12


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
