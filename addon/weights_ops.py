"""The preferences' "Download weights" step: which files, their sizes and licences, an explicit
accept, then a download with byte progress, speed, cancel and resume, run in the backend.

The folder downloaded into becomes the Weights Folder.
"""

from __future__ import annotations

import os

import bpy

from ppd_core import client as worker_client
from ppd_core.weight_sources import DA2, SOURCES

from . import backend_ops, interpreters, session, weights_download
from .ui_text import wrapped_label

STATE = {"download": None, "message": ""}


def downloadable() -> list:
    """The weight files the Hugging Face hub has (ppd_moge.pth only when a repository is named)."""
    return [source for source in SOURCES if source.repo() is not None]


def target_folder(prefs) -> str:
    """Where the download goes: the Weights Folder when set, else the user's weights folder."""
    return bpy.path.abspath(prefs.weights_folder) if prefs.weights_folder else os.path.join(backend_ops.home(),
                                                                                              "weights")


def downloading() -> bool:
    """Whether a weights download (which runs the backend's Python) is at work."""
    download = STATE["download"]
    return download is not None and not download.status().done


class DEPTH_OT_download_weights(bpy.types.Operator):
    """Download the weight files into the Weights Folder (several GB; resumes an interrupted download)"""

    bl_idname = "depth_from_image.download_weights"
    bl_label = "Download Weights"

    @classmethod
    def poll(cls, context):
        prefs = backend_ops.addon_prefs(context)
        if not prefs.accept_licences:
            cls.poll_message_set("Read the licences and accept them first")
            return False
        return not downloading()

    def execute(self, context):
        prefs = backend_ops.addon_prefs(context)
        if not bpy.app.online_access:
            self.report({"ERROR"}, "Downloading needs online access: allow it in Preferences > System > Network")
            return {"CANCELLED"}
        try:
            python = interpreters.resolve(bpy.path.abspath(prefs.python))
        except ValueError as error:
            self.report({"ERROR"}, f"The download runs in the backend: {error}")
            return {"CANCELLED"}
        folder = target_folder(prefs)
        os.makedirs(folder, exist_ok=True)
        env = worker_client.worker_environment({"HF_HUB_OFFLINE": None})  # as the worker's, but online
        download = weights_download.WeightsDownload(python, folder, [s.name for s in downloadable()], env)
        STATE["download"], STATE["message"] = download, ""
        download.start()

        def poll():
            status = download.status()
            backend_ops.redraw_preferences()
            if not status.done:
                return 0.5
            if not status.error:
                backend_ops.addon_prefs(bpy.context).weights_folder = folder
                STATE["message"] = f"Downloaded into {folder}: it is the Weights Folder now"
                backend_ops.forget_check()  # what a worker said of the weights before is out of date
                session.SESSION.worker_for = None
            return None

        backend_ops.register_timer(poll, 0.5)
        return {"FINISHED"}


class DEPTH_OT_cancel_download(bpy.types.Operator):
    """Stop the download (the next one resumes where it stopped)"""

    bl_idname = "depth_from_image.cancel_download"
    bl_label = "Cancel Download"

    def execute(self, context):
        if STATE["download"] is not None:
            STATE["download"].cancel()
        return {"FINISHED"}


def draw(layout, prefs, width: int) -> None:
    """The weight files, their licences and model cards, the accept box and the download."""
    col = layout.column(align=True)
    col.label(text="Weight files and their licences:", icon="INFO")
    for source in SOURCES:
        row = col.row()
        where = f"about {source.size_gb:g} GB" if source.repo() else "from the authors, not on the hub"
        row.label(text=f"{source.name} ({where}): {source.licence}", icon="ERROR" if source is DA2 else "BLANK1")
        row.operator("wm.url_open", text="Model card" if source.repo() else "Where to get it", icon="URL").url = \
            source.card
    wrapped_label(col, f"The Depth-Anything-V2-Large encoder weights ({DA2.name}) are CC-BY-NC-4.0: non-commercial "
                  "use only. MoGe-2 (MIT) with ppd_moge.pth avoids them: put ppd_moge.pth in the Weights Folder.",
                  "ERROR", width)
    layout.prop(prefs, "accept_licences")
    names = ", ".join(source.name for source in downloadable())
    wrapped_label(layout, f"Download {names} into {target_folder(prefs)}", width=width)
    download = STATE["download"]
    status = download.status() if download is not None else None
    if status is not None and not status.done:
        row = layout.row()
        row.progress(factor=status.fraction, type="BAR", text=status.line())
        row.operator(DEPTH_OT_cancel_download.bl_idname, text="", icon="X")
    else:
        layout.operator(DEPTH_OT_download_weights.bl_idname, icon="IMPORT")
    if status is not None and status.error:
        wrapped_label(layout, f"Download stopped: {status.error}", "ERROR", width)
    elif STATE["message"]:
        wrapped_label(layout, STATE["message"], "CHECKMARK", width)


CLASSES = (DEPTH_OT_download_weights, DEPTH_OT_cancel_download)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister() -> None:
    if STATE["download"] is not None:
        STATE["download"].cancel()
    STATE.update(download=None, message="")
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
