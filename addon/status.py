"""The status block at the top of the panel and the preferences: is the backend there, which
weights will it use, may it go online; each with its one-click fix."""

from __future__ import annotations

import bpy

from . import backend_ops, session
from .ui_text import wrapped_label


def _handshake(prefs) -> tuple:
    """(handshake, error): the session's worker's handshake, else the last Check's handshake or
    error, each only while it is for the current preferences (`backend_key`): after a Detect,
    Set up, another Weights Folder or Remove Backend no old answer shows. ({}, "") for none."""
    if session.SESSION.handshake and session.SESSION.worker_for == backend_ops.backend_key(prefs):
        return session.SESSION.handshake, ""
    return backend_ops.checked(prefs)


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


def weights_line(prefs, handshake: dict) -> tuple:
    """(text, ok) for the weights: which model they make and where, once a worker has looked."""
    weights = handshake.get("weights") or {}
    if weights.get("ready"):
        return f"Weights: {weights.get('model')} ({weights.get('folder')})", True
    if weights:
        return f"Weights: {weights.get('problem')}", False
    where = bpy.path.abspath(prefs.weights_folder) if prefs.weights_folder else "the Hugging Face cache"
    return f"Weights: {where} (not checked yet)", None


def _icon(ok) -> str:
    return {True: "CHECKMARK", False: "ERROR", None: "QUESTION"}[ok]


def draw(layout, context, width: int, in_preferences: bool = False) -> None:
    """Three lines (backend, weights, online access), each with the button that fixes it."""
    prefs = backend_ops.addon_prefs(context)
    handshake, error = _handshake(prefs)
    box = layout.box()
    text, ok = backend_line(prefs, handshake, error)
    wrapped_label(box, text, _icon(ok), width)
    if ok is False:
        box.operator(backend_ops.DEPTH_OT_setup_backend.bl_idname, icon="IMPORT")
    elif ok is None:
        box.operator(backend_ops.DEPTH_OT_check_interpreter.bl_idname, icon="VIEWZOOM")
    text, ok = weights_line(prefs, handshake)
    wrapped_label(box, text, _icon(ok), width)
    if ok is False and not in_preferences:
        box.operator("preferences.addon_show", text="Download Weights…", icon="IMPORT").module = __package__
    if bpy.app.online_access:
        wrapped_label(box, "Online access: allowed (weights download when missing)", "CHECKMARK", width)
    else:
        wrapped_label(box, "Online access: off, so nothing downloads: allow it in Preferences > System > Network, "
                      "or use a Weights Folder", "INTERNET_OFFLINE", width)
        box.operator("screen.userpref_show", text="Open Preferences", icon="PREFERENCES")
