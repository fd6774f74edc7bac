"""Downloading the weight files into a folder, run in the backend's Python as a task (no bpy here).

The backend's `ppd-weights download --dir FOLDER --only ... --json` does the work with
huggingface-hub and prints one JSON line per progress report; the task reads them into a
`DownloadStatus` that the preferences draw. Cancelling stops the process; the partial file
stays, and the next download of the same folder resumes it.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field

from .tasks import Task, TaskFailed, TaskStatus

WEIGHTS_MODULE = "ppd_core.model.weights"


@dataclass
class DownloadStatus(TaskStatus):
    """A snapshot for the UI."""

    current: str = ""              # the file being downloaded
    done_bytes: int = 0
    total_bytes: int = 0
    bytes_per_second: float = 0.0
    finished_files: list = field(default_factory=list)

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


def download_command(python: str, folder: str, names: list, video: bool = False) -> list:
    """The backend's download command: `names`, or with `video` the video model's files, whose terms
    the user accepted in the preferences (the command refuses them otherwise)."""
    if video:
        return [python, "-m", WEIGHTS_MODULE, "download", "--dir", folder, "--video", "--accept-video-terms", "--json"]
    return [python, "-m", WEIGHTS_MODULE, "download", "--dir", folder, "--only", *names, "--json"]


def start_download(python: str, folder: str, names: list, env: dict, video: bool = False) -> Task:
    """Start downloading `names` (or, with `video`, the video files) into `folder` with the backend's `python`."""
    command = download_command(python, folder, names, video)

    def work(task: Task) -> list:
        errors: list = []

        try:
            # A neutral folder, as for the worker: `-m` puts the working folder on sys.path.
            code, _ = task.run_process(command, lambda line: _read(task, line), errors.append, env=env,
                                       cwd=tempfile.gettempdir())
        except OSError as error:
            raise TaskFailed(f"cannot run {command[0]}: {error.strerror or error}") from None
        if task.cancelled:
            raise TaskFailed("cancelled (start the download again to resume it)")
        if code != 0:
            lines = [text.strip() for text in errors if text.strip()]
            message = next((text[len("error: "):] for text in lines if text.startswith("error: ")), None)
            raise TaskFailed(message or (lines[-1] if lines else f"the download stopped ({code})"))
        return task.status().finished_files

    return Task("download", work, DownloadStatus()).start()


def _read(task: Task, line: str) -> None:
    try:
        report = json.loads(line)
    except ValueError:
        return
    if "done" in report:
        task.update(finished_files=task.status().finished_files + [report["done"]])
    elif "file" in report:
        task.update(current=report["file"], done_bytes=int(report.get("bytes") or 0),
                    total_bytes=int(report.get("total") or 0),
                    bytes_per_second=float(report.get("bytes_per_second") or 0.0))
