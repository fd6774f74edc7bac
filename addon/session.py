"""One worker for the whole Blender session and the one run at a time that uses it.

`start_run` checks the inputs and queues the job; `step` is the modal operator's timer
step: it never blocks (the worker starts on a thread, events are polled), updates the
progress shown in the panel, and imports the result when it arrives. The worker stays
alive between runs and is closed by `shutdown` (add-on disabled, Blender quitting).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field

import bpy

from ppd_core import client as worker_client

from . import importer, photo_source, preferences
from .properties import auto_resolution, job_options

START_TIMEOUT_S = 300.0
CANCEL_GRACE_S = 15.0
RUNNING, FINISHED, CANCELLED, FAILED = "RUNNING", "FINISHED", "CANCELLED", "FAILED"


class RunError(Exception):
    """A run cannot start; the message is shown in the panel as is."""


@dataclass
class Run:
    """One photo on its way through the worker."""

    scene_name: str
    photo: photo_source.SourcePhoto
    options: dict
    shading: str
    create_camera: bool
    temp_dir: str
    npz_path: str
    started_at: float = field(default_factory=time.monotonic)
    job_id: str | None = None
    cancel_requested: bool = False
    cancel_sent_at: float | None = None


@dataclass
class _Starter:
    """A worker starting on a thread (its handshake can take many seconds: torch loads)."""

    client: worker_client.WorkerClient
    thread: threading.Thread | None = None
    error: str = ""

    def start(self) -> None:
        self.thread = threading.Thread(target=self._work, name="ppd-worker-start", daemon=True)
        self.thread.start()

    def _work(self) -> None:
        try:
            self.client.start(timeout=START_TIMEOUT_S)
        except worker_client.WorkerError as error:
            self.error = str(error)
        except Exception as error:  # anything else must still end the run with a message
            self.error = f"the worker could not be started: {error}"


def _close_in_background(client: worker_client.WorkerClient) -> None:
    """Stop a worker without making the UI wait (close can take seconds if it is stuck)."""
    threading.Thread(target=client.close, kwargs={"timeout": 2}, name="ppd-worker-close", daemon=True).start()


STAGE_LABELS = {"load": "Photo", "model": "Model", "download": "Weights download", "encode": "Encoder",
                "diffusion": "Depth", "lift": "Points", "mesh": "Mesh", "export": "Writing", "done": "Done"}


def worker_environment() -> dict:
    """What the worker's environment adds: with Blender's "Allow Online Access" off, the
    worker must not download weights (Hugging Face's offline switch)."""
    return {} if bpy.app.online_access else {"HF_HUB_OFFLINE": "1"}


def error_text(event: dict) -> str:
    """The panel's message for a worker error event, with the fix Blender's settings need."""
    message = str(event.get("message") or "the worker reported an error")
    if event.get("kind") == "weights_missing" and not bpy.app.online_access:
        message += (" (Blender's online access is off, so nothing is downloaded: allow it in Preferences >"
                    " System > Network, or set a Weights Folder)")
    return message


def progress_text(event: dict) -> str:
    """The panel's progress line for a worker progress event: "Stage: message"."""
    stage = str(event.get("stage") or "")
    label = STAGE_LABELS.get(stage, stage.capitalize() or "Working")
    message = " ".join(str(event.get("message") or "").split())
    return f"{label}: {message}" if message else label


class Session:
    """The worker client, a worker being started, and the current run."""

    def __init__(self) -> None:
        self.client: worker_client.WorkerClient | None = None
        self.starter: _Starter | None = None
        self.run: Run | None = None

    @property
    def running(self) -> bool:
        return self.run is not None

    # -- start ---------------------------------------------------------------------------

    def start_run(self, context: bpy.types.Context) -> None:
        """Check the settings, prepare the photo and start (or reuse) the worker.

        Raises RunError, whose message is also left in the panel's last error.
        """
        state = context.window_manager.depth_from_image
        state.last_error = state.last_result = ""
        try:
            self._prepare(context)
        except RunError as error:
            state.last_error = str(error)
            raise
        state.running, state.progress, state.stage = True, 0.0, "Starting"

    def _prepare(self, context: bpy.types.Context) -> None:
        if self.run is not None:
            raise RunError("A photo is already being processed: wait for it or cancel it")
        prefs = preferences.get(context)
        python = bpy.path.abspath(prefs.python).strip()
        if not python:
            raise RunError("No Python interpreter set: open Preferences > Add-ons > Depth from Image "
                           "and use Detect or Set up backend")
        if os.path.isdir(python):
            raise RunError(f"The Python interpreter is a folder: {python}; choose the python executable inside "
                           f"it ({os.path.join(python, 'Scripts' if os.name == 'nt' else 'bin', 'python')})")
        if not os.path.isfile(python):
            raise RunError(f"Python interpreter not found: {python} (set it in the add-on preferences)")
        try:
            log_path = preferences.worker_log_path()
        except OSError as error:
            raise RunError(f"Cannot write the worker log: {error}") from error
        settings = context.scene.depth_from_image
        if settings.preset == "custom" and settings.near >= settings.far:
            raise RunError(f"Near ({settings.near:g} m) must be less than Far ({settings.far:g} m)")
        temp_dir = tempfile.mkdtemp(prefix="ppd-blender-")
        try:
            photo = photo_source.resolve_photo(settings, temp_dir)
        except (photo_source.PhotoError, OSError, RuntimeError) as error:  # RuntimeError: bpy image I/O
            shutil.rmtree(temp_dir, ignore_errors=True)
            raise RunError(str(error)) from error
        self.run = Run(
            scene_name=context.scene.name, photo=photo, options=job_options(settings, prefs),
            shading=settings.shading, create_camera=settings.create_camera,
            temp_dir=temp_dir, npz_path=os.path.join(temp_dir, "result.npz"),
        )
        self._ensure_worker(python, log_path, worker_environment())

    def _ensure_worker(self, python: str, log_path: str, env: dict) -> None:
        """Reuse the worker (or the one starting) if it has this interpreter and environment."""
        if self.starter is not None:
            if self.starter.client.python == python and self.starter.client.env == env:
                return
            _close_in_background(self.starter.client)  # its thread ends with a failed handshake
            self.starter = None
        client = self.client
        if client is not None and client.alive and client.python == python and client.env == env:
            return
        if self.client is not None:
            _close_in_background(self.client)
            self.client = None
        self.starter = _Starter(worker_client.WorkerClient(python, log_path=log_path, env=env))
        self.starter.start()

    # -- the timer step ------------------------------------------------------------------

    def step(self, context: bpy.types.Context) -> str:
        """Advance the run without blocking; return RUNNING, FINISHED, CANCELLED or FAILED.

        Without a run (it was dropped, say by loading a file) the answer is CANCELLED."""
        run = self.run
        if run is None:
            return CANCELLED
        state = context.window_manager.depth_from_image
        if self.starter is not None:
            if self.starter.thread.is_alive():
                if run.cancel_requested:
                    return self._finish(context, CANCELLED, "")
                state.stage = "Starting the worker (loading torch)"
                return RUNNING
            starter, self.starter = self.starter, None
            if starter.error:
                return self._finish(context, FAILED, starter.error)
            self.client = starter.client
        if self.client is None or (run.job_id is None and not self.client.alive):
            self.client = None
            self.starter = None
            return self._finish(context, FAILED, "The worker is not running; start the run again")
        if run.cancel_requested and run.job_id is None:
            return self._finish(context, CANCELLED, "")
        if run.job_id is None:
            options = dict(run.options)
            if options.get("resolution") is None:
                handshake = self.client.handshake or {}
                options["resolution"] = auto_resolution(options.get("device", "auto"), handshake)
            run.options = options
            job = {"photo": run.photo.path, "outputs": {"npz": run.npz_path}, "options": options}
            try:
                run.job_id = self.client.submit(job)
            except worker_client.WorkerError as error:
                self.client = None
                return self._finish(context, FAILED, str(error))
            state.stage = "Queued"
        if run.cancel_requested and run.cancel_sent_at is None:
            self.client.cancel(run.job_id)
            run.cancel_sent_at = time.monotonic()
            state.stage = "Cancelling"
        for event in self.client.poll():
            outcome = self._handle(context, run, event)
            if outcome is not None:
                return outcome
        if run.cancel_sent_at is not None and time.monotonic() - run.cancel_sent_at > CANCEL_GRACE_S:
            _close_in_background(self.client)
            self.client = None
            return self._finish(context, CANCELLED, "")
        return RUNNING

    def _handle(self, context, run: Run, event: dict) -> str | None:
        state = context.window_manager.depth_from_image
        kind = event.get("type")
        if kind == "error" and event.get("kind") == "worker_crashed":
            self.client = None
            return self._finish(context, FAILED, str(event.get("message", "the worker stopped")))
        if event.get("id") != run.job_id:
            return None
        if kind == "progress":
            state.progress = max(state.progress, float(event.get("fraction", 0.0)))
            state.stage = progress_text(event)
        elif kind == "error":
            if event.get("kind") == "cancelled" or run.cancel_requested:
                return self._finish(context, CANCELLED, "")
            return self._finish(context, FAILED, error_text(event))
        elif kind == "result":
            if run.cancel_requested:
                return self._finish(context, CANCELLED, "")
            return self._import(context, run, event)
        return None

    def _import(self, context, run: Run, event: dict) -> str:
        state = context.window_manager.depth_from_image
        state.stage, state.progress = "Importing", 1.0
        scene = bpy.data.scenes.get(run.scene_name) or context.scene
        path = (event.get("outputs") or {}).get("npz", run.npz_path)
        view_layer = context.view_layer if scene == context.scene else None
        try:
            imported = importer.import_result(
                scene, path, name=run.photo.name, image=run.photo.image(),
                shading=run.shading, create_camera=run.create_camera, view_layer=view_layer,
            )
        except Exception as error:  # the importer has rolled back; the run must not hang
            return self._finish(context, FAILED, f"Import failed: {error}")
        main = imported.objects[0]
        vertices, faces = len(main.data.vertices), len(main.data.polygons)
        seconds = time.monotonic() - run.started_at
        size = f"{vertices:,} points" if not faces else f"{vertices:,} vertices, {faces:,} faces"
        state.last_result = " ".join([f"{main.name}: {size} in {seconds:.0f} s.", *imported.warnings])
        bpy.ops.ed.undo_push(message="Depth from Image")
        return self._finish(context, FINISHED, "")

    def _finish(self, context, outcome: str, error: str) -> str:
        state = context.window_manager.depth_from_image
        run, self.run = self.run, None
        if run is not None:
            shutil.rmtree(run.temp_dir, ignore_errors=True)
        state.running = False
        state.progress = 0.0
        state.stage = {FINISHED: "Done", CANCELLED: "Cancelled", FAILED: "Failed"}[outcome]
        if error:
            state.last_error = error
        return outcome

    # -- cancel and stop -----------------------------------------------------------------

    def request_cancel(self) -> None:
        """Ask the current run to stop; the next step sends the cancel and waits for it."""
        if self.run is not None:
            self.run.cancel_requested = True

    def abandon(self, context: bpy.types.Context) -> None:
        """Drop the current run at once (a new file is loading): cancel it, keep no result."""
        if self.run is None:
            return
        if self.client is not None and self.run.job_id is not None:
            self.client.cancel(self.run.job_id)
        self._finish(context, CANCELLED, "")

    def shutdown(self) -> None:
        """Stop the worker (and one still starting); forget the run."""
        if self.run is not None:
            shutil.rmtree(self.run.temp_dir, ignore_errors=True)
            self.run = None
        if self.starter is not None:
            # Closing makes a pending handshake fail at once, so the join is short.
            self.starter.client.close(timeout=2)
            self.starter.thread.join(timeout=5)
            self.starter.client.close(timeout=2)
            self.starter = None
        if self.client is not None:
            self.client.close(timeout=5)
            self.client = None


SESSION = Session()
