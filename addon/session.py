"""One worker for the whole Blender session and the one run (a queue of photos) that uses it.

`start_run` checks the inputs and prepares the photos; `step` is the modal operator's timer
step: it never blocks (the worker starts and closes as background tasks, events are polled),
submits every photo to the worker's queue, updates the progress shown in the panel and
imports each result as it arrives: into its own collection, in place of the photo's previous
result unless the user keeps earlier results (`scene.results`). The worker stays alive
between runs, so it keeps the model and the last photos' depth: running a photo again with
other geometry settings only lifts and meshes. It is closed by `shutdown` (add-on disabled,
Blender quitting).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass

import bpy

from ppd_core import client as worker_client
from ppd_core.errors import PPDError

from . import settings
from .backend import wording
from .backend.tasks import Task
from .properties import auto_resolution, job_options
from .scene import photo_source, results

START_TIMEOUT_S = 300.0
CANCEL_GRACE_S = 15.0
RUNNING, FINISHED, CANCELLED, FAILED = "RUNNING", "FINISHED", "CANCELLED", "FAILED"


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
    keep_previous: bool = False
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
    """A worker starting as a background task (its handshake can take many seconds: torch loads)."""

    client: worker_client.WorkerClient
    task: Task

    @classmethod
    def start(cls, client: worker_client.WorkerClient) -> "_Starter":
        return cls(client, Task("worker-start", lambda task: client.start(timeout=START_TIMEOUT_S)).start())

    def error(self) -> str:
        """Why the start failed, in the panel's words ("" when it did not)."""
        failure = self.task.exception
        if isinstance(failure, worker_client.WorkerError):
            return wording.start_error_text(failure.kind, str(failure))
        return f"the worker could not be started: {failure}" if failure is not None else ""


def _close_in_background(client: worker_client.WorkerClient) -> None:
    """Stop a worker without making the UI wait (close can take seconds if it is stuck)."""
    Task("worker-close", lambda task: client.close(timeout=2)).start()


def error_text(event: dict, weights_folder: str = "") -> str:
    """The panel's message for a job's error event, in Blender's words, with the next step."""
    return wording.run_error_text(str(event.get("kind") or "internal"), str(event.get("message") or ""),
                                  bpy.app.online_access, bool(weights_folder))


def clip_folder(photo: photo_source.SourcePhoto) -> str:
    """Where a clip's folder of frames goes: beside the movie, or beside the image sequence's folder."""
    return os.path.dirname(photo.path.rstrip(os.sep))


def _job(item: QueuedPhoto, options: dict) -> dict:
    """The worker job of one queued photo; a clip's writes its frames' USD files and the stage that
    plays them into its folder (the worker names it after the clip), which the import reads."""
    if item.photo.clip:
        return {"photo": item.photo.path, "outputs": {"usd": clip_folder(item.photo)},
                "options": {**options, "video": os.path.isdir(item.photo.path)}}
    return {"photo": item.photo.path, "outputs": {"npz": item.npz_path}, "options": options}


class Session:
    """The worker client, a worker being started, and the current run."""

    def __init__(self) -> None:
        self.client: worker_client.WorkerClient | None = None
        self.starter: _Starter | None = None
        self.run: Run | None = None
        self.worker_for: tuple | None = None  # `settings.backend_key` of the preferences the worker started for
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
        prefs = settings.addon_prefs(context)
        try:
            python = settings.interpreter(prefs)
        except ValueError as error:
            raise RunError(str(error)) from None
        log_path = settings.worker_log_path()
        try:
            os.makedirs(os.path.dirname(log_path), exist_ok=True)
        except OSError as error:
            raise RunError(f"Cannot write the worker log: {error}") from error
        chosen = context.scene.depth_from_image
        if chosen.preset == "custom" and chosen.near >= chosen.far:
            raise RunError(f"Near ({chosen.near:g} m) must be less than Far ({chosen.far:g} m)")
        temp_dir = tempfile.mkdtemp(prefix="ppd-blender-")
        try:
            photos = photo_source.resolve_photos(chosen, temp_dir)
        except (photo_source.PhotoError, OSError, RuntimeError) as error:  # RuntimeError: bpy image I/O
            shutil.rmtree(temp_dir, ignore_errors=True)
            raise RunError(str(error)) from error
        if chosen.output == "SOLID" and any(photo.clip for photo in photos):
            shutil.rmtree(temp_dir, ignore_errors=True)
            raise RunError("A print solid is made from one photo: choose Mesh or Point Cloud for a clip")
        queue = [QueuedPhoto(photo, os.path.join(temp_dir, f"{number}.npz")) for number, photo in enumerate(photos)]
        self.run = Run(scene_name=context.scene.name, photos=queue, options=job_options(chosen, prefs),
                       shading=chosen.shading, create_camera=chosen.create_camera, temp_dir=temp_dir,
                       keep_previous=chosen.keep_previous)
        self._ensure_worker(python, log_path, settings.worker_env(prefs))
        self.worker_for = settings.backend_key(prefs)

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
        settings.rotate_log(log_path)
        self.starter = _Starter.start(worker_client.WorkerClient(python, log_path=log_path, env=env))

    # -- the timer step ------------------------------------------------------------------

    def step(self, context: bpy.types.Context) -> str:
        """Advance the run without blocking; return RUNNING, FINISHED, CANCELLED or FAILED.

        Without a run (it was dropped, say by loading a file) the answer is CANCELLED."""
        run = self.run
        if run is None:
            return CANCELLED
        state = context.window_manager.depth_from_image
        if self.starter is not None:
            if not self.starter.task.status().done:
                if run.cancel_requested:
                    return self._finish(context, CANCELLED, "")
                state.stage = "Starting the worker (loading torch)"
                return RUNNING
            starter, self.starter = self.starter, None
            if starter.error():
                return self._finish(context, FAILED, starter.error())
            self.client = starter.client
        if self.client is None or (not run.submitted and not self.client.alive):
            self.client = None
            self.starter = None
            return self._finish(context, FAILED, "The worker is not running. Next: press Depth from Image again")
        if run.cancel_requested and not run.submitted:
            return self._finish(context, CANCELLED, "")
        if not run.submitted:
            failure = self._submit(run)
            if failure:
                failure = wording.with_next(failure, wording.RUN_NEXT_STEPS["worker_crashed"])
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
                item.job_id = self.client.submit(_job(item, options))
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
                item.outcome, item.message = FAILED, error_text(event)
            return
        item = next((item for item in run.waiting() if item.job_id == event.get("id")), None)
        if item is None:
            return
        label = f"{item.photo.name} ({run.photos.index(item) + 1} of {len(run.photos)})" if len(run.photos) > 1 else ""
        if kind == "progress":
            item.fraction = max(item.fraction, float(event.get("fraction", 0.0)))
            state.stage = " ".join(filter(None, [label, wording.progress_text(event)]))
        elif kind == "error":
            run.start_next()  # this photo answered: the worker goes on with the next
            cancelled = event.get("kind") == "cancelled" or run.cancel_requested
            item.outcome = CANCELLED if cancelled else FAILED
            item.message = "" if cancelled else error_text(event, settings.addon_prefs(context).weights_folder)
        elif kind == "result":
            run.start_next()
            if run.cancel_requested:
                item.outcome = CANCELLED
            else:
                self._import(context, run, item, event)

    def _import(self, context, run: Run, item: QueuedPhoto, event: dict) -> None:
        """Create the objects of one result in its own collection, in place of the photo's previous
        result unless the run keeps earlier ones; the outcome says how it went."""
        state = context.window_manager.depth_from_image
        state.stage = f"Importing {item.photo.name}"
        scene = bpy.data.scenes.get(run.scene_name) or context.scene
        path = (event.get("outputs") or {}).get("npz", item.npz_path)
        view_layer = context.view_layer if scene == context.scene else None
        common = dict(name=item.photo.name, key=item.photo.key, keep_previous=run.keep_previous,
                      image=item.photo.image(), shading=run.shading, create_camera=run.create_camera,
                      view_layer=view_layer)
        try:
            if item.photo.clip:
                imported = results.import_clip(scene, event.get("stats") or {}, **common)
            else:
                imported = results.import_photo_result(scene, path, **common)
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
        if item.photo.clip:
            stats = event.get("stats") or {}
            size = f"{stats.get('frames', 0)} frames in {stats.get('folder', '')}, the first {size}"
        self.last_stats = event.get("stats") or {}
        item.outcome = FINISHED
        item.message = " ".join([f"{main.name}: {size} in {seconds:.0f} s.", *wording.sources_text(event),
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
            self.starter.task.join(timeout=5)
            self.starter.client.close(timeout=2)
            self.starter = None
        if self.client is not None:
            self.client.close(timeout=5)
            self.client = None


SESSION = Session()
