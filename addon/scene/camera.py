"""The photo's camera as a Blender camera object.

The result file carries the camera record (`ppd_core.geometry.camera.CameraRecord`), the
Blender camera already converted from the intrinsics: lens and sensor width in millimetres,
sensor fit and shift. The camera object sits at the origin with identity rotation, which is where the
importer's OpenCV -> Blender conversion puts the photo's camera; with the render resolution
set to the photo's size, the view through it lines the mesh up with the photo pixel for pixel.
"""

from __future__ import annotations

import bpy

from ppd_core.geometry.camera import CameraRecord

def create_camera(
    scene: bpy.types.Scene,
    name: str,
    spec: CameraRecord,
    photo: bpy.types.Image | None,
    *,
    clip: tuple,
) -> bpy.types.Object:
    """Make the camera (not linked to any collection), set the render size, make it active.

    `clip` is the (nearest, farthest) depth of the geometry in scene units.
    """
    data = bpy.data.cameras.new(name)
    data.type = "PERSP"
    data.lens_unit = "MILLIMETERS"
    data.sensor_fit = spec.sensor_fit
    data.sensor_width = spec.sensor_width_mm
    data.lens = spec.lens_mm
    data.shift_x, data.shift_y = spec.shift_x, spec.shift_y
    near, far = clip
    data.clip_start = max(1e-4, min(0.1, near * 0.5))
    data.clip_end = max(data.clip_start * 10.0, far * 2.0)
    if photo is not None:
        data.show_background_images = True
        background = data.background_images.new()
        background.image = photo
        background.alpha = 1.0
        background.frame_method = "FIT"
    camera = bpy.data.objects.new(name, data)
    camera.location = (0.0, 0.0, 0.0)
    camera.rotation_euler = (0.0, 0.0, 0.0)

    render = scene.render
    render.resolution_x = int(spec.width)
    render.resolution_y = int(spec.height)
    render.resolution_percentage = 100
    render.pixel_aspect_x = 1.0
    render.pixel_aspect_y = 1.0
    scene.camera = camera
    return camera
