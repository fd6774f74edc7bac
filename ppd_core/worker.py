"""The inference worker: `python -m ppd_core.worker`, driven by JSON lines (docs/protocol.md).

It keeps one model cache for its whole life, runs jobs one at a time on the main thread,
reads stdin on a second thread (so a cancel reaches a running job), and exits when stdin
closes or its parent process dies. Only events reach the real stdout: everything printed
by Python or C libraries is redirected to stderr, which the client sends to a log file.
"""

from __future__ import annotations

import gc
import logging
import os
import queue
import signal
import sys
import threading
import time
import traceback
from typing import Any, BinaryIO, Callable, Optional

import ppd_core
from ppd_core.errors import (BadInputError, Cancelled, PPDError, brief, file_error_text, is_out_of_memory,
                             out_of_memory_text)
from ppd_core.clip_job import CLIP_STAGES, VideoModelCache, is_clip_job, run_clip_job
from ppd_core.files.staging import remove_stale_staging, sweep_recorded_staging
from ppd_core.options import JobOptions
from ppd_core.progress import JOB_STAGES, JobFraction
from ppd_core.protocol import (
    MAX_REQUEST_BYTES,
    EventWriter,
    error_event,
    guess_id,
    handshake_event,
    one_line,
    parse_request,
    torch_problem,
)

SHUTDOWN_GRACE_S = 10.0
PARENT_CHECK_S = 0.5
PROGRESS_MIN_STEP = 0.005
PROGRESS_MIN_INTERVAL_S = 0.5

log = logging.getLogger("ppd_core.worker")


class EventLogHandler(logging.Handler):
    """Forwards the pipeline's log records (INFO and up) to the client as log events."""

    def __init__(self, events: EventWriter) -> None:
        super().__init__(logging.INFO)
        self.events = events

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == log.name:
            return  # the worker's own bookkeeping stays in the log file
        message = one_line(record.getMessage())
        self.events.emit({"type": "log", "level": record.levelname.lower(), "message": message})


def take_stdout() -> BinaryIO:
    """Keep a private handle on the real stdout and send fd 1 and sys.stdout to stderr."""
    sys.stdout.flush()
    events_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return open(events_fd, "wb")


def take_stdin() -> BinaryIO:
    """Keep a private handle on the real stdin; fd 0 and sys.stdin become empty.

    Libraries then cannot eat requests, and the stdin thread's blocked read holds no lock
    of `sys.stdin`, which the interpreter would need to flush at exit.
    """
    requests_fd = os.dup(0)
    empty = os.open(os.devnull, os.O_RDONLY)
    os.dup2(empty, 0)
    os.close(empty)
    sys.stdin = open(os.devnull, encoding="utf-8")
    return open(requests_fd, "rb")


# -- requests ----------------------------------------------------------------------------


class JobBoard:
    """The queue of jobs and the cancel flags, shared by the stdin thread and the main loop."""

    STOP = None

    def __init__(self) -> None:
        self.jobs: queue.Queue = queue.Queue()
        self.lock = threading.Lock()
        self.waiting: dict = {}
        self.running: Optional[str] = None
        self.cancel_running = False
        self.stopping = threading.Event()

    def add(self, job: dict) -> bool:
        """Queue a job; False if its id is already waiting or running."""
        with self.lock:
            if job["id"] in self.waiting or job["id"] == self.running:
                return False
            self.waiting[job["id"]] = job
        self.jobs.put(job)
        return True

    def start_next(self, timeout: float) -> Optional[dict]:
        """Block up to `timeout` for the next job still wanted; None on stop or timeout."""
        try:
            job = self.jobs.get(timeout=timeout)
        except queue.Empty:
            return None
        if job is self.STOP:
            return None
        with self.lock:
            if self.waiting.pop(job["id"], None) is None:
                return None
            self.running = job["id"]
            self.cancel_running = False
        return job

    def finish(self) -> None:
        with self.lock:
            self.running = None
            self.cancel_running = False

    def cancel(self, job_id: Optional[str]) -> list:
        """Flag the running job and drop waiting ones; return the dropped waiting ids."""
        with self.lock:
            if job_id is None or job_id == self.running:
                self.cancel_running = self.running is not None
            dropped = list(self.waiting) if job_id is None else [job_id] if job_id in self.waiting else []
            for dropped_id in dropped:
                del self.waiting[dropped_id]
            return dropped

    def stop(self, reason: str) -> None:
        """Stop serving: cancel everything and wake the main loop."""
        if self.stopping.is_set():
            return
        log.info("stopping: %s", reason)
        self.stopping.set()
        self.cancel(None)
        self.jobs.put(self.STOP)

    def check_cancel(self) -> None:
        """Raise Cancelled if the running job was cancelled or the worker is stopping."""
        if self.stopping.is_set():
            raise Cancelled("cancelled: the worker is shutting down")
        if self.cancel_running:
            raise Cancelled("cancelled by request")


def read_requests(stdin: BinaryIO, board: JobBoard, events: EventWriter) -> None:
    """Stdin thread: queue jobs, apply cancels, answer garbage (and lines over
    `MAX_REQUEST_BYTES`, skipped to their end) with an error; stop at EOF."""
    for line in iter(lambda: stdin.readline(MAX_REQUEST_BYTES + 1), b""):
        if len(line) > MAX_REQUEST_BYTES:
            while line and not line.endswith(b"\n"):
                line = stdin.readline(MAX_REQUEST_BYTES)
            events.emit(error_event(None, "bad_input", f"request longer than {MAX_REQUEST_BYTES} bytes: ignored"))
            continue
        if not line.strip():
            continue
        try:
            request = parse_request(line)
        except BadInputError as exc:
            events.emit(error_event(guess_id(line), exc.kind, one_line(exc)))
            continue
        if request["type"] == "cancel":
            for dropped in board.cancel(request.get("id")):
                events.emit(error_event(dropped, "cancelled", "cancelled before it started"))
        elif not board.add(request):
            events.emit(error_event(request["id"], "bad_input", f"job id {request['id']} is already in use"))
    board.stop("stdin closed")


def watch_parent(board: JobBoard, parent: int) -> None:
    """Daemon thread: stop when the parent process dies; force the exit if a job hangs."""
    while not board.stopping.is_set():
        if os.getppid() != parent:
            board.stop(f"parent process {parent} exited")
            break
        time.sleep(PARENT_CHECK_S)
    else:
        board.stopping.wait()
    time.sleep(SHUTDOWN_GRACE_S)
    log.error("the running job did not stop within %.0f s of shutdown; exiting hard", SHUTDOWN_GRACE_S)
    os._exit(2)


# -- jobs --------------------------------------------------------------------------------


def error_for(exc: BaseException, job_id: str) -> dict:
    """Map an exception to an error event with a one-line message."""
    if isinstance(exc, PPDError):
        kind, message = exc.kind, one_line(exc)
    elif is_out_of_memory(exc):
        kind, message = "out_of_memory", out_of_memory_text(exc)
    elif file_error_text(exc) is not None:  # a name too long, a full disk: the user's to fix
        kind, message = "bad_input", file_error_text(exc)
    elif isinstance(exc, ImportError):
        kind = "internal"
        message = (
            f"a dependency is missing in {sys.executable} ({one_line(exc)}); "
            f'install it with: "{sys.executable}" -m pip install depth-from-image'
        )
    else:
        kind = "internal"
        message = f"internal error: {type(exc).__name__}: {brief(exc, 300)} (the traceback is in the worker log)"
    return error_event(job_id, kind, message)


def free_memory() -> None:
    """Release cached GPU memory after an out-of-memory error so the next job can run."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is None:
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        torch.mps.empty_cache()


class JobProgress:
    """Turns per-stage progress into a whole-job fraction that only goes up.

    Each call also checks for a cancel, so a job stops at its next step or stage boundary.
    """

    def __init__(self, job_id: str, stages: Any, events: EventWriter, check_cancel: Callable[[], None]) -> None:
        self.whole = JobFraction(stages)
        self.job_id = job_id
        self.events = events
        self.check_cancel = check_cancel
        self._last: tuple = ("", "", -1.0, 0.0)

    def __call__(self, stage: str, fraction: float, message: str = "") -> None:
        self.check_cancel()
        whole = self.whole(stage, fraction)
        last_stage, last_message, last_fraction, last_time = self._last
        now = time.monotonic()
        if (stage, message) == (last_stage, last_message) and whole - last_fraction < PROGRESS_MIN_STEP:
            if now - last_time < PROGRESS_MIN_INTERVAL_S:
                return
        self._last = (stage, message, whole, now)
        self.events.emit({"type": "progress", "id": self.job_id, "stage": stage, "fraction": whole, "message": message})

    def done(self) -> None:
        self.events.emit({"type": "progress", "id": self.job_id, "stage": "done", "fraction": 1.0, "message": "done"})


class JobRunner:
    """Runs jobs through the pipeline with one model cache kept for the worker's life."""

    def __init__(self, board: JobBoard, events: EventWriter) -> None:
        self.board = board
        self.events = events
        self.models: Any = None
        self.clip_models = VideoModelCache()

    def run(self, job: dict) -> None:
        """Run one job and answer with exactly one result or error event.

        The pipeline removes any output it wrote when a job fails or is cancelled.
        """
        job_id = job["id"]
        started = time.monotonic()
        try:
            for folder in {os.path.dirname(os.path.abspath(path)) for path in job["outputs"].values() if path}:
                remove_stale_staging(folder)  # a killed worker's leftovers, even if this job fails before writing
            # The pipeline loads numpy, OpenCV and the meshers (seconds): after the handshake, not before.
            from ppd_core.photo_depth import ModelCache
            from ppd_core.pipeline import run_photo

            if self.models is None:
                self.models = ModelCache()
            loads_before = self.models.loads
            options = JobOptions.from_dict(job.get("options", {}))
            if is_clip_job(job["photo"], options):  # a video or a folder of frames: `ppd_core.clip_job`
                progress = JobProgress(job_id, CLIP_STAGES, self.events, self.board.check_cancel)
                stats = run_clip_job(job, options, self.clip_models, progress)
                progress.done()
                self.events.emit({"type": "result", "id": job_id, "outputs": stats.pop("outputs"),
                                  "stats": {**stats, "seconds": round(time.monotonic() - started, 3)}})
                return
            progress = JobProgress(job_id, JOB_STAGES, self.events, self.board.check_cancel)
            stats = run_photo(job["photo"], job["outputs"], options, models=self.models, on_progress=progress,
                              keep=job.get("keep", ()))
            progress.done()
        except Exception as exc:  # every failure becomes one error event; the worker lives on
            if isinstance(exc, PPDError):
                log.info("job %s: %s: %s", job_id, exc.kind, one_line(exc))
            else:
                traceback.print_exc(file=sys.stderr)
            if is_out_of_memory(exc):
                free_memory()
            self.events.emit(error_for(exc, job_id))
            return
        outputs = stats.pop("outputs", job["outputs"])
        stats.update(
            seconds=round(time.monotonic() - started, 3),
            model_loads=self.models.loads,
            network_runs=self.models.network_runs,
            model_reused=options.depth_file is None and self.models.loads == loads_before,
        )
        self.events.emit({"type": "result", "id": job_id, "outputs": outputs, "stats": stats})


def serve(stdin: BinaryIO, events: EventWriter, parent: int) -> int:
    """Handshake, then run jobs until stdin closes or `parent` dies; return the exit code."""
    log.info("worker %s starting (pid %d, %s)", ppd_core.__version__, os.getpid(), sys.executable)
    problem = torch_problem()
    if problem is not None:
        log.error("%s", problem)
        events.emit({"type": "error", "id": None, "kind": "torch_missing", "message": problem})
        return 3
    board = JobBoard()
    events.emit(handshake_event())
    swept = sweep_recorded_staging()
    if swept:
        log.info("removed %d staging folders of killed runs: %s", len(swept), ", ".join(map(str, swept)))
    forward = EventLogHandler(events)
    for package in ("ppd_core", "mesh"):
        logging.getLogger(package).addHandler(forward)
    threading.Thread(target=read_requests, args=(stdin, board, events), name="stdin", daemon=True).start()
    threading.Thread(target=watch_parent, args=(board, parent), name="parent", daemon=True).start()
    runner = JobRunner(board, events)
    while not board.stopping.is_set():
        job = board.start_next(timeout=PARENT_CHECK_S)
        if job is None:
            continue
        try:
            runner.run(job)
        finally:
            board.finish()
    return 0


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def main() -> int:
    """Entry point of `python -m ppd_core.worker`."""
    parent = os.getppid()
    events = EventWriter(take_stdout())
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.captureWarnings(True)
    signal.signal(signal.SIGTERM, _terminate)
    return serve(take_stdin(), events, parent)


if __name__ == "__main__":
    sys.exit(main())
