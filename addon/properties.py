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
# Hard limits within those the worker accepts (mesh.solid print sizes, ppd_core.depth range).
MAX_PRINT_MM = 100_000.0
MAX_DEPTH_M = 1_000_000.0


def auto_resolution(device: str, handshake: dict) -> int:
    """The "Auto" resolution: Standard on a GPU, Preview on the CPU, where a Standard run
    of the full-size network takes many minutes. `device` is the preference, `handshake`
    the worker's (its `devices` list names the GPUs it has)."""
    gpus = [d for d in handshake.get("devices", []) if d.get("type") in ("cuda", "mps")]
    if device == "cpu" or (device == "auto" and not gpus):
        return RESOLUTIONS["PREVIEW"]
    return RESOLUTIONS["STANDARD"]


class DepthFromImageSettings(bpy.types.PropertyGroup):
    """What to make from which photo: Scene.depth_from_image."""

    photo_source: EnumProperty(
        name="Photo", description="Where the photo comes from",
        items=(
            ("FILE", "File", "A photo file on disk"),
            ("IMAGE", "Image", "An image already loaded in Blender (packed images too)"),
        ),
        default="FILE",
    )
    # A plain string browsed with DEPTH_OT_choose_photo, whose file browser shows images only
    # (a FILE_PATH property's own browser shows every file); "//" paths still work.
    photo_path: StringProperty(
        name="Photo File",
        description="The photo to turn into 3D (JPEG, PNG, TIFF, WebP...); "
                    "'//' is relative to the .blend file",
    )
    photo_image: PointerProperty(
        name="Image", type=bpy.types.Image,
        description="An image loaded in Blender: from a file, packed, generated or painted",
    )

    output: EnumProperty(
        name="Output", description="What to make from the photo",
        items=(
            ("MESH", "Mesh", "A textured mesh seen from the photo's camera"),
            ("POINTS", "Point Cloud", "Coloured points, rendered with Geometry Nodes"),
            ("SOLID", "Print Solid", "A watertight relief for a 3D printer, in millimetres"),
        ),
        default="MESH",
    )
    mesh_method: EnumProperty(
        name="Method", description="How the mesh is made from the depth",
        items=(
            ("GRID", "Grid", "Triangulate the pixel grid, cut at depth edges (fast, exact texture)"),
            ("POISSON", "Poisson", "Poisson surface reconstruction (smooth, closed holes)"),
        ),
        default="GRID",
    )
    shading: EnumProperty(name="Shading", items=SHADING_ITEMS, default="EMISSION",
                          description="How the material shows the photo's colours")
    width_mm: FloatProperty(name="Width (mm)", default=100.0, min=1.0, max=MAX_PRINT_MM, soft_max=500.0,
                            description="Width of the printed solid in millimetres")
    relief_mm: FloatProperty(name="Relief (mm)", default=10.0, min=0.1, max=MAX_PRINT_MM, soft_max=100.0,
                             description="Height from the farthest to the nearest surface, in millimetres")
    base_mm: FloatProperty(name="Base (mm)", default=2.0, min=0.1, max=MAX_PRINT_MM, soft_max=50.0,
                           description="Thickness of the flat base under the relief, in millimetres")

    steps: IntProperty(name="Steps", default=4, min=1, max=64,
                       description="Diffusion sampling steps: more is slower and slightly finer")
    resolution: EnumProperty(
        name="Resolution", description="Working size of the depth network: larger is finer and slower",
        items=(
            ("AUTO", "Auto", "Standard on a GPU, Preview on the CPU (where Standard takes many minutes)"),
            ("PREVIEW", "Preview (256x192)", "Work at about 0.05 megapixels: a quick, coarse look"),
            ("FAST", "Fast (512x384)", "Work at about 0.2 megapixels"),
            ("STANDARD", "Standard (1024x768)", "Work at about 0.8 megapixels, as the network was trained"),
            ("HIGH", "High (1536x1152)", "Work at about 1.8 megapixels (slow, much memory)"),
        ),
        default="AUTO",
    )
    preset: EnumProperty(
        name="Depth Range", description="How far the nearest and farthest surfaces are, in metres",
        items=(
            ("tabletop", "Tabletop", "Objects on a table, about 0.3 to 1.5 m away"),
            ("indoor", "Indoor", "A room, about 0.8 to 10 m away"),
            ("outdoor", "Outdoor", "Streets and landscapes, about 3 to 200 m away"),
            ("custom", "Custom", "Set the nearest and farthest depth yourself"),
        ),
        default="indoor",
    )
    # Plain numbers in metres: a LENGTH unit would follow the scene's unit scale, so after a
    # print solid set millimetres, "0.8" would read as 0.8 mm yet be sent as 0.8 m.
    near: FloatProperty(name="Near (m)", default=0.8, min=0.01, max=MAX_DEPTH_M, soft_max=100.0,
                        description="Distance of the nearest surfaces from the camera, in metres")
    far: FloatProperty(name="Far (m)", default=10.0, min=0.02, max=MAX_DEPTH_M, soft_max=1000.0,
                       description="Distance of the farthest surfaces from the camera, in metres")
    fov_source: EnumProperty(
        name="Field of View", description="Where the camera's field of view comes from",
        items=(
            ("EXIF", "From EXIF", "Use the photo's focal length from EXIF (a default when it has none)"),
            ("MANUAL", "Manual", "Set the horizontal field of view"),
        ),
        default="EXIF",
    )
    fov: FloatProperty(name="Horizontal FOV", default=60.0, min=1.0, max=170.0,
                       description="The photo's horizontal field of view in degrees")
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
        "resolution": RESOLUTIONS.get(settings.resolution),  # None: Auto, chosen once the worker is up
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
