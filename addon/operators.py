"""The "Depth from Image" modal operator and its Cancel button.

The operator only starts the run and then calls `runner.SESSION.step` on a timer; Esc or
the Cancel button asks the run to stop. Only one run at a time (see `poll`).
"""

from __future__ import annotations

import bpy

from . import runner

TIMER_INTERVAL_S = 0.1


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
        return not runner.SESSION.running

    def invoke(self, context, event):
        try:
            runner.SESSION.start_run(context)
        except runner.RunError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        self._timer = context.window_manager.event_timer_add(TIMER_INTERVAL_S, window=context.window)
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type == "ESC" and event.value == "PRESS":
            runner.SESSION.request_cancel()
            return {"RUNNING_MODAL"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        outcome = runner.SESSION.step(context)
        _redraw_sidebars(context)
        if outcome == runner.RUNNING:
            return {"PASS_THROUGH"}
        context.window_manager.event_timer_remove(self._timer)
        self._timer = None
        if outcome == runner.FAILED:
            self.report({"ERROR"}, context.window_manager.depth_from_image.last_error)
            return {"CANCELLED"}
        if outcome == runner.CANCELLED:
            self.report({"INFO"}, "Depth from Image cancelled")
            return {"CANCELLED"}
        self.report({"INFO"}, context.window_manager.depth_from_image.last_result)
        return {"FINISHED"}

    def cancel(self, context):
        """Blender ends the operator (window closed, file loaded): drop the run."""
        if self._timer is not None:
            context.window_manager.event_timer_remove(self._timer)
            self._timer = None
        runner.SESSION.abandon(context)


class DEPTH_OT_cancel(bpy.types.Operator):
    """Stop the running Depth from Image job"""

    bl_idname = "depth_from_image.cancel"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context):
        return runner.SESSION.running

    def execute(self, context):
        runner.SESSION.request_cancel()
        return {"FINISHED"}


CLASSES = (DEPTH_OT_from_image, DEPTH_OT_cancel)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister() -> None:
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
