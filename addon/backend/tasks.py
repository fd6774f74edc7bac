"""The add-on's one way to work off Blender's main thread: a `Task` (no bpy here).

The rules, for every background job of the add-on (set-up, Detect, Check, Remove, the weights
download and check, print exports, starting and closing workers):

- A task runs one function, `work(task)`, on its own daemon thread. `work` never touches bpy
  (Blender's data is not thread-safe) and never waits on the UI.
- It reports through `task.update(**fields)`, which sets fields of the task's status (a
  `TaskStatus` dataclass) under the task's lock; the UI only reads `task.status()`, a copy
  consistent at one moment, so a draw never sees half an update.
- A child process started with `task.run_process` is terminated by `task.cancel()`, which may
  be called from any thread; `work` sees `task.cancelled` and stops.
- What `work` returns is `task.result`; an exception it raises ends the task with the
  exception's text as `status().error` (and the exception as `task.exception`). `done` is set
  last, after the result or the error.
- Code that must run on Blender's main thread when a task ends (copy a path into the
  preferences, redraw) is handed to the add-on's `state.start_task`, whose one timer runs it.
"""

from __future__ import annotations

import copy
import subprocess
import threading
from dataclasses import dataclass
from typing import Callable, Optional


@dataclass
class TaskStatus:
    """What the UI shows of a task; subclasses add their own progress fields."""

    done: bool = False
    error: str = ""      # why it failed ("" while running and after a success)
    message: str = ""    # the latest line of progress


class TaskFailed(Exception):
    """Raised by `work` to end its task with this message as the error."""


class Task:
    """One piece of work on its own thread; `status()`, `cancel()` and `result` are safe from the UI."""

    def __init__(self, name: str, work: Callable[["Task"], object], status: Optional[TaskStatus] = None) -> None:
        self.name = name
        self.result: object = None
        self.exception: Optional[BaseException] = None
        self._work = work
        self._status = status if status is not None else TaskStatus()
        self._lock = threading.Lock()
        self._process: Optional[subprocess.Popen] = None
        self._cancelled = False
        self._thread = threading.Thread(target=self._main, name=f"ppd-{name}", daemon=True)

    def start(self) -> "Task":
        self._thread.start()
        return self

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    @property
    def alive(self) -> bool:
        """True while the thread runs (`status().done` is set just before it ends)."""
        return self._thread.is_alive()

    def status(self) -> TaskStatus:
        """A copy of the status, consistent at one moment."""
        with self._lock:
            return copy.deepcopy(self._status)

    def update(self, **values) -> None:
        """Set status fields (from the task's thread)."""
        with self._lock:
            for key, value in values.items():
                setattr(self._status, key, value)

    def cancel(self) -> None:
        """Ask the work to stop: a running child process is terminated now."""
        self._cancelled = True
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()

    def join(self, timeout: float) -> TaskStatus:
        """Wait up to `timeout` seconds for the end (scripts and tests); the status then."""
        self._thread.join(timeout)
        return self.status()

    def run_process(self, command: list, on_line: Optional[Callable[[str], None]] = None,
                    on_error_line: Optional[Callable[[str], None]] = None, **popen) -> tuple:
        """Run a child process that `cancel` can stop, calling `on_line` with each line of its
        stdout, and of its stderr too unless `on_error_line` takes those (read on a helper
        thread, so neither pipe fills up); return (exit code, its stdout lines)."""
        popen = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE if on_error_line else subprocess.STDOUT,
                 "stdin": subprocess.DEVNULL, "text": True, "encoding": "utf-8", "errors": "replace", **popen}
        if self._cancelled:
            raise TaskFailed("cancelled")
        self._process = process = subprocess.Popen(command, **popen)
        reader = None
        if on_error_line is not None:
            reader = threading.Thread(target=lambda: [on_error_line(line) for line in process.stderr], daemon=True)
            reader.start()
        lines = []
        for line in process.stdout:
            lines.append(line)
            if on_line is not None:
                on_line(line)
        code = process.wait()
        if reader is not None:
            reader.join(timeout=5)
        return code, lines

    def _main(self) -> None:
        try:
            self.result = self._work(self)
            error = self.status().error
        except Exception as exception:  # the task's outcome: shown by the UI, never raised here
            self.exception = exception
            error = " ".join(str(exception).split()) or type(exception).__name__
        if self._cancelled and not error.startswith("cancelled"):
            error = "cancelled"
        self.update(error=error, done=True)
