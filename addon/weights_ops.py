"""The weights' operators: Download Weights (after the licences are accepted) and its Cancel,
and the weights check, which also runs by itself the first time a status block is drawn for
the current settings. Both run the backend's Python as background tasks, so neither torch
nor a download ever runs in Blender's process.
"""

from __future__ import annotations

import os

import bpy

from ppd_core import client as worker_client
from ppd_core.weight_sources import SOURCES

from . import session, settings, state
from .backend import backend_runs, weights_download, wording
from .backend.tasks import Task


def downloadable() -> list:
    """The weight files the Hugging Face hub has (ppd_moge.pth only when a repository is named)."""
    return [source for source in SOURCES if source.repo() is not None]


def start_weights_check(context: bpy.types.Context) -> bool:
    """Ask the backend which model the weights make, for the current settings, unless that is
    known or being found out; False when there is no backend Python to ask."""
    prefs = settings.addon_prefs(context)
    key = settings.backend_key(prefs)
    if state.WEIGHTS["for"] == key or state.running("weights-check"):
        return True
    try:
        python = settings.interpreter(prefs)
    except ValueError:
        return False
    state.WEIGHTS.update({"for": key, "record": {}, "error": ""})
    env = worker_client.worker_environment(settings.worker_env(prefs))
    folder = bpy.path.abspath(prefs.weights_folder) if prefs.weights_folder else ""

    def done(task: Task) -> None:
        if state.WEIGHTS["for"] != key:  # the settings changed meanwhile: this answer is for others
            return
        if task.exception is not None:
            state.WEIGHTS["error"] = wording.with_next(f"the weights could not be checked: {task.status().error}",
                                                       "press Check in the add-on preferences")
        else:
            state.WEIGHTS["record"] = task.result

    state.start_task(backend_runs.start_weights_check(python, folder, env), done)
    return True


class DEPTH_OT_check_weights(bpy.types.Operator):
    """Look again for the weight files (in the Weights Folder, else the Hugging Face cache), without loading torch"""

    bl_idname = "depth_from_image.check_weights"
    bl_label = "Check Weights"

    @classmethod
    def poll(cls, context):
        return not state.running("weights-check")

    def execute(self, context):
        state.WEIGHTS["for"] = None
        if not start_weights_check(context):
            self.report({"ERROR"}, "The weights are checked with the backend: use Set up backend first")
            return {"CANCELLED"}
        return {"FINISHED"}


def start_weights_download(operator: bpy.types.Operator, context, names: list, video: bool) -> set:
    """The add-on's one way to download weights (`names`, or the video files): online access and
    the backend's Python first; into the Weights Folder, which it stays once the files are in."""
    prefs = settings.addon_prefs(context)
    if not bpy.app.online_access:
        operator.report({"ERROR"}, "Downloading needs online access: allow it in Preferences > System > Network")
        return {"CANCELLED"}
    try:
        python = settings.interpreter(prefs)
    except ValueError as error:
        operator.report({"ERROR"}, f"The download runs in the backend: {error}")
        return {"CANCELLED"}
    folder = settings.weights_target(prefs)
    os.makedirs(folder, exist_ok=True)
    env = worker_client.worker_environment({"HF_HUB_OFFLINE": None})  # as the worker's, but online
    state.NOTES["download"] = ""

    def done(task: Task) -> None:
        if task.status().error:
            return
        settings.addon_prefs().weights_folder = folder
        what = "the video files " if video else ""
        state.NOTES["download"] = f"Downloaded {what}into {folder}: it is the Weights Folder now"
        state.forget_answers()  # what was said of the weights before is out of date
        session.SESSION.worker_for = None

    state.start_task(weights_download.start_download(python, folder, names, env, video=video), done)
    return {"FINISHED"}


class DEPTH_OT_download_weights(bpy.types.Operator):
    """Download the weight files into the Weights Folder (several GB; resumes an interrupted download)"""

    bl_idname = "depth_from_image.download_weights"
    bl_label = "Download Weights"

    @classmethod
    def poll(cls, context):
        if not settings.addon_prefs(context).accept_licences:
            cls.poll_message_set("Read the licences and accept them first")
            return False
        return not state.running("download")

    def execute(self, context):
        return start_weights_download(self, context, [source.name for source in downloadable()], video=False)


class DEPTH_OT_download_video_weights(bpy.types.Operator):
    """Download the video model's files (pi3.safetensors: CC BY-NC 4.0, non-commercial; ppvd.pth: no licence
    stated) into the Weights Folder, after their terms are accepted"""

    bl_idname = "depth_from_image.download_video_weights"
    bl_label = "Download Video Weights"

    @classmethod
    def poll(cls, context):
        if not settings.addon_prefs(context).accept_video_terms:
            cls.poll_message_set("Read the video files' terms and accept them first")
            return False
        return not state.running("download")

    def execute(self, context):
        return start_weights_download(self, context, [], video=True)


class DEPTH_OT_cancel_download(bpy.types.Operator):
    """Stop the download (the next one resumes where it stopped)"""

    bl_idname = "depth_from_image.cancel_download"
    bl_label = "Cancel Download"

    def execute(self, context):
        if "download" in state.TASKS:
            state.TASKS["download"].cancel()
        return {"FINISHED"}


CLASSES = (DEPTH_OT_check_weights, DEPTH_OT_download_weights, DEPTH_OT_download_video_weights,
           DEPTH_OT_cancel_download)

register, unregister = bpy.utils.register_classes_factory(CLASSES)
