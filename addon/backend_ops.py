"""The backend's operators: Detect, Check, Set up backend (and Cancel), Remove Backend, and the
log buttons. Each starts a background task (`backend.tasks`) through `state.start_task`; what
it found is kept in `state` and drawn by the status block and the preferences.
"""

from __future__ import annotations

import os
import shutil

import bpy
from bpy.props import StringProperty

from ppd_core import client as worker_client

from . import session, settings, state
from .backend import interpreters, setup, wording
from .backend.tasks import Task

CHECK_TIMEOUT_S = 180.0
OFFLINE_SETUP = ("Set up backend downloads torch and the other packages (several GB): allow online access in "
                 "Preferences > System > Network first")


def check_error_text(result) -> str:
    """The problem a Check found ("" when `check_interpreter` answered with a handshake)."""
    if isinstance(result, dict):
        return ""
    if isinstance(result, worker_client.WorkerError):
        return wording.start_error_text(result.kind, str(result))
    return str(result)


def backend_busy() -> str:
    """Why the backend folder may not be made or deleted now ("" when it may): a set-up, a
    removal, a Check, a run or a weights download is using it."""
    reasons = (("setup", "The backend is being set up"), ("remove", "The backend is being removed"),
               ("check", "A Check is starting a worker: wait for it"),
               ("download", "The weights are downloading with the backend: wait for it or cancel it"))
    for name, reason in reasons:
        if state.running(name):
            return reason
    if session.SESSION.running:
        return "A photo is being processed with the backend: wait for it or cancel it"
    return ""


def poll_backend_idle(cls) -> bool:
    """An operator's poll: True when the backend folder may change, else False with the reason."""
    reason = backend_busy()
    if reason:
        cls.poll_message_set(reason)
    return not reason


class DEPTH_OT_detect_interpreter(bpy.types.Operator):
    """Find a Python that has Depth from Image installed (the set-up backend, an active venv, python3 on PATH)"""

    bl_idname = "depth_from_image.detect_interpreter"
    bl_label = "Detect"

    @classmethod
    def poll(cls, context):
        return not state.running("detect")

    def execute(self, context):
        venv = settings.backend_dir()

        def done(task: Task) -> None:
            if task.exception is not None:
                state.NOTES["detect"] = [wording.with_next(
                    f"Detect failed: {task.status().error}",
                    "set Python to the python executable of an environment with torch and Depth from Image, or use "
                    "Set up backend")]
                return
            best, report = task.result
            lines = [f"{path}: {'Depth from Image installed' if ok else 'no Depth from Image'}" for path, ok in report]
            if best:
                settings.addon_prefs().python = best  # looked up now: the add-on may have been re-enabled
            else:
                lines.append("No Python with Depth from Image found: use Set up backend")
            state.NOTES["detect"] = lines

        state.start_task(Task("detect", lambda task: interpreters.detect(venv)).start(), done)
        return {"FINISHED"}


class DEPTH_OT_check_interpreter(bpy.types.Operator):
    """Start the worker once and show the package and torch versions, the devices, the precision and the weights"""

    bl_idname = "depth_from_image.check_interpreter"
    bl_label = "Check"

    @classmethod
    def poll(cls, context):
        return not state.running("check")

    def execute(self, context):
        prefs = settings.addon_prefs(context)
        key, env, log = settings.backend_key(prefs), settings.worker_env(prefs), settings.worker_log_path()
        state.forget_answers()
        try:
            python = settings.interpreter(prefs)
            os.makedirs(os.path.dirname(log), exist_ok=True)
        except (ValueError, OSError) as error:
            state.CHECK.update({"for": key, "error": str(error)})
            return {"FINISHED"}
        settings.rotate_log(log)

        def done(task: Task) -> None:
            answer = task.result if task.exception is None else task.exception
            state.CHECK.update({"for": key, "handshake": answer if isinstance(answer, dict) else {},
                                "error": check_error_text(answer)})

        def work(task: Task) -> dict:
            return worker_client.check_interpreter(python, CHECK_TIMEOUT_S, env=env, log_path=log)

        state.start_task(Task("check", work).start(), done)
        return {"FINISHED"}


class DEPTH_OT_setup_backend(bpy.types.Operator):
    """Create a Python environment with torch and Depth from Image (downloads several GB)"""

    bl_idname = "depth_from_image.setup_backend"
    bl_label = "Set up backend"

    @classmethod
    def poll(cls, context):
        return poll_backend_idle(cls)

    def execute(self, context):
        if not bpy.app.online_access:
            self.report({"ERROR"}, OFFLINE_SETUP)
            return {"CANCELLED"}
        prefs = settings.addon_prefs(context)
        try:  # a mistyped Package override is refused now, not after the torch download
            package = setup.package_arguments(bpy.path.abspath(prefs.package_spec),
                                              setup.bundled_wheel(settings.EXTENSION_DIR))
        except ValueError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        task = setup.start_setup(settings.backend_dir(), settings.setup_log_path(), package=package,
                                 system_site_packages=prefs.reuse_base_packages)

        def done(finished: Task) -> None:
            if not finished.status().error:
                settings.addon_prefs().python = finished.result
                state.forget_answers()

        state.start_task(task, done)
        return {"FINISHED"}


class DEPTH_OT_cancel_setup(bpy.types.Operator):
    """Stop setting up the backend"""

    bl_idname = "depth_from_image.cancel_setup"
    bl_label = "Cancel Setup"

    def execute(self, context):
        if "setup" in state.TASKS:
            state.TASKS["setup"].cancel()
        return {"FINISHED"}


class DEPTH_OT_remove_backend(bpy.types.Operator):
    """Delete the backend's Python environment (several GB); downloaded weights and logs stay"""

    bl_idname = "depth_from_image.remove_backend"
    bl_label = "Remove Backend"

    @classmethod
    def poll(cls, context):
        return os.path.isdir(settings.backend_dir()) and poll_backend_idle(cls)

    def invoke(self, context, event):
        return context.window_manager.invoke_confirm(self, event)

    def execute(self, context):
        folder = settings.backend_dir()
        session.SESSION.shutdown()  # an idle worker may run the Python about to go (Windows locks its files)
        state.forget_answers()
        state.TASKS.pop("setup", None)  # its outcome describes the folder about to go
        state.NOTES.update(removal="", removal_ok=False)
        prefs = settings.addon_prefs(context)
        if os.path.abspath(bpy.path.abspath(prefs.python)).startswith(os.path.abspath(folder) + os.sep):
            prefs.python = ""

        def done(task: Task) -> None:
            failed = task.exception is not None
            state.NOTES.update(removal_ok=not failed, removal=(
                wording.with_next(f"Could not remove {folder}: {task.status().error}",
                                  "close programs that use it, then press Remove Backend again")
                if failed else f"Removed the backend {folder}"))

        state.start_task(Task("remove", lambda task: shutil.rmtree(folder)).start(), done)
        return {"FINISHED"}


def _open(operator, path: str, what: str) -> set:
    if not os.path.isfile(path):
        operator.report({"WARNING"}, f"No {what} yet: {path}")
        return {"CANCELLED"}
    bpy.ops.wm.path_open(filepath=path)
    return {"FINISHED"}


class DEPTH_OT_open_log(bpy.types.Operator):
    """Open a log file in the system's text viewer"""

    bl_idname = "depth_from_image.open_log"
    bl_label = "Open Log"

    which: StringProperty(default="worker", options={"HIDDEN"})

    def execute(self, context):
        if self.which == "setup":
            return _open(self, settings.setup_log_path(), "setup log")
        return _open(self, settings.worker_log_path(), "worker log")


CLASSES = (DEPTH_OT_detect_interpreter, DEPTH_OT_check_interpreter, DEPTH_OT_setup_backend, DEPTH_OT_cancel_setup,
           DEPTH_OT_remove_backend, DEPTH_OT_open_log)

register, unregister = bpy.utils.register_classes_factory(CLASSES)
