"""Add-on preferences: the status block, the backend (interpreter, Detect, Check, Set up,
Remove, logs), the weights (folder, licences, download) and the model's device, precision and
semantics. The operators live in `backend_ops` and `weights_ops`, their outcomes in `state`."""

from __future__ import annotations

import os

import bpy
from bpy.props import BoolProperty, EnumProperty, StringProperty

from ppd_core.options import DEVICES, OPTIONS, PRECISIONS, SEMANTICS
from ppd_core.weight_sources import DA2, SOURCES, VIDEO_SOURCES, VIDEO_TERMS

from . import settings, state, status
from .backend import wording
from .backend_ops import (
    OFFLINE_SETUP,
    DEPTH_OT_check_interpreter,
    DEPTH_OT_detect_interpreter,
    DEPTH_OT_open_log,
    DEPTH_OT_remove_backend,
    DEPTH_OT_setup_backend,
)
from .ui_text import wrapped_label
from .weights_ops import DEPTH_OT_cancel_download, DEPTH_OT_check_weights, DEPTH_OT_download_weights, downloadable

LABEL_WIDTH = 90  # characters per label line: the preferences are wider than the sidebar
DEVICE_WORDS = {"auto": ("Auto", "CUDA, then Apple MPS, then the CPU"), "cuda": ("CUDA", "NVIDIA GPU"),
                "mps": ("MPS", "Apple GPU"), "cpu": ("CPU", "The processor (slow)")}
PRECISION_WORDS = {"auto": ("Auto", "bf16 or fp16 where a check on this machine finds it right (on a CPU: and "
                                     "faster), else fp32"), "fp32": ("fp32", "Full precision"),
                   "bf16": ("bf16", "Half precision (bfloat16)"), "fp16": ("fp16", "Half precision (float16)")}
SEMANTICS_WORDS = {"auto": ("Auto", "MoGe-2 semantics when ppd_moge.pth and moge2.pt are there, else Depth Anything V2"),
                   "moge2": ("MoGe-2", "PPD with MoGe-2 semantics (ppd_moge.pth and moge2.pt; MIT encoder)"),
                   "da2": ("Depth Anything V2", "PPD with Depth Anything V2 semantics (ppd.pth and "
                           "depth_anything_v2_vitl.pth, CC-BY-NC-4.0), MoGe-2 geometry when moge2.pt is there")}
# Enum items (identifier, name, description) of the options table's choices.
DEVICE_ITEMS = tuple((key, *DEVICE_WORDS[key]) for key in DEVICES)
PRECISION_ITEMS = tuple((key, *PRECISION_WORDS[key]) for key in PRECISIONS)
SEMANTICS_ITEMS = tuple((key, *SEMANTICS_WORDS[key]) for key in SEMANTICS)

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


class DepthFromImagePreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    python: StringProperty(
        name="Python", subtype="FILE_PATH", update=_absolute_path_update("python"),
        description="The Python executable that has torch and Depth from Image installed (runs the worker)",
    )
    package_spec: StringProperty(
        name="Package",
        description="What Set up backend installs: empty for the package this extension carries, or a folder of "
                    "the project, a wheel file, or a PyPI requirement",
    )
    reuse_base_packages: BoolProperty(
        name="Reuse the base Python's packages",
        description="Let the backend see the packages of the Python it is made from: a torch already installed "
                    "there is used instead of downloaded again",
        default=False,
    )
    weights_folder: StringProperty(
        name="Weights Folder", subtype="DIR_PATH", update=_absolute_path_update("weights_folder"),
        description="Folder with the weight files: ppd_moge.pth and moge2.pt, or ppd.pth and "
                    "depth_anything_v2_vitl.pth (and moge2.pt); empty: the Hugging Face cache",
    )
    accept_licences: BoolProperty(
        name="I have read the model cards and accept these licences", default=False,
        description="The weights are downloaded only after you accept their licences",
    )
    accept_video_terms: BoolProperty(
        name="I accept the video files' terms: Pi3 for non-commercial use only; ppvd.pth under no licence",
        default=False, description="The video model's files are downloaded only after you accept their terms",
    )
    device: EnumProperty(
        name="Device", description="Where the depth network runs",
        items=DEVICE_ITEMS, default=OPTIONS["device"].default,
    )
    precision: EnumProperty(
        name="Precision", description="Number format of the network: half precision is faster on a GPU",
        items=PRECISION_ITEMS, default=OPTIONS["precision"].default,
    )
    semantics: EnumProperty(
        name="Semantics", description="Which semantic encoder guides the depth network",
        items=SEMANTICS_ITEMS, default=OPTIONS["semantics"].default,
    )

    def draw(self, context):
        layout = self.layout
        status.draw(layout, context, LABEL_WIDTH, in_preferences=True)
        box = layout.box()
        box.label(text="Backend (the Python that runs the depth network)", icon="CONSOLE")
        row = box.row(align=True)
        row.prop(self, "python")
        row.operator(DEPTH_OT_detect_interpreter.bl_idname)
        row.operator(DEPTH_OT_check_interpreter.bl_idname)
        if state.running("check"):
            wrapped_label(box, f"Checking {self.python}…", "TIME", LABEL_WIDTH)
        for line in state.NOTES["detect"]:
            wrapped_label(box, line, width=LABEL_WIDTH)
        self._draw_setup(box)
        row = box.row()
        row.operator(DEPTH_OT_open_log.bl_idname, text="Open Worker Log", icon="TEXT").which = "worker"
        row.operator(DEPTH_OT_open_log.bl_idname, text="Open Setup Log", icon="TEXT").which = "setup"

        box = layout.box()
        box.label(text="Weights", icon="MOD_DISPLACE")
        row = box.row(align=True)
        row.prop(self, "weights_folder")
        row.operator(DEPTH_OT_check_weights.bl_idname, text="", icon="FILE_REFRESH")
        _draw_weights(box, self, LABEL_WIDTH)
        _draw_video_weights(layout.box(), self, LABEL_WIDTH)

        box = layout.box()
        box.label(text="Model", icon="SETTINGS")
        row = box.row()
        row.prop(self, "device")
        row.prop(self, "precision")
        box.prop(self, "semantics")

    def _draw_setup(self, box) -> None:
        wrapped_label(box, f"Set up backend makes a Python environment in {settings.backend_dir()}: outside the "
                      "extension, so uninstalling or updating the extension keeps it.", "INFO", LABEL_WIDTH)
        row = box.row(align=True)
        row.prop(self, "package_spec")
        row.operator(DEPTH_OT_setup_backend.bl_idname, icon="IMPORT")
        row.operator(DEPTH_OT_remove_backend.bl_idname, icon="TRASH")
        box.prop(self, "reuse_base_packages")
        if not bpy.app.online_access:
            wrapped_label(box, OFFLINE_SETUP, "INTERNET_OFFLINE", LABEL_WIDTH)
        if state.running("remove"):
            wrapped_label(box, f"Removing {settings.backend_dir()}…", "TRASH", LABEL_WIDTH)
        elif state.NOTES["removal"]:
            wrapped_label(box, state.NOTES["removal"], "CHECKMARK" if state.NOTES["removal_ok"] else "ERROR",
                          LABEL_WIDTH)
        setup = state.status("setup")
        if setup is None:
            return
        if setup.reason:
            wrapped_label(box, f"Wheels: {setup.reason}", "INFO", LABEL_WIDTH)
        for command in setup.commands:
            wrapped_label(box, f"$ {command}", width=LABEL_WIDTH)
        if not status.draw_setup(box, LABEL_WIDTH) and setup.message:
            wrapped_label(box, setup.message, "CHECKMARK", LABEL_WIDTH)


def _draw_weights(layout, prefs, width: int) -> None:
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
    wrapped_label(layout, f"Download {names} into {settings.weights_target(prefs)}", width=width)
    download = state.status("download")
    if download is not None and not download.done:
        row = layout.row()
        row.progress(factor=download.fraction, type="BAR", text=download.line())
        row.operator(DEPTH_OT_cancel_download.bl_idname, text="", icon="X")
    else:
        layout.operator(DEPTH_OT_download_weights.bl_idname, icon="IMPORT")
    if download is not None and download.error:
        wrapped_label(layout, wording.download_failure(download.error), "ERROR", width)
    elif state.NOTES["download"]:
        wrapped_label(layout, state.NOTES["download"], "CHECKMARK", width)


def _draw_video_weights(box, prefs, width: int) -> None:
    """The video model's files (a movie as the photo): their terms, the accept box and their download."""
    box.label(text="Video (a movie as the photo): Pixel-Perfect Video Depth", icon="SEQUENCE")
    col = box.column(align=True)
    for source in VIDEO_SOURCES:
        row = col.row()
        row.label(text=f"{source.name} (about {source.size_gb:g} GB): {source.licence}", icon="ERROR")
        row.operator("wm.url_open", text="Model card" if source.repo() else "Where to get it", icon="URL").url = \
            source.card
    wrapped_label(box, VIDEO_TERMS, "ERROR", width)
    box.prop(prefs, "accept_video_terms")
    box.operator("depth_from_image.download_video_weights", icon="IMPORT")


def register() -> None:
    bpy.utils.register_class(DepthFromImagePreferences)


def unregister() -> None:
    bpy.utils.unregister_class(DepthFromImagePreferences)
