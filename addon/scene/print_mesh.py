"""An object's triangles in millimetres, as a slicer should read them (for Export for Printing).

The evaluated object (modifiers applied) in world space, in the scene's units turned into
millimetres: a print solid imported at its true size into a metre scene (vertices in mm,
object scale 0.001) comes out exactly as many millimetres wide as asked.
"""

from __future__ import annotations

import json
from typing import Optional

import bpy
import numpy as np

FILAMENTS_KEY = "depth_from_image_filaments"
"""Custom property of a colour relief's object: its filaments in slot order (JSON: "colors" as
[r, g, b], "names"); its material slots are those filaments, in that order."""


def millimetres_per_unit(scene: bpy.types.Scene) -> float:
    """Millimetres per Blender unit in `scene` (1000 in a metre scene, 1 in a millimetre one)."""
    units = scene.unit_settings
    if units.system == "NONE" or units.scale_length <= 0.0:
        return 1000.0
    return 1000.0 * units.scale_length


def triangles_mm(obj: bpy.types.Object, depsgraph: bpy.types.Depsgraph, scene: bpy.types.Scene) -> tuple:
    """(vertices float32 (N, 3) in mm, world frame z up; faces int32 (F, 3)) of the evaluated `obj`."""
    evaluated = obj.evaluated_get(depsgraph)
    mesh = evaluated.to_mesh()
    try:
        mesh.calc_loop_triangles()
        vertices = np.empty(len(mesh.vertices) * 3, np.float32)
        mesh.vertices.foreach_get("co", vertices)
        faces = np.empty(len(mesh.loop_triangles) * 3, np.int32)
        mesh.loop_triangles.foreach_get("vertices", faces)
    finally:
        evaluated.to_mesh_clear()
    matrix = np.array(evaluated.matrix_world, dtype=np.float64)
    world = vertices.reshape(-1, 3).astype(np.float64) @ matrix[:3, :3].T + matrix[:3, 3]
    if np.linalg.det(matrix[:3, :3]) < 0:  # a mirrored object: keep the faces pointing outwards
        faces = faces.reshape(-1, 3)[:, ::-1]
    return (world * millimetres_per_unit(scene)).astype(np.float32), faces.reshape(-1, 3)


def triangle_filaments(obj: bpy.types.Object, depsgraph: bpy.types.Depsgraph) -> Optional[dict]:
    """A colour relief's paint for its triangles as `triangles_mm` lists them: "face_filaments"
    (F,) (each triangle's material slot, the filament), "filament_colors" (K, 3) and
    "filament_names"; None for an object that is not a colour relief."""
    if FILAMENTS_KEY not in obj:
        return None
    record = json.loads(obj[FILAMENTS_KEY])
    evaluated = obj.evaluated_get(depsgraph)
    mesh = evaluated.to_mesh()
    try:
        mesh.calc_loop_triangles()
        slots = np.empty(len(mesh.loop_triangles), np.int32)
        mesh.loop_triangles.foreach_get("material_index", slots)
    finally:
        evaluated.to_mesh_clear()
    colours = np.array(record["colors"], np.uint8).reshape(-1, 3)
    return {"face_filaments": np.minimum(slots, len(colours) - 1).astype(np.int16), "filament_colors": colours,
            "filament_names": np.array(json.dumps(record["names"]))}
