"""A piece of work on a thread, usually running a child process, that the UI polls (no bpy here).

Set-up and the weights download share it: the thread updates a status dataclass under a
lock, the UI's timer reads copies of it, and cancel stops the child process.
"""

from __future__ import annotations

import abc
import copy
import subprocess
import threading


class BackgroundTask(abc.ABC):
    """Subclasses implement `_run` (on the thread); `status()` and `cancel()` are safe from the UI."""

    def __init__(self, status, name: str) -> None:
        self._status = status
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._cancelled = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def status(self):
        """A copy of the status, consistent at one moment."""
        with self._lock:
            return copy.deepcopy(self._status)

    def cancel(self) -> None:
        """Stop: the running child process is terminated and `_run` sees `_cancelled`."""
        self._cancelled = True
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()

    def _update(self, **values) -> None:
        with self._lock:
            for key, value in values.items():
                setattr(self._status, key, value)

    @abc.abstractmethod
    def _run(self) -> None:
        """The work, on the task's thread: update the status, honour `_cancelled`."""
