"""Export for Printing: the active mesh object as STL or 3MF in millimetres, written by the
project's own writers in the backend (`ppd_core.print_export`), checked as a slicer reads it,
its size reported. Whatever the scene's units: the object's world size, in the scene's
units, becomes millimetres (a 100 mm solid in a metre scene is 0.1 units wide and writes 100).
"""

from __future__ import annotations

import os
import tempfile

import bpy
import numpy as np
from bpy.props import EnumProperty, StringProperty

from ppd_core import client as worker_client

from . import settings, state
from .backend import backend_runs, wording
from .backend.tasks import Task
from .scene import print_mesh

FORMATS = (("STL", "STL", "Binary STL, millimetres, z up"), ("3MF", "3MF", "3MF with millimetre units, z up"))


def menu_entry(menu, context) -> None:
    menu.layout.operator(DEPTH_OT_export_print.bl_idname, text="Print Solid, mm (.stl/.3mf)")


class DEPTH_OT_export_print(bpy.types.Operator):
    """Write the active mesh object as an STL or 3MF in millimetres, with the slicer's checks and its size"""

    bl_idname = "depth_from_image.export_print"
    bl_label = "Export for Printing"

    filepath: StringProperty(subtype="FILE_PATH", options={"SKIP_SAVE"})
    file_format: EnumProperty(name="Format", items=FORMATS, default="STL")
    filter_glob: StringProperty(default="*.stl;*.3mf", options={"HIDDEN"})

    @classmethod
    def poll(cls, context):
        obj = context.active_object
        if obj is None or obj.type != "MESH":
            cls.poll_message_set("Select the solid (a mesh object) to export")
            return False
        if state.running("print-export"):
            cls.poll_message_set("An export is being written: wait for it")
            return False
        return True

    def invoke(self, context, event):
        name = bpy.path.clean_name(context.active_object.name)
        self.filepath = os.path.join(os.path.dirname(bpy.data.filepath) or os.path.expanduser("~"), name + ".stl")
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        prefs = settings.addon_prefs(context)
        suffix = "." + self.file_format.lower()
        target = os.path.abspath(bpy.path.abspath(self.filepath))
        target = os.path.splitext(target)[0] + suffix if not target.lower().endswith(suffix) else target
        try:
            python = settings.interpreter(prefs)
        except ValueError as error:
            self.report({"ERROR"}, wording.with_next(f"The print files are written by the backend: {error}",
                                                     "use Set up backend in the add-on preferences"))
            return {"CANCELLED"}
        obj = context.active_object
        depsgraph = context.evaluated_depsgraph_get()
        vertices, faces = print_mesh.triangles_mm(obj, depsgraph, context.scene)
        if not len(faces):
            self.report({"ERROR"}, f"{obj.name} has no faces to print")
            return {"CANCELLED"}
        # A colour relief's 3MF keeps its filaments (each material slot one, in order); an STL cannot.
        paint = print_mesh.triangle_filaments(obj, depsgraph) if self.file_format == "3MF" else None
        folder = tempfile.mkdtemp(prefix="ppd-print-")
        solid = os.path.join(folder, "solid.npz")
        np.savez(solid, vertices=vertices, faces=faces, **(paint or {}))
        state.NOTES.update(export=f"Writing {os.path.basename(target)}…", export_ok=True)
        env = worker_client.worker_environment({})

        def done(task: Task) -> None:
            if task.exception is not None:
                state.NOTES.update(export_ok=False, export=wording.with_next(
                    f"Export for Printing failed: {task.status().error}",
                    "choose a folder you can write to" if "cannot write" in task.status().error
                    else "Open Worker Log, or press Check in the add-on preferences"))
                return
            # The check's line: the size in mm, the volume, the yes/no checks (and NOT PRINTABLE when one fails).
            state.NOTES.update(export_ok=bool(task.result["printable"]),
                               export=f"{os.path.basename(target)}: {task.result['check']}")

        state.start_task(backend_runs.start_print_export(python, solid, [target], env), done)
        self.report({"INFO"}, f"Writing {target} in millimetres")
        return {"FINISHED"}


def register() -> None:
    bpy.utils.register_class(DEPTH_OT_export_print)
    bpy.types.TOPBAR_MT_file_export.append(menu_entry)


def unregister() -> None:
    bpy.types.TOPBAR_MT_file_export.remove(menu_entry)
    bpy.utils.unregister_class(DEPTH_OT_export_print)
