"""The backend's operators: Detect, Check, Set up backend (and Cancel), Remove backend, and
the log buttons; the background-task plumbing they share.

Detect, Check and Set up backend run on threads; a `bpy.app.timers` function copies their
outcome into `STATUS` on the main thread and redraws the preferences, so nothing blocks.
"""

from __future__ import annotations

import os
import shutil
import threading

import bpy
from bpy.props import StringProperty

from ppd_core import client as worker_client

from . import backend_setup, interpreters, session, weights_ops

CHECK_TIMEOUT_S = 180.0
LOG_MAX_BYTES = 10_000_000
OFFLINE_SETUP = ("Set up backend downloads torch and the other packages (several GB): allow online access in "
                 "Preferences > System > Network first")
EXTENSION_DIR = os.path.dirname(os.path.abspath(__file__))

# Outcome of the last Detect / Check / Set up / Remove. A Check leaves its worker's handshake or
# its error, and `checked_for` says for which preferences (see `backend_key`).
STATUS = {"checked_for": None, "handshake": {}, "check_error": "", "detect": [], "setup": None, "removing": "",
          "removal": "", "removal_ok": False}
_tasks: dict = {}
_timers: list = []


def addon_prefs(context: bpy.types.Context):
    """This add-on's preferences."""
    return context.preferences.addons[__package__].preferences


def register_timer(function, interval: float) -> None:
    _timers.append(function)
    bpy.app.timers.register(function, first_interval=interval)


def home() -> str:
    """The user's folder for the backend, the downloaded weights and the logs (outside the extension)."""
    return backend_setup.backend_home()


def backend_dir() -> str:
    return os.path.join(home(), "backend")


def setup_log_path() -> str:
    return os.path.join(home(), "setup.log")


def worker_log_path() -> str:
    """The worker log, appended to by every worker (`rotate_log` keeps it small)."""
    return os.path.join(home(), "worker.log")


def rotate_log(path: str) -> None:
    """Move a log past LOG_MAX_BYTES to `path`.1; called only just before a new worker starts,
    as a running worker's client reads its crash lines back from the file it writes."""
    if os.path.isfile(path) and os.path.getsize(path) > LOG_MAX_BYTES:
        try:
            os.replace(path, path + ".1")
        except OSError:  # Windows: a closing worker still has it open; rotate another time
            pass


def worker_env(prefs) -> dict:
    """The worker's environment additions: the Weights Folder, and no downloads when Blender is offline."""
    env = {} if bpy.app.online_access else {"HF_HUB_OFFLINE": "1"}
    if prefs.weights_folder:
        env["PPD_WEIGHTS"] = bpy.path.abspath(prefs.weights_folder)
    return env


def backend_key(prefs) -> tuple:
    """What a handshake is for: the Python as set in the preferences and the worker's environment
    (Weights Folder, online access). Cheap: the status block compares it on every draw."""
    return prefs.python, worker_env(prefs)


def checked(prefs) -> tuple:
    """(handshake, error) of the last Check when it was for the current preferences, else ({}, "")."""
    if STATUS["checked_for"] != backend_key(prefs):
        return {}, ""
    return STATUS["handshake"], STATUS["check_error"]


def forget_check() -> None:
    """Drop the last Check's outcome (the backend or weights it describes have changed)."""
    STATUS.update(checked_for=None, handshake={}, check_error="")


def start_error_text(error: worker_client.WorkerError) -> str:
    """The panel's message for a worker that did not start: in Blender the fix is a button, not pip."""
    if error.kind in ("package_missing", "protocol_mismatch", "torch_missing"):
        head = str(error).split(";")[0]
        return f"{head}: use Set up backend in the add-on preferences (or Detect to pick another Python)"
    return str(error)


def check_error_text(result) -> str:
    """The problem a Check found ("" when `check_interpreter` answered with a handshake)."""
    if isinstance(result, dict):
        return ""
    if isinstance(result, worker_client.WorkerError):
        return start_error_text(result)
    return str(result)


def running(name: str) -> bool:
    """Whether the background task `name` ("detect", "check", "remove") is still at work."""
    return name in _tasks


def redraw_preferences() -> None:
    for window in bpy.context.window_manager.windows:
        for area in window.screen.areas:
            if area.type in ("PREFERENCES", "VIEW_3D"):
                area.tag_redraw()


def run_in_background(name: str, work, on_done) -> None:
    """Run `work()` on a thread; call `on_done(result_or_exception)` later on the main thread."""
    box = {}

    def thread_main():
        try:
            box["result"] = work()
        except Exception as error:  # reported to the user by on_done
            box["result"] = error

    thread = threading.Thread(target=thread_main, name=f"ppd-{name}", daemon=True)
    _tasks[name] = thread
    thread.start()

    def poll():
        if thread.is_alive():
            return 0.25
        _tasks.pop(name, None)
        on_done(box.get("result"))
        redraw_preferences()
        return None

    register_timer(poll, 0.25)


def backend_busy() -> str:
    """Why the backend folder may not be made or deleted now ("" when it may): a set-up, a
    removal, a Check, a run or a weights download is using it."""
    setup = STATUS["setup"]
    if setup is not None and not setup.status().done:
        return "The backend is being set up"
    if STATUS["removing"]:
        return "The backend is being removed"
    if running("check"):
        return "A Check is starting a worker: wait for it"
    if session.SESSION.running:
        return "A photo is being processed with the backend: wait for it or cancel it"
    if weights_ops.downloading():
        return "The weights are downloading with the backend: wait for it or cancel it"
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
        return not running("detect")

    def execute(self, context):
        venv = backend_dir()

        def done(result):
            if isinstance(result, Exception):
                STATUS["detect"] = [f"Detect failed: {result}"]
                return
            best, report = result
            lines = [f"{path}: {'Depth from Image installed' if ok else 'no Depth from Image'}" for path, ok in report]
            if best:
                addon_prefs(bpy.context).python = best  # looked up now: the add-on may have been re-enabled
            else:
                lines.append("No Python with Depth from Image found: use Set up backend")
            STATUS["detect"] = lines

        run_in_background("detect", lambda: interpreters.detect(venv), done)
        return {"FINISHED"}


class DEPTH_OT_check_interpreter(bpy.types.Operator):
    """Start the worker once and show the package and torch versions, the devices and the weights"""

    bl_idname = "depth_from_image.check_interpreter"
    bl_label = "Check"

    @classmethod
    def poll(cls, context):
        return not running("check")

    def execute(self, context):
        prefs = addon_prefs(context)
        key, env, log = backend_key(prefs), worker_env(prefs), worker_log_path()
        forget_check()
        try:
            python = interpreters.resolve(bpy.path.abspath(prefs.python))
            os.makedirs(os.path.dirname(log), exist_ok=True)
        except (ValueError, OSError) as error:
            STATUS.update(checked_for=key, check_error=str(error))
            return {"FINISHED"}
        rotate_log(log)

        def done(result):
            STATUS.update(checked_for=key, handshake=result if isinstance(result, dict) else {},
                          check_error=check_error_text(result))

        run_in_background(
            "check", lambda: worker_client.check_interpreter(python, CHECK_TIMEOUT_S, env=env, log_path=log), done)
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
        prefs = addon_prefs(context)
        try:
            package = backend_setup.package_arguments(bpy.path.abspath(prefs.package_spec),
                                                      backend_setup.bundled_wheel(EXTENSION_DIR))
        except ValueError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        setup = backend_setup.BackendSetup(backend_dir(), setup_log_path(), package=package,
                                           system_site_packages=prefs.reuse_base_packages)
        STATUS["setup"] = setup
        setup.start()

        def poll():
            status = setup.status()
            redraw_preferences()
            if not status.done:
                return 0.5
            if not status.error:
                addon_prefs(bpy.context).python = setup.python
            return None

        register_timer(poll, 0.5)
        return {"FINISHED"}


class DEPTH_OT_cancel_setup(bpy.types.Operator):
    """Stop setting up the backend"""

    bl_idname = "depth_from_image.cancel_setup"
    bl_label = "Cancel Setup"

    def execute(self, context):
        if STATUS["setup"] is not None:
            STATUS["setup"].cancel()
        return {"FINISHED"}


class DEPTH_OT_remove_backend(bpy.types.Operator):
    """Delete the backend's Python environment (several GB); downloaded weights and logs stay"""

    bl_idname = "depth_from_image.remove_backend"
    bl_label = "Remove Backend"

    @classmethod
    def poll(cls, context):
        return os.path.isdir(backend_dir()) and poll_backend_idle(cls)

    def invoke(self, context, event):
        return context.window_manager.invoke_confirm(self, event)

    def execute(self, context):
        folder = backend_dir()
        session.SESSION.shutdown()  # an idle worker may run the Python about to go (Windows locks its files)
        forget_check()
        STATUS.update(removing=folder, removal="")
        prefs = addon_prefs(context)
        if os.path.abspath(bpy.path.abspath(prefs.python)).startswith(os.path.abspath(folder) + os.sep):
            prefs.python = ""

        def done(result):
            failed = isinstance(result, Exception)
            STATUS.update(removing="", setup=None, removal_ok=not failed,
                          removal=f"Could not remove {folder}: {result}" if failed else f"Removed the backend {folder}")

        run_in_background("remove", lambda: shutil.rmtree(folder), done)
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
            return _open(self, setup_log_path(), "setup log")
        return _open(self, worker_log_path(), "worker log")


CLASSES = (DEPTH_OT_detect_interpreter, DEPTH_OT_check_interpreter, DEPTH_OT_setup_backend, DEPTH_OT_cancel_setup,
           DEPTH_OT_remove_backend, DEPTH_OT_open_log)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister() -> None:
    setup = STATUS["setup"]
    if setup is not None:
        setup.cancel()
    STATUS.update(checked_for=None, handshake={}, check_error="", detect=[], setup=None, removing="", removal="",
                  removal_ok=False)
    for function in _timers:
        if bpy.app.timers.is_registered(function):
            bpy.app.timers.unregister(function)
    _timers.clear()
    _tasks.clear()
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
