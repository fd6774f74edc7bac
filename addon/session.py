"""One worker for the whole Blender session and the one run (a queue of photos) that uses it.

`start_run` checks the inputs and prepares the photos; `step` is the modal operator's timer
step: it never blocks (the worker starts on a thread, events are polled), submits every photo
to the worker's queue, updates the progress shown in the panel and imports each result, into
its own collection, as it arrives. The worker stays alive between runs, so it keeps the model
and the last photos' depth: running a photo again with other geometry settings only lifts and
meshes. It is closed by `shutdown` (add-on disabled, Blender quitting).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass

import bpy

from ppd_core import client as worker_client
from ppd_core.errors import PPDError

from . import backend_ops, importer, interpreters, photo_source
from .properties import auto_resolution, job_options

START_TIMEOUT_S = 300.0
CANCEL_GRACE_S = 15.0
RUNNING, FINISHED, CANCELLED, FAILED = "RUNNING", "FINISHED", "CANCELLED", "FAILED"
STAGE_LABELS = {"load": "Photo", "model": "Model", "download": "Weights download", "encode": "Encoder",
                "diffusion": "Depth", "geometry": "Geometry", "lift": "Points", "mesh": "Mesh", "export": "Writing",
                "done": "Done"}


class RunError(Exception):
    """A run cannot start; the message is shown in the panel as is."""


@dataclass
class QueuedPhoto:
    """One photo of a run: its job in the worker and how it ended ("" while it has not)."""

    photo: photo_source.SourcePhoto
    npz_path: str
    job_id: str | None = None
    started_at: float | None = None  # when the worker began it (time.monotonic)
    fraction: float = 0.0
    outcome: str = ""
    message: str = ""


@dataclass
class Run:
    """Photos on their way through the worker, with the settings they run with."""

    scene_name: str
    photos: list
    options: dict
    shading: str
    create_camera: bool
    temp_dir: str
    submitted: bool = False
    cancel_requested: bool = False
    cancel_sent_at: float | None = None

    def waiting(self) -> list:
        return [item for item in self.photos if not item.outcome]

    def progress(self) -> float:
        return sum(1.0 if item.outcome else item.fraction for item in self.photos) / len(self.photos)

    def start_next(self) -> None:
        """The worker runs its queue in order: the first photo not yet begun begins now (when
        the photos are submitted, then each time one answers), so each is timed on its own."""
        item = next((item for item in self.waiting() if item.started_at is None), None)
        if item is not None:
            item.started_at = time.monotonic()


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
            self.error = backend_ops.start_error_text(error)
        except Exception as error:  # anything else must still end the run with a message
            self.error = f"the worker could not be started: {error}"


def _close_in_background(client: worker_client.WorkerClient) -> None:
    """Stop a worker without making the UI wait (close can take seconds if it is stuck)."""
    threading.Thread(target=client.close, kwargs={"timeout": 2}, name="ppd-worker-close", daemon=True).start()


def error_text(event: dict, weights_folder: str = "") -> str:
    """The panel's message for a worker error event, with the fix Blender's settings need."""
    message = str(event.get("message") or "the worker reported an error")
    if event.get("kind") == "weights_missing":
        if not weights_folder and not bpy.app.online_access:
            message += (" (Blender's online access is off, so nothing is downloaded: use Download Weights in the "
                        "add-on preferences, or allow online access in Preferences > System > Network)")
        elif not weights_folder:
            message += " (use Download Weights in the add-on preferences)"
        else:
            message += " (the Weights Folder lacks files: use Download Weights in the add-on preferences)"
    return message


def sources_text(event: dict) -> list:
    """Where a result's scale and camera came from, and whether its depth was reused."""
    depth = (event.get("stats") or {}).get("depth") or {}
    if not depth:
        return []
    reused = " Depth reused: only lifting and meshing ran." if depth.get("network_reused") else ""
    return [f"Scale: {depth.get('scale')}; camera: {depth.get('camera')}.{reused}"]


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
        self.worker_for: tuple | None = None  # `backend_ops.backend_key` of the preferences the worker started for
        self.last_stats: dict = {}  # the worker's stats of the last result (the tests read its network_runs)

    @property
    def running(self) -> bool:
        return self.run is not None

    @property
    def handshake(self) -> dict:
        """The running worker's handshake ({} without one): its torch, devices and weights."""
        return (self.client.handshake or {}) if self.client is not None else {}

    # -- start ---------------------------------------------------------------------------

    def start_run(self, context: bpy.types.Context) -> None:
        """Check the settings, prepare the photos and start (or reuse) the worker.

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
        prefs = backend_ops.addon_prefs(context)
        try:
            python = interpreters.resolve(bpy.path.abspath(prefs.python))
        except ValueError as error:
            raise RunError(str(error)) from None
        log_path = backend_ops.worker_log_path()
        try:
            os.makedirs(os.path.dirname(log_path), exist_ok=True)
        except OSError as error:
            raise RunError(f"Cannot write the worker log: {error}") from error
        settings = context.scene.depth_from_image
        if settings.preset == "custom" and settings.near >= settings.far:
            raise RunError(f"Near ({settings.near:g} m) must be less than Far ({settings.far:g} m)")
        temp_dir = tempfile.mkdtemp(prefix="ppd-blender-")
        try:
            photos = photo_source.resolve_photos(settings, temp_dir)
        except (photo_source.PhotoError, OSError, RuntimeError) as error:  # RuntimeError: bpy image I/O
            shutil.rmtree(temp_dir, ignore_errors=True)
            raise RunError(str(error)) from error
        queue = [QueuedPhoto(photo, os.path.join(temp_dir, f"{number}.npz")) for number, photo in enumerate(photos)]
        self.run = Run(scene_name=context.scene.name, photos=queue, options=job_options(settings, prefs),
                       shading=settings.shading, create_camera=settings.create_camera, temp_dir=temp_dir)
        self._ensure_worker(python, log_path, backend_ops.worker_env(prefs))
        self.worker_for = backend_ops.backend_key(prefs)

    def _ensure_worker(self, python: str, log_path: str, env: dict) -> None:
        """Reuse the worker (or the one starting) if it has this interpreter and environment;
        else start a new one, rotating the log first (never under a live worker's client)."""
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
        backend_ops.rotate_log(log_path)
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
        if self.client is None or (not run.submitted and not self.client.alive):
            self.client = None
            self.starter = None
            return self._finish(context, FAILED, "The worker is not running; start the run again")
        if run.cancel_requested and not run.submitted:
            return self._finish(context, CANCELLED, "")
        if not run.submitted:
            failure = self._submit(run)
            if failure:
                return self._finish(context, FAILED, failure)
            state.stage = "Queued"
        if run.cancel_requested and run.cancel_sent_at is None:
            self.client.cancel()
            run.cancel_sent_at = time.monotonic()
            state.stage = "Cancelling"
        for event in self.client.poll():
            self._handle(context, run, event)
        if not run.waiting():
            return self._conclude(context, run)
        if run.cancel_sent_at is not None and time.monotonic() - run.cancel_sent_at > CANCEL_GRACE_S:
            _close_in_background(self.client)
            self.client = None
            return self._finish(context, CANCELLED, "")
        state.progress = max(state.progress, run.progress())
        return RUNNING

    def _submit(self, run: Run) -> str:
        """Queue every photo in the worker; a message when the worker cannot take them."""
        options = dict(run.options)
        if options.get("resolution") is None:
            options["resolution"] = auto_resolution(options.get("device", "auto"), self.handshake)
        run.options = options
        try:
            for item in run.photos:
                item.job_id = self.client.submit({"photo": item.photo.path, "outputs": {"npz": item.npz_path},
                                                  "options": options})
        except worker_client.WorkerError as error:
            self.client = None
            return str(error)
        run.submitted = True
        run.start_next()
        return ""

    def _handle(self, context, run: Run, event: dict) -> None:
        state = context.window_manager.depth_from_image
        kind = event.get("type")
        if kind == "error" and event.get("kind") == "worker_crashed":
            self.client = None
            for item in run.waiting():  # every photo still waiting gets the answer
                item.outcome, item.message = FAILED, str(event.get("message", "the worker stopped"))
            return
        item = next((item for item in run.waiting() if item.job_id == event.get("id")), None)
        if item is None:
            return
        label = f"{item.photo.name} ({run.photos.index(item) + 1} of {len(run.photos)})" if len(run.photos) > 1 else ""
        if kind == "progress":
            item.fraction = max(item.fraction, float(event.get("fraction", 0.0)))
            state.stage = " ".join(filter(None, [label, progress_text(event)]))
        elif kind == "error":
            run.start_next()  # this photo answered: the worker goes on with the next
            cancelled = event.get("kind") == "cancelled" or run.cancel_requested
            item.outcome = CANCELLED if cancelled else FAILED
            item.message = "" if cancelled else error_text(event, backend_ops.addon_prefs(context).weights_folder)
        elif kind == "result":
            run.start_next()
            if run.cancel_requested:
                item.outcome = CANCELLED
            else:
                self._import(context, run, item, event)

    def _import(self, context, run: Run, item: QueuedPhoto, event: dict) -> None:
        """Create the objects of one result in its own collection; the outcome says how it went."""
        state = context.window_manager.depth_from_image
        state.stage = f"Importing {item.photo.name}"
        scene = bpy.data.scenes.get(run.scene_name) or context.scene
        path = (event.get("outputs") or {}).get("npz", item.npz_path)
        view_layer = context.view_layer if scene == context.scene else None
        try:
            imported = importer.import_result(
                scene, path, name=item.photo.name, image=item.photo.image(),
                shading=run.shading, create_camera=run.create_camera, view_layer=view_layer,
            )
        except PPDError as error:  # a result file that breaks its layout; the importer rolled back
            item.outcome, item.message = FAILED, f"The worker's result could not be read: {error}"
            return
        except Exception as error:  # the importer has rolled back; the run must not hang
            item.outcome, item.message = FAILED, f"Import failed: {error}"
            return
        main = imported.objects[0]
        vertices, faces = len(main.data.vertices), len(main.data.polygons)
        seconds = time.monotonic() - item.started_at
        size = f"{vertices:,} points" if not faces else f"{vertices:,} vertices, {faces:,} faces"
        self.last_stats = event.get("stats") or {}
        item.outcome = FINISHED
        item.message = " ".join([f"{main.name}: {size} in {seconds:.0f} s.", *sources_text(event),
                                 *imported.warnings])
        bpy.ops.ed.undo_push(message="Depth from Image")

    def _conclude(self, context, run: Run) -> str:
        """Finish a run whose photos have all answered: what was made, and what failed."""
        state = context.window_manager.depth_from_image
        done = [item for item in run.photos if item.outcome == FINISHED]
        failed = [item for item in run.photos if item.outcome == FAILED]
        if len(run.photos) == 1:
            state.last_result = done[0].message if done else ""
        elif done:
            state.last_result = f"{len(done)} of {len(run.photos)} photos imported. " + " ".join(
                item.message for item in done)
        errors = [item.message if len(run.photos) == 1 else f"{item.photo.name}: {item.message}" for item in failed]
        if done:
            return self._finish(context, FINISHED, " ".join(errors))
        if failed:
            return self._finish(context, FAILED, " ".join(errors))
        return self._finish(context, CANCELLED, "")

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
        if self.client is not None and self.run.submitted:
            self.client.cancel()
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
