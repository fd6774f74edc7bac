"""The sidebar's settings (saved with the scene) and the run's live state (not saved).

`job_options` turns the settings and the add-on preferences into the worker job's
"options" object (docs/protocol.md).
"""

from __future__ import annotations

import bpy
from bpy.props import (
    BoolProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from .materials import SHADING_ITEMS

RESOLUTIONS = {"PREVIEW": 256 * 192, "FAST": 512 * 384, "STANDARD": 1024 * 768, "HIGH": 1536 * 1152}


class DepthFromImageSettings(bpy.types.PropertyGroup):
    """What to make from which photo: Scene.depth_from_image."""

    photo_source: EnumProperty(
        name="Photo",
        items=(
            ("FILE", "File", "A photo file on disk"),
            ("IMAGE", "Image", "An image already loaded in Blender (packed images too)"),
        ),
        default="FILE",
    )
    photo_path: StringProperty(name="Photo File", subtype="FILE_PATH", description="The photo to turn into 3D")
    photo_image: PointerProperty(name="Image", type=bpy.types.Image, description="A loaded or packed image")

    output: EnumProperty(
        name="Output",
        items=(
            ("MESH", "Mesh", "A textured mesh seen from the photo's camera"),
            ("POINTS", "Point Cloud", "Coloured points, rendered with Geometry Nodes"),
            ("SOLID", "Print Solid", "A watertight relief for a 3D printer, in millimetres"),
        ),
        default="MESH",
    )
    mesh_method: EnumProperty(
        name="Method",
        items=(
            ("GRID", "Grid", "Triangulate the pixel grid, cut at depth edges (fast, exact texture)"),
            ("POISSON", "Poisson", "Poisson surface reconstruction (smooth, closed holes)"),
        ),
        default="GRID",
    )
    shading: EnumProperty(name="Shading", items=SHADING_ITEMS, default="EMISSION")
    width_mm: FloatProperty(name="Width", default=100.0, min=1.0, soft_max=500.0, description="Solid width in mm")
    relief_mm: FloatProperty(name="Relief", default=10.0, min=0.1, soft_max=100.0, description="Relief height in mm")
    base_mm: FloatProperty(name="Base", default=2.0, min=0.0, soft_max=50.0, description="Base thickness in mm")

    steps: IntProperty(name="Steps", default=4, min=1, max=64, description="Diffusion sampling steps")
    resolution: EnumProperty(
        name="Resolution",
        items=(
            ("PREVIEW", "Preview (256x192)", "Work at about 0.05 megapixels: a quick, coarse look"),
            ("FAST", "Fast (512x384)", "Work at about 0.2 megapixels"),
            ("STANDARD", "Standard (1024x768)", "Work at about 0.8 megapixels, as the network was trained"),
            ("HIGH", "High (1536x1152)", "Work at about 1.8 megapixels (slow, much memory)"),
        ),
        default="STANDARD",
    )
    preset: EnumProperty(
        name="Depth Range",
        items=(
            ("tabletop", "Tabletop", "Objects on a table, about 0.3 to 1.5 m away"),
            ("indoor", "Indoor", "A room, about 0.8 to 10 m away"),
            ("outdoor", "Outdoor", "Streets and landscapes, about 3 to 200 m away"),
            ("custom", "Custom", "Set the nearest and farthest depth yourself"),
        ),
        default="indoor",
    )
    near: FloatProperty(name="Near", default=0.8, min=0.01, unit="LENGTH", description="Depth of the nearest surfaces")
    far: FloatProperty(name="Far", default=10.0, min=0.02, unit="LENGTH", description="Depth of the farthest surfaces")
    fov_source: EnumProperty(
        name="Field of View",
        items=(
            ("EXIF", "From EXIF", "Use the photo's focal length from EXIF (a default when it has none)"),
            ("MANUAL", "Manual", "Set the horizontal field of view"),
        ),
        default="EXIF",
    )
    fov: FloatProperty(name="Horizontal FOV", default=60.0, min=1.0, max=170.0, description="Degrees")
    edge_strength: FloatProperty(
        name="Edge Strength", default=0.5, min=0.0, max=1.0, subtype="FACTOR",
        description="How readily depth edges cut the surface (0: never, 1: at every faint edge)",
    )
    create_camera: BoolProperty(
        name="Create Camera", default=True, description="Add the photo's camera with the photo as background",
    )
    seed: IntProperty(name="Seed", default=0, min=0, description="Random seed of the diffusion sampler")


class DepthFromImageRunState(bpy.types.PropertyGroup):
    """The run's progress and last error, shown by the panel: WindowManager.depth_from_image."""

    running: BoolProperty(default=False)
    progress: FloatProperty(default=0.0, min=0.0, max=1.0, subtype="FACTOR")
    stage: StringProperty(default="")
    last_error: StringProperty(default="")
    last_result: StringProperty(default="")


def job_options(settings: DepthFromImageSettings, prefs) -> dict:
    """The worker job's options for these settings and preferences."""
    options = {
        "method": settings.mesh_method.lower(),
        "points": settings.output == "POINTS",
        "solid": settings.output == "SOLID",
        "width_mm": settings.width_mm,
        "relief_mm": settings.relief_mm,
        "base_mm": settings.base_mm,
        "edge_strength": settings.edge_strength,
        "steps": settings.steps,
        "resolution": RESOLUTIONS[settings.resolution],
        "device": prefs.device,
        "precision": prefs.precision,
        "seed": settings.seed,
    }
    if settings.preset == "custom":
        options["near"] = settings.near
        options["far"] = settings.far
    else:
        options["preset"] = settings.preset
    if settings.fov_source == "MANUAL":
        options["fov"] = settings.fov
    if prefs.weights_folder:
        options["weights"] = bpy.path.abspath(prefs.weights_folder)
    return options


CLASSES = (DepthFromImageSettings, DepthFromImageRunState)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.depth_from_image = PointerProperty(type=DepthFromImageSettings)
    bpy.types.WindowManager.depth_from_image = PointerProperty(type=DepthFromImageRunState)


def unregister() -> None:
    del bpy.types.WindowManager.depth_from_image
    del bpy.types.Scene.depth_from_image
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
