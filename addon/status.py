"""The status block at the top of the panel and the preferences: is the backend there (or being
set up, or why its set-up failed), which precision it runs, which weights it will use, may it
go online; each with its one-click fix and, on a failure, the next step."""

from __future__ import annotations

import bpy

from . import session, settings, state, weights_ops
from .backend import wording
from .backend_ops import DEPTH_OT_cancel_setup, DEPTH_OT_check_interpreter, DEPTH_OT_open_log, DEPTH_OT_setup_backend
from .ui_text import wrapped_label


def _handshake(prefs) -> tuple:
    """(handshake, error): the session's worker's handshake, else the last Check's handshake or
    error, each only while it is for the current preferences (`backend_key`): after a Detect,
    Set up, another Weights Folder or Remove Backend no old answer shows. ({}, "") for none."""
    key = settings.backend_key(prefs)
    if session.SESSION.handshake and session.SESSION.worker_for == key:
        return session.SESSION.handshake, ""
    if state.CHECK["for"] != key:
        return {}, ""
    return state.CHECK["handshake"], state.CHECK["error"]


def backend_line(prefs, handshake: dict, error: str = "") -> tuple:
    """(text, ok) for the backend: interpreter, torch and devices once a worker has answered,
    or the problem a Check found."""
    if error:
        return f"Backend: {error}", False
    if handshake:
        precision = handshake.get("precision") or {}
        devices = ", ".join(
            f"{device.get('id')} ({precision[device.get('id')]['auto']})" if device.get("id") in precision
            else str(device.get("id")) for device in handshake.get("devices", []))
        return (f"Backend: Python {handshake.get('python')}, torch {handshake.get('torch')}, devices {devices}", True)
    if prefs.python:
        return f"Backend: {prefs.python} (not checked yet)", None
    return "Backend: not set up", False


def run_device(prefs, handshake: dict) -> str:
    """The id of the device a run uses with these preferences: the worker's best for Auto."""
    ids = [str(device.get("id")) for device in handshake.get("devices", [])]
    wanted = [device for device in ids if prefs.device == "auto" or device.split(":")[0] == prefs.device]
    return (wanted or ids or ["cpu"])[0]


def precision_line(prefs, handshake: dict) -> str:
    """Which precision the run uses on its device and why: the last run's own word when the
    worker is the current one, else what the handshake says Auto runs there ("" for neither)."""
    device = run_device(prefs, handshake)
    used = ((session.SESSION.last_stats.get("depth") or {}).get("precision") or {}) if handshake else {}
    if used.get("name"):
        warning = f" Warning: {used['warning']}" if used.get("warning") else ""
        return f"Precision on {device}: {used['name']} ({used.get('why', '')}).{warning}"
    expected = (handshake.get("precision") or {}).get(device) or {}
    if not expected:
        return ""
    if prefs.precision != "auto":
        return (f"Precision on {device}: {prefs.precision}, as set (Auto would run {expected.get('auto')}: "
                f"{expected.get('why', '')})")
    return f"Precision on {device}: {expected.get('auto')} ({expected.get('why', '')})"


def weights_line(prefs, handshake: dict) -> tuple:
    """(text, ok) for the weights: which model they make and where, once a worker or the
    weights check has looked; what is missing with the next step; or that a look is under way."""
    weights = handshake.get("weights") or {}
    if not weights and state.WEIGHTS["for"] == settings.backend_key(prefs):
        if state.WEIGHTS["error"]:
            return f"Weights: {state.WEIGHTS['error']}", False
        weights = state.WEIGHTS["record"]
    if weights.get("ready"):
        return f"Weights: {weights.get('model')} ({weights.get('folder')})", True
    if weights:
        problem = wording.weights_problem(str(weights.get("problem")), bpy.app.online_access,
                                          bool(prefs.weights_folder))
        return f"Weights: {problem}", False
    where = bpy.path.abspath(prefs.weights_folder) if prefs.weights_folder else "the Hugging Face cache"
    if state.running("weights-check"):
        return f"Weights: looking in {where}…", None
    return f"Weights: {where} (checked once the backend is set up)", None


def _icon(ok) -> str:
    return {True: "CHECKMARK", False: "ERROR", None: "QUESTION"}[ok]


def draw_setup(layout, width: int) -> bool:
    """Set up backend's progress (bar with the step and bytes, cancel, last output line) or its
    failure (why, the cause, the next step, the log); True when something was drawn."""
    setup = state.status("setup")
    if setup is None:
        return False
    if not setup.done:
        row = layout.row()
        row.progress(factor=setup.fraction, type="BAR", text=setup.line())
        row.operator(DEPTH_OT_cancel_setup.bl_idname, text="", icon="X")
        if setup.message:
            wrapped_label(layout, setup.message, width=width)
        return True
    if not setup.error:
        return False
    wrapped_label(layout, f"Set up failed: {setup.error}", "ERROR", width)
    if setup.cause:
        wrapped_label(layout, f"Cause: {setup.cause}", "ERROR", width)
    if setup.next_step:
        wrapped_label(layout, f"Next: {setup.next_step}.", "FORWARD", width)
    layout.operator(DEPTH_OT_open_log.bl_idname, text="Open Setup Log", icon="TEXT").which = "setup"
    return True


def draw(layout, context, width: int, in_preferences: bool = False) -> None:
    """Backend, precision, weights and online access, each with the button that fixes it. The
    weights check starts by itself the first time this is drawn for the current settings."""
    prefs = settings.addon_prefs(context)
    handshake, error = _handshake(prefs)
    box = layout.box()
    if state.running("setup"):
        wrapped_label(box, f"Backend: being set up in {settings.backend_dir()}", "TIME", width)
        if not in_preferences:  # the preferences draw the bar in their Backend box
            draw_setup(box, width)
    else:
        text, ok = backend_line(prefs, handshake, error)
        wrapped_label(box, text, _icon(ok), width)
        if not ok and not in_preferences:  # the preferences draw the set-up's outcome in their own box
            draw_setup(box, width)
        if ok is False:
            box.operator(DEPTH_OT_setup_backend.bl_idname, icon="IMPORT")
        elif ok is None:
            box.operator(DEPTH_OT_check_interpreter.bl_idname, icon="VIEWZOOM")
        precision = precision_line(prefs, handshake)
        if precision:
            wrapped_label(box, precision, "INFO", width)
    if not handshake:
        weights_ops.start_weights_check(context)
    text, ok = weights_line(prefs, handshake)
    wrapped_label(box, text, _icon(ok) if ok is not None or not state.running("weights-check") else "TIME", width)
    if ok is False and not in_preferences:
        box.operator("preferences.addon_show", text="Download Weights…", icon="IMPORT").module = __package__
    if bpy.app.online_access:
        wrapped_label(box, "Online access: allowed (weights download when missing)", "CHECKMARK", width)
    else:
        wrapped_label(box, "Online access: off, so nothing downloads: allow it in Preferences > System > Network, "
                      "or use a Weights Folder", "INTERNET_OFFLINE", width)
        box.operator("screen.userpref_show", text="Open Preferences", icon="PREFERENCES")
