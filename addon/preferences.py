"""Add-on preferences: the worker's interpreter (Detect, Check, Set up backend), weights,
device, precision, the worker log, and the weights' licences.

Detect, Check and Set up backend run on threads; a `bpy.app.timers` function copies their
outcome into `STATUS` on the main thread and redraws the preferences, so nothing blocks.
"""

from __future__ import annotations

import os
import tempfile
import threading

import bpy
from bpy.props import EnumProperty, StringProperty

from ppd_core import client as worker_client
from ppd_core.options import DEVICES, OPTIONS, PRECISIONS

from . import backend_setup, interpreters
from .ui_text import wrapped_label

PPD_CARD = "https://huggingface.co/gangweix/Pixel-Perfect-Depth"
ENCODER_CARD = "https://huggingface.co/depth-anything/Depth-Anything-V2-Large"
CHECK_TIMEOUT_S = 180.0
LABEL_WIDTH = 90  # characters per label line: the preferences are wider than the sidebar
OFFLINE_SETUP = ("Set up backend downloads torch and the package (several GB): allow online access in "
                 "Preferences > System > Network first")
LOG_MAX_BYTES = 10_000_000
DEVICE_WORDS = {"auto": ("Auto", "CUDA, then Apple MPS, then the CPU"), "cuda": ("CUDA", "NVIDIA GPU"),
                "mps": ("MPS", "Apple GPU"), "cpu": ("CPU", "The processor (slow)")}
PRECISION_WORDS = {"auto": ("Auto", "bf16/fp16 on a GPU, fp32 on the CPU"), "fp32": ("fp32", "Full precision"),
                   "bf16": ("bf16", "Half precision (bfloat16)"), "fp16": ("fp16", "Half precision (float16)")}
# Enum items (identifier, name, description) of the options table's choices.
DEVICE_ITEMS = tuple((key, *DEVICE_WORDS[key]) for key in DEVICES)
PRECISION_ITEMS = tuple((key, *PRECISION_WORDS[key]) for key in PRECISIONS)

# Outcome of the last Detect / Check / Set up, shown under the interpreter field.
STATUS = {"check": "", "check_ok": False, "detect": [], "setup": None}
_tasks: dict = {}
_timers: list = []


def _register_timer(function, interval: float) -> None:
    _timers.append(function)
    bpy.app.timers.register(function, first_interval=interval)


def get(context: bpy.types.Context):
    """This add-on's preferences."""
    return context.preferences.addons[__package__].preferences


def user_dir() -> str:
    """A folder of this extension's own that survives upgrades (the temp folder as fallback)."""
    try:
        return bpy.utils.extension_path_user(__package__, create=True)
    except ValueError:
        folder = os.path.join(tempfile.gettempdir(), "depth_from_image")
        os.makedirs(folder, exist_ok=True)
        return folder


def worker_log_path() -> str:
    """The worker log (appended to by every worker); past LOG_MAX_BYTES it moves to worker.log.1."""
    path = os.path.join(user_dir(), "worker.log")
    if os.path.isfile(path) and os.path.getsize(path) > LOG_MAX_BYTES:
        try:
            os.replace(path, path + ".1")
        except OSError:  # Windows: a running worker still has it open; rotate another time
            pass
    return path


def setup_venv_dir() -> str:
    return os.path.join(user_dir(), "backend")


def describe_handshake(handshake: dict) -> str:
    """One line for a successful Check: package, torch and Python versions, and devices."""
    devices = ", ".join(
        f"{d.get('id')} ({d.get('name')}{', %.0f GB' % d['memory_gb'] if d.get('memory_gb') else ''})"
        for d in handshake.get("devices", [])
    )
    return (f"OK: depth-from-image {handshake.get('version')}, torch {handshake.get('torch')}, "
            f"Python {handshake.get('python')}; devices: {devices or 'none'}")


def _redraw_preferences() -> None:
    for window in bpy.context.window_manager.windows:
        for area in window.screen.areas:
            if area.type == "PREFERENCES":
                area.tag_redraw()


def _run_in_background(name: str, work, on_done) -> None:
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
        _redraw_preferences()
        return None

    _register_timer(poll, 0.25)


def _absolute_path_update(attribute: str):
    """An update callback that turns a "//" path (relative to the .blend open when it was
    picked) into an absolute one: preferences must not change meaning with the open file."""
    def update(self, context) -> None:
        value = getattr(self, attribute)
        if value.startswith("//"):
            absolute = bpy.path.abspath(value)
            if not absolute.startswith("//"):
                setattr(self, attribute, os.path.normpath(absolute))
    return update


def check_result_text(result) -> tuple:
    """(ok, text) for the outcome of `worker_client.check_interpreter`."""
    if isinstance(result, dict):
        return True, describe_handshake(result)
    return False, str(result)


class DEPTH_OT_detect_interpreter(bpy.types.Operator):
    """Find Pythons that could run the worker (set-up environment, active venv, python3 on PATH)"""

    bl_idname = "depth_from_image.detect_interpreter"
    bl_label = "Detect"

    @classmethod
    def poll(cls, context):
        return "detect" not in _tasks

    def execute(self, context):
        venv = setup_venv_dir()

        def done(result):
            if isinstance(result, Exception):
                STATUS["detect"] = [f"Detect failed: {result}"]
                return
            best, report = result
            STATUS["detect"] = [f"{path}: {'has' if ok else 'lacks'} ppd_core" for path, ok in report] or [
                "No Python found: use Set up backend"]
            if best:
                get(bpy.context).python = best  # looked up now: the add-on may have been re-enabled

        _run_in_background("detect", lambda: interpreters.detect(venv), done)
        return {"FINISHED"}


class DEPTH_OT_check_interpreter(bpy.types.Operator):
    """Start the worker once and show the package and torch versions and the devices"""

    bl_idname = "depth_from_image.check_interpreter"
    bl_label = "Check"

    @classmethod
    def poll(cls, context):
        return "check" not in _tasks

    def execute(self, context):
        python = bpy.path.abspath(get(context).python).strip()
        if not python:
            STATUS["check_ok"], STATUS["check"] = False, "No interpreter set: use Detect or Set up backend"
            return {"FINISHED"}
        try:
            log = worker_log_path()
        except OSError as error:
            STATUS["check_ok"], STATUS["check"] = False, f"Cannot write the worker log: {error}"
            return {"FINISHED"}
        STATUS["check_ok"], STATUS["check"] = False, "Checking…"

        def done(result):
            STATUS["check_ok"], STATUS["check"] = check_result_text(result)

        _run_in_background("check", lambda: worker_client.check_interpreter(python, CHECK_TIMEOUT_S, log_path=log), done)
        return {"FINISHED"}


class DEPTH_OT_setup_backend(bpy.types.Operator):
    """Create a Python environment with torch and Depth from Image (downloads several GB)"""

    bl_idname = "depth_from_image.setup_backend"
    bl_label = "Set up backend"

    @classmethod
    def poll(cls, context):
        setup = STATUS["setup"]
        return setup is None or setup.status().done

    def execute(self, context):
        if not bpy.app.online_access:
            self.report({"ERROR"}, OFFLINE_SETUP)
            return {"CANCELLED"}
        setup = backend_setup.BackendSetup(setup_venv_dir(), os.path.join(user_dir(), "setup.log"),
                                           package=get(context).package_spec)
        STATUS["setup"] = setup
        setup.start()

        def poll():
            status = setup.status()
            _redraw_preferences()
            if not status.done:
                return 0.5
            if not status.error:
                get(bpy.context).python = setup.python
            return None

        _register_timer(poll, 0.5)
        return {"FINISHED"}


class DEPTH_OT_cancel_setup(bpy.types.Operator):
    """Stop setting up the backend"""

    bl_idname = "depth_from_image.cancel_setup"
    bl_label = "Cancel Setup"

    def execute(self, context):
        if STATUS["setup"] is not None:
            STATUS["setup"].cancel()
        return {"FINISHED"}


class DEPTH_OT_open_worker_log(bpy.types.Operator):
    """Open the worker's log file in the system's text viewer"""

    bl_idname = "depth_from_image.open_worker_log"
    bl_label = "Open Worker Log"

    def execute(self, context):
        path = worker_log_path()
        if not os.path.isfile(path):
            self.report({"WARNING"}, f"No worker log yet: {path}")
            return {"CANCELLED"}
        bpy.ops.wm.path_open(filepath=path)
        return {"FINISHED"}


class DepthFromImagePreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    python: StringProperty(
        name="Python", subtype="FILE_PATH", update=_absolute_path_update("python"),
        description="The Python executable that has torch and depth-from-image installed (runs the worker)",
    )
    package_spec: StringProperty(
        name="Package", default=backend_setup.PACKAGE_SPEC,
        description="What Set up backend installs: a pip requirement, a source folder or a wheel",
    )
    weights_folder: StringProperty(
        name="Weights Folder", subtype="DIR_PATH", update=_absolute_path_update("weights_folder"),
        description="Folder with ppd.pth and depth_anything_v2_vitl.pth (empty: Hugging Face cache)",
    )
    device: EnumProperty(
        name="Device", description="Where the depth network runs",
        items=DEVICE_ITEMS, default=OPTIONS["device"].default,
    )
    precision: EnumProperty(
        name="Precision", description="Number format of the network: half precision is faster on a GPU",
        items=PRECISION_ITEMS, default=OPTIONS["precision"].default,
    )

    def draw(self, context):
        layout = self.layout
        box = layout.box()
        box.label(text="Worker", icon="CONSOLE")
        row = box.row(align=True)
        row.prop(self, "python")
        row.operator(DEPTH_OT_detect_interpreter.bl_idname)
        row.operator(DEPTH_OT_check_interpreter.bl_idname)
        if STATUS["check"]:
            wrapped_label(box, STATUS["check"], "CHECKMARK" if STATUS["check_ok"] else "ERROR", LABEL_WIDTH)
        for line in STATUS["detect"]:
            wrapped_label(box, line, width=LABEL_WIDTH)
        self._draw_setup(box)
        box.operator(DEPTH_OT_open_worker_log.bl_idname, icon="TEXT")

        box = layout.box()
        box.label(text="Model", icon="MOD_DISPLACE")
        box.prop(self, "weights_folder")
        row = box.row()
        row.prop(self, "device")
        row.prop(self, "precision")
        col = box.column(align=True)
        wrapped_label(col, "Weights licences: Pixel-Perfect Depth (ppd.pth): see its model card. The "
                      "Depth-Anything-V2-Large encoder weights are CC-BY-NC-4.0: non-commercial use only.",
                      "INFO", LABEL_WIDTH)
        row = box.row()
        row.operator("wm.url_open", text="Pixel-Perfect-Depth model card").url = PPD_CARD
        row.operator("wm.url_open", text="Depth-Anything-V2-Large model card").url = ENCODER_CARD

    def _draw_setup(self, box) -> None:
        row = box.row(align=True)
        row.prop(self, "package_spec")
        row.operator(DEPTH_OT_setup_backend.bl_idname, icon="IMPORT")
        if not bpy.app.online_access:
            wrapped_label(box, OFFLINE_SETUP, "INTERNET_OFFLINE", LABEL_WIDTH)
        setup = STATUS["setup"]
        if setup is None:
            return
        status = setup.status()
        for command in status.commands:
            wrapped_label(box, f"$ {command}", width=LABEL_WIDTH)
        if not status.done:
            row = box.row()
            row.progress(factor=status.fraction, type="BAR", text=status.stage)
            row.operator(DEPTH_OT_cancel_setup.bl_idname, text="", icon="X")
        if status.message:
            wrapped_label(box, status.message, width=LABEL_WIDTH)
        if status.error:
            wrapped_label(box, status.error, "ERROR", LABEL_WIDTH)


CLASSES = (
    DEPTH_OT_detect_interpreter,
    DEPTH_OT_check_interpreter,
    DEPTH_OT_setup_backend,
    DEPTH_OT_cancel_setup,
    DEPTH_OT_open_worker_log,
    DepthFromImagePreferences,
)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister() -> None:
    setup = STATUS["setup"]
    if setup is not None:
        setup.cancel()
    STATUS.update(check="", check_ok=False, detect=[], setup=None)
    for function in _timers:
        if bpy.app.timers.is_registered(function):
            bpy.app.timers.unregister(function)
    _timers.clear()
    _tasks.clear()
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
