"""Downloading the weight files into a folder, run in the backend's Python (no bpy here).

The backend's `ppd-weights download --dir FOLDER --only ... --json` does the work with
huggingface-hub and prints one JSON line per progress report; this runs it on a thread and
keeps a snapshot the preferences draw from a timer. Cancelling stops the process; the partial
file stays, and the next download of the same folder resumes it.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field

from .background_task import BackgroundTask

WEIGHTS_MODULE = "ppd_core.model.weights"


@dataclass
class DownloadStatus:
    """A snapshot for the UI."""

    current: str = ""              # the file being downloaded
    done_bytes: int = 0
    total_bytes: int = 0
    bytes_per_second: float = 0.0
    finished_files: list = field(default_factory=list)
    done: bool = False
    error: str = ""

    def line(self) -> str:
        """"moge2.pt: 0.42 of 1.32 GB, 12.3 MB/s" (or what is known so far)."""
        if not self.current:
            return "Starting the download"
        total = f" of {self.total_bytes / 1e9:.2f}" if self.total_bytes else ""
        return (f"{self.current}: {self.done_bytes / 1e9:.2f}{total} GB, "
                f"{self.bytes_per_second / 1e6:.1f} MB/s")

    @property
    def fraction(self) -> float:
        return self.done_bytes / self.total_bytes if self.total_bytes else 0.0


def download_command(python: str, folder: str, names: list) -> list:
    return [python, "-m", WEIGHTS_MODULE, "download", "--dir", folder, "--only", *names, "--json"]


class WeightsDownload(BackgroundTask):
    """One download run on a thread; `status()` and `cancel()` are safe from the UI."""

    def __init__(self, python: str, folder: str, names: list, env: dict) -> None:
        self.command = download_command(python, folder, names)
        self.env = env
        super().__init__(DownloadStatus(), "ppd-weights-download")

    def _run(self) -> None:
        try:
            # A neutral folder, as for the worker: `-m` puts the working folder on sys.path.
            self._process = subprocess.Popen(
                self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                encoding="utf-8", errors="replace", env=self.env, cwd=tempfile.gettempdir())
        except OSError as error:
            self._update(done=True, error=f"cannot run {self.command[0]}: {error.strerror or error}")
            return
        errors: list = []
        reader = threading.Thread(target=lambda: errors.extend(self._process.stderr), daemon=True)
        reader.start()
        for line in self._process.stdout:
            self._read(line)
        code = self._process.wait()
        reader.join(timeout=5)
        if self._cancelled:
            self._update(done=True, error="cancelled (start the download again to resume it)")
        elif code != 0:
            lines = [text.strip() for text in errors if text.strip()]
            message = next((text[len("error: "):] for text in lines if text.startswith("error: ")), None)
            self._update(done=True, error=message or (lines[-1] if lines else f"the download stopped ({code})"))
        else:
            self._update(done=True)

    def _read(self, line: str) -> None:
        try:
            report = json.loads(line)
        except ValueError:
            return
        if "done" in report:
            with self._lock:
                self._status.finished_files.append(report["done"])
        elif "file" in report:
            self._update(current=report["file"], done_bytes=int(report.get("bytes") or 0),
                         total_bytes=int(report.get("total") or 0),
                         bytes_per_second=float(report.get("bytes_per_second") or 0.0))


def wait(download: WeightsDownload, timeout: float) -> DownloadStatus:
    """Block until the download ends or `timeout` seconds pass (for scripts and tests)."""
    deadline = time.monotonic() + timeout
    while not download.status().done and time.monotonic() < deadline:
        time.sleep(0.05)
    return download.status()
