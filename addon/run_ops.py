"""The run operators: "Depth from Image" (modal), its Cancel button, and the photo browsers.

The operator only starts the run and then calls `session.SESSION.step` on a timer; Esc or
the Cancel button asks the run to stop. Only one run at a time (see `poll`).
"""

from __future__ import annotations

import os

import bpy
from bpy.props import BoolProperty, CollectionProperty, StringProperty

from ppd_core.batch import expand_argument
from ppd_core.errors import PPDError
from ppd_core.options import PHOTO_SUFFIXES, VIDEO_SUFFIXES

from . import session

TIMER_INTERVAL_S = 0.1
PHOTO_GLOB = ";".join(f"*{suffix}" for suffix in PHOTO_SUFFIXES)  # the file browser's filter
CLIP_GLOB = ";".join(f"*{suffix}" for suffix in PHOTO_SUFFIXES + VIDEO_SUFFIXES)  # one photo, or a video clip


def _redraw_sidebars(context: bpy.types.Context) -> None:
    for window in context.window_manager.windows:
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()


class DEPTH_OT_from_image(bpy.types.Operator):
    """Turn the photo into a mesh, point cloud or print solid (runs in the background; Esc cancels)"""

    bl_idname = "depth_from_image.run"
    bl_label = "Depth from Image"
    bl_options = {"REGISTER"}

    _timer = None

    @classmethod
    def poll(cls, context):
        if session.SESSION.running:
            cls.poll_message_set("A photo is already being processed: wait for it or cancel it")
            return False
        return True

    def invoke(self, context, event):
        try:
            session.SESSION.start_run(context)
        except session.RunError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        self._timer = context.window_manager.event_timer_add(TIMER_INTERVAL_S, window=context.window)
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type == "ESC" and event.value == "PRESS":
            session.SESSION.request_cancel()
            return {"RUNNING_MODAL"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        outcome = session.SESSION.step(context)
        _redraw_sidebars(context)
        if outcome == session.RUNNING:
            return {"PASS_THROUGH"}
        context.window_manager.event_timer_remove(self._timer)
        self._timer = None
        if outcome == session.FAILED:
            self.report({"ERROR"}, context.window_manager.depth_from_image.last_error)
            return {"CANCELLED"}
        if outcome == session.CANCELLED:
            self.report({"INFO"}, "Depth from Image cancelled")
            return {"CANCELLED"}
        self.report({"INFO"}, context.window_manager.depth_from_image.last_result)
        return {"FINISHED"}

    def cancel(self, context):
        """Blender ends the operator (window closed, file loaded): drop the run."""
        if self._timer is not None:
            context.window_manager.event_timer_remove(self._timer)
            self._timer = None
        session.SESSION.abandon(context)


class DEPTH_OT_cancel(bpy.types.Operator):
    """Stop the running Depth from Image job"""

    bl_idname = "depth_from_image.cancel"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context):
        return session.SESSION.running

    def execute(self, context):
        session.SESSION.request_cancel()
        return {"FINISHED"}


class DEPTH_OT_choose_photo(bpy.types.Operator):
    """Choose the photo file, or a video clip (the file browser shows images and movies only)"""

    bl_idname = "depth_from_image.choose_photo"
    bl_label = "Choose Photo"
    bl_options = {"REGISTER", "UNDO"}

    filepath: StringProperty(subtype="FILE_PATH", options={"SKIP_SAVE"})
    filter_image: BoolProperty(default=True, options={"HIDDEN", "SKIP_SAVE"})
    filter_movie: BoolProperty(default=True, options={"HIDDEN", "SKIP_SAVE"})
    filter_folder: BoolProperty(default=True, options={"HIDDEN", "SKIP_SAVE"})
    filter_glob: StringProperty(default=CLIP_GLOB, options={"HIDDEN", "SKIP_SAVE"})
    relative_path: BoolProperty(
        name="Relative Path", default=True,
        description="Store the path relative to the .blend file (once it is saved)",
    )

    def invoke(self, context, event):
        current = context.scene.depth_from_image.photo_path
        if current:
            self.filepath = bpy.path.abspath(current)
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        path = bpy.path.abspath(self.filepath)
        if not os.path.isfile(path):
            self.report({"ERROR"}, f"Not a file: {path}")
            return {"CANCELLED"}
        if self.relative_path and bpy.data.is_saved:
            try:
                path = bpy.path.relpath(path)
            except ValueError:  # another drive on Windows: keep it absolute
                pass
        settings = context.scene.depth_from_image
        settings.photo_source, settings.photo_path = "FILE", path
        return {"FINISHED"}


class DEPTH_OT_choose_photos(bpy.types.Operator):
    """Choose several photos (select them in the file browser) or a folder of photos, for one queue"""

    bl_idname = "depth_from_image.choose_photos"
    bl_label = "Choose Photos"
    bl_options = {"REGISTER", "UNDO"}

    directory: StringProperty(subtype="DIR_PATH", options={"SKIP_SAVE"})
    files: CollectionProperty(type=bpy.types.OperatorFileListElement, options={"HIDDEN", "SKIP_SAVE"})
    filter_image: BoolProperty(default=True, options={"HIDDEN", "SKIP_SAVE"})
    filter_folder: BoolProperty(default=True, options={"HIDDEN", "SKIP_SAVE"})
    filter_glob: StringProperty(default=PHOTO_GLOB, options={"HIDDEN", "SKIP_SAVE"})

    def invoke(self, context, event):
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        folder = bpy.path.abspath(self.directory)
        names = [item.name for item in self.files if item.name]
        paths = [os.path.join(folder, name) for name in names if os.path.isfile(os.path.join(folder, name))]
        if not names:  # a folder chosen without files: every photo in it, as the command line finds them
            paths = _folder_photos(folder)
        if not paths:
            self.report({"ERROR"}, f"No photos chosen (none in {folder})")
            return {"CANCELLED"}
        settings = context.scene.depth_from_image
        settings.photo_files.clear()
        for path in paths:
            settings.photo_files.add().path = path
        settings.photo_source = "FILES"
        return {"FINISHED"}


def _folder_photos(folder: str) -> list:
    """The photos in `folder` (not its subfolders; hidden and `._` files left out); [] for none."""
    if not os.path.isdir(folder):
        return []
    try:
        return [str(path) for path in expand_argument(folder)]
    except PPDError:  # no photos in it
        return []


CLASSES = (DEPTH_OT_from_image, DEPTH_OT_cancel, DEPTH_OT_choose_photo, DEPTH_OT_choose_photos)

register, unregister = bpy.utils.register_classes_factory(CLASSES)
