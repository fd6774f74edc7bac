"""The sidebar panel: View3D > Sidebar > Depth."""

from __future__ import annotations

import bpy

from . import session, status
from . import state as addon_state
from .print_ops import DEPTH_OT_export_print
from .run_ops import DEPTH_OT_cancel, DEPTH_OT_choose_photo, DEPTH_OT_choose_photos, DEPTH_OT_from_image
from .scene.print_mesh import millimetres_per_unit
from .ui_text import chars_per_line, wrapped_label

MM_SCENE_HINT = ("Blender's own STL exporter and the 3D-Print Toolbox read Blender units, here metres: for "
                 "millimetres there, make the scene a millimetre one before importing (Scene > Units: Unit Scale "
                 "0.001, Length Millimeters). Export for Printing writes millimetres in any scene.")


class VIEW3D_PT_depth_from_image(bpy.types.Panel):
    bl_label = "Depth from Image"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Depth"

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        layout.use_property_decorate = False
        settings = context.scene.depth_from_image
        state = context.window_manager.depth_from_image
        status.draw(layout, context, chars_per_line(context))

        col = layout.column()
        col.prop(settings, "photo_source", expand=True)
        if settings.photo_source == "FILE":
            row = col.row(align=True)
            row.prop(settings, "photo_path", text="File")
            row.operator(DEPTH_OT_choose_photo.bl_idname, text="", icon="FILEBROWSER")
        elif settings.photo_source == "FILES":
            row = col.row(align=True)
            count = len(settings.photo_files)
            row.label(text=f"{count} photo{'s' if count != 1 else ''}" if count else "No photos chosen")
            row.operator(DEPTH_OT_choose_photos.bl_idname, text="Choose", icon="FILEBROWSER")
        else:
            col.template_ID(settings, "photo_image", open="image.open")

        col = layout.column(heading="Output")
        col.prop(settings, "output", text="Output")
        if settings.output == "MESH":
            col.prop(settings, "mesh_method")
        if settings.output == "SOLID":
            col.prop(settings, "width_mm")
            col.prop(settings, "relief_mm")
            col.prop(settings, "base_mm")
            _draw_shape(layout.column(heading="Shape"), settings)
        else:
            col.prop(settings, "shading")

        col = layout.column()
        col.prop(settings, "steps")
        col.prop(settings, "resolution")
        col.prop(settings, "preset")
        if settings.preset == "custom":
            col.prop(settings, "near")
            col.prop(settings, "far")
        col.prop(settings, "fov_source")
        if settings.fov_source == "MANUAL":
            col.prop(settings, "fov")
        col.prop(settings, "edge_strength")
        row = col.row()
        row.active = settings.output != "SOLID"  # a print solid has no camera to make
        row.prop(settings, "create_camera")
        col.prop(settings, "keep_previous")

        if session.SESSION.running:
            row = layout.row(align=True)
            row.progress(factor=state.progress, type="BAR", text=state.stage or "Working")
            row.operator(DEPTH_OT_cancel.bl_idname, text="", icon="X")
            layout.label(text="Esc also cancels", icon="INFO")
        else:
            layout.operator(DEPTH_OT_from_image.bl_idname, icon="MOD_DISPLACE")
        if state.last_error:
            box = layout.box()
            box.alert = True
            wrapped_label(box, state.last_error, "ERROR", chars_per_line(context))
        elif state.last_result:
            wrapped_label(layout, state.last_result, "CHECKMARK", chars_per_line(context))
        if settings.output == "SOLID" or (context.active_object is not None and context.active_object.type == "MESH"):
            _draw_print(layout, context)


def _draw_shape(col, settings) -> None:
    """The print solid's relief options: frame, corners, hanger, curve, smoothing, outline,
    budget, colours (each a job option of the same name)."""
    col.prop(settings, "frame_mm")
    if settings.frame_mm > 0:
        col.prop(settings, "frame_matches_relief")
        if not settings.frame_matches_relief:
            col.prop(settings, "frame_height_mm")
    col.prop(settings, "corner_mm")
    col.prop(settings, "hanger")
    col.prop(settings, "curved")
    if settings.curved:
        col.prop(settings, "curve_radius_mm")
    col.prop(settings, "smooth_mm")
    col.prop(settings, "silhouette")
    col.prop(settings, "use_budget")
    if settings.use_budget:
        col.prop(settings, "max_mb")
    col.prop(settings, "colour_relief")
    if settings.colour_relief:
        col.prop(settings, "filament_count")
        col.prop(settings, "filament_colours")


def _draw_print(layout, context) -> None:
    """The way out for a printer: Export for Printing, its last outcome, and the unit hint."""
    box = layout.box()
    box.operator(DEPTH_OT_export_print.bl_idname, icon="EXPORT")
    width = chars_per_line(context)
    if addon_state.running("print-export"):
        wrapped_label(box, addon_state.NOTES["export"], "TIME", width)
    elif addon_state.NOTES["export"]:
        wrapped_label(box, addon_state.NOTES["export"], "CHECKMARK" if addon_state.NOTES["export_ok"] else "ERROR",
                      width)
    if millimetres_per_unit(context.scene) != 1.0:
        wrapped_label(box, MM_SCENE_HINT, "INFO", width)


def register() -> None:
    bpy.utils.register_class(VIEW3D_PT_depth_from_image)


def unregister() -> None:
    bpy.utils.unregister_class(VIEW3D_PT_depth_from_image)
