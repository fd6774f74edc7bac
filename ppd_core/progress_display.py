"""The command's progress display: a tqdm bar per photo on a terminal, plain lines otherwise.

Both show `ppd_core.progress.progress_text`, the same words the worker's events carry to the
add-on, with the photo's elapsed time and an estimate of the time left. Plain lines (a log,
a pipe, CI) come at each new stage, and within a stage when the message changes at most
every `LINE_INTERVAL_S` (every diffusion step of a real network) or after
`QUIET_INTERVAL_S` of silence, so a long photo is never silent in a log.
"""

from __future__ import annotations

import io
import os
import sys
import time
from pathlib import Path
from typing import Optional

from ppd_core.progress import JOB_STAGES, JobFraction, progress_text, remaining_seconds

LINE_INTERVAL_S = 2.0
QUIET_INTERVAL_S = 30.0
SHOW_TIMES_AFTER_S = 2.0


def say(text: str, stream=None) -> None:
    """Print one line. A closed or full stream (`ppd-mesh ... | head`, /dev/full) is sent to
    the null device instead: the outputs are on disk, a lost summary line must not undo that."""
    stream = sys.stdout if stream is None else stream
    try:
        print(text, file=stream, flush=True)
    except OSError:
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, stream.fileno())  # so the interpreter's last flush at exit fails no more
            os.close(null)
        except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
            pass


class Progress:
    """One photo's progress: a tqdm bar on a terminal; plain lines otherwise; nothing when quiet."""

    def __init__(self, label: str, quiet: bool, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.label = label
        self.whole = JobFraction(JOB_STAGES)
        self.started = time.monotonic()
        self.stage: Optional[str] = None
        self.message = ""
        self.last_line = -float("inf")
        self.bar = None
        if not quiet and self.stream.isatty():
            from tqdm import tqdm  # only on a terminal

            self.bar = tqdm(total=100, desc=label, file=self.stream, unit="%", leave=False,
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}")

    def __call__(self, stage: str, fraction: float, message: str = "") -> None:
        self._display(stage, self.whole(stage, fraction), message)

    def show(self, stage: str, whole: float, message: str = "") -> None:
        """Display a fraction of the whole photo's work (as the worker reports it)."""
        self._display(stage, self.whole.advance(whole), message)

    def _display(self, stage: str, whole: float, message: str) -> None:
        now = time.monotonic()
        elapsed = now - self.started
        shown = elapsed if elapsed >= SHOW_TIMES_AFTER_S else None  # a fast photo needs no clock
        text = progress_text(stage, message, shown, remaining_seconds(elapsed, whole))
        if self.bar is not None:
            self.bar.n = round(100 * whole)
            self.bar.set_postfix_str(text, refresh=True)
        elif not self.quiet and (stage != self.stage or now - self.last_line >= QUIET_INTERVAL_S
                                 or (message != self.message and now - self.last_line >= LINE_INTERVAL_S)):
            say(f"{self.label}: {text}", self.stream)
            self.last_line = now
        self.stage, self.message = stage, message

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class PhotoDisplay:
    """The progress of the photo in flight here: a `Progress` made when it starts, closed when
    its record arrives; it also knows which photo an interrupt stopped."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.photo: Optional[Path] = None
        self.progress: Optional[Progress] = None

    def start(self, photo: Path) -> Progress:
        self.photo, self.progress = photo, Progress(photo.name, self.quiet)
        return self.progress

    def finish(self) -> Optional[Path]:
        """Close the display; return the photo that was in flight, if any."""
        if self.progress is not None:
            self.progress.close()
        photo, self.photo, self.progress = self.photo, None, None
        return photo
