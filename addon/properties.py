"""The sidebar's settings (saved with the scene) and the run's live state (not saved).

`job_options` turns the settings and the add-on preferences into the worker job's
"options" object (docs/protocol.md).
"""

from __future__ import annotations

import bpy
import numpy as np
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from ppd_core.options import (DEFAULT_HFOV_DEG, DEFAULT_PRESET, DEFAULT_RESOLUTION, FILAMENT_COUNTS, HANGERS, OPTIONS,
                              PRESETS)

from .scene.materials import SHADING_ITEMS

RESOLUTIONS = {"PREVIEW": 256 * 192, "FAST": 512 * 384, "STANDARD": DEFAULT_RESOLUTION, "HIGH": 1536 * 1152}
PRESET_WORDS = {"tabletop": ("Tabletop", "Objects on a table"), "indoor": ("Indoor", "A room"),
                "outdoor": ("Outdoor", "Streets and landscapes")}
PRESET_ITEMS = (("auto", "Auto", f"MoGe-2's metric scale when its weights are there, else "
                                 f"{PRESET_WORDS[DEFAULT_PRESET][0]}"),
                *((key, PRESET_WORDS[key][0], f"{PRESET_WORDS[key][1]}, about {near:g} to {far:g} m away")
                  for key, (near, far) in PRESETS.items()),
                ("custom", "Custom", "Set the nearest and farthest depth yourself"))
INT32 = (-(2**31), 2**31 - 1)  # what an IntProperty holds


def option_description(name: str) -> str:
    """Job option `name`'s help text from the options table, as a tooltip."""
    spec = OPTIONS[name].spec
    unit = f", in {spec.unit}" if spec.unit else ""
    return spec.help[:1].upper() + spec.help[1:] + unit


def option_property(name: str, label: str, *, default=None, **ui):
    """A Float- or IntProperty for job option `name`: its description, default and hard limits
    from the options table (`ppd_core.options`), so the panel cannot drift from the command.
    `default` replaces an option whose own default is "not given" (None); `ui` adds soft limits."""
    row = OPTIONS[name]
    spec = row.spec
    values = dict(name=label, description=option_description(name),
                  default=row.default if default is None else default, **ui)
    if row.kind is int:
        values["min"] = max(INT32[0], spec.minimum) if spec.minimum is not None else INT32[0]
        values["max"] = min(INT32[1], spec.maximum) if spec.maximum is not None else INT32[1]
        return IntProperty(**values)
    if spec.minimum is not None:
        values["min"] = _float32_inside(spec.minimum, up=True)
    if spec.maximum is not None:
        values["max"] = _float32_inside(spec.maximum, up=False)
    return FloatProperty(**values)


def _float32_inside(limit: float, up: bool) -> float:
    """The float32 nearest `limit` on its allowed side: a FloatProperty holds float32, and
    0.01 stored as float32 (0.0099999998) would fall just outside the worker's limit."""
    value = np.float32(limit)
    if (up and value < limit) or (not up and value > limit):
        value = np.nextafter(value, np.float32(np.inf if up else -np.inf))
    return float(value)


def auto_resolution(device: str, handshake: dict) -> int:
    """The "Auto" resolution: Standard on a GPU, Preview on the CPU, where a Standard run
    of the full-size network takes many minutes. `device` is the preference, `handshake`
    the worker's (its `devices` list names the GPUs it has)."""
    gpus = [d for d in handshake.get("devices", []) if d.get("type") in ("cuda", "mps")]
    if device == "cpu" or (device == "auto" and not gpus):
        return RESOLUTIONS["PREVIEW"]
    return RESOLUTIONS["STANDARD"]


class PhotoFile(bpy.types.PropertyGroup):
    """One photo of a queue."""

    path: StringProperty(name="Path", subtype="FILE_PATH")


class DepthFromImageSettings(bpy.types.PropertyGroup):
    """What to make from which photo: Scene.depth_from_image."""

    photo_source: EnumProperty(
        name="Photo", description="Where the photo comes from",
        items=(
            ("FILE", "File", "A photo file on disk"),
            ("IMAGE", "Image", "An image already loaded in Blender (packed images too)"),
            ("FILES", "Several", "Several photo files or a folder of photos, run one after another, each into "
                                 "its own collection"),
        ),
        default="FILE",
    )
    photo_files: CollectionProperty(type=PhotoFile, name="Photos",
                                     description="The photos of a queue (Choose: several files, or a folder)")
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
    width_mm: option_property("width_mm", "Width (mm)", soft_min=1.0, soft_max=500.0)
    relief_mm: option_property("relief_mm", "Relief (mm)", soft_min=0.1, soft_max=100.0)
    base_mm: option_property("base_mm", "Base (mm)", soft_min=0.1, soft_max=50.0)
    frame_mm: option_property("frame_mm", "Frame (mm)", soft_max=30.0)
    frame_matches_relief: BoolProperty(name="Frame as High as the Relief", default=True,
                                       description="The frame's top level with the relief's highest point")
    frame_height_mm: option_property("frame_height_mm", "Frame Height (mm)", default=OPTIONS["relief_mm"].default,
                                     soft_max=50.0)
    corner_mm: option_property("corner_mm", "Corners (mm)", soft_max=30.0)
    hanger: EnumProperty(name="Hanger", description=option_description("hanger"), default="none",
                         items=tuple((key, key.title(), words) for key, words in zip(HANGERS, (
                             "A plain back", "A hole through the print near its top edge, for a nail or a string",
                             "A keyhole slot in the back for a screw head (needs a 5 mm base)"))))
    curved: BoolProperty(name="Curved Panel", default=False, description=option_description("curve_radius_mm"))
    curve_radius_mm: option_property("curve_radius_mm", "Curve Radius (mm)", default=100.0, soft_min=20.0,
                                     soft_max=500.0)
    smooth_mm: option_property("smooth_mm", "Smoothing (mm)", soft_max=5.0)
    silhouette: BoolProperty(name="Silhouette", default=False, description=option_description("silhouette"))
    use_budget: BoolProperty(name="File Budget", default=False, description=option_description("max_mb"))
    max_mb: option_property("max_mb", "Budget (MB)", default=20.0, soft_min=0.5, soft_max=100.0)
    colour_relief: BoolProperty(name="Colour Relief", default=False, description=option_description("filaments"))
    filament_count: IntProperty(name="Filaments", default=4, min=FILAMENT_COUNTS[0], max=FILAMENT_COUNTS[1],
                                description="How many filaments the photo's colours become (the printer's slots)")
    filament_colours: StringProperty(
        name="Your Filaments", default="",
        description="Optional: your filaments in slot order, by name or #rrggbb, separated by commas "
                    "(white,black,red,#2060c0); they replace the count")

    steps: option_property("steps", "Steps", soft_max=20)
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
        items=PRESET_ITEMS,
        default="auto",
    )
    # Plain numbers in metres: a LENGTH unit would follow the scene's unit scale, so in a
    # millimetre scene "0.8" would read as 0.8 mm yet be sent as 0.8 m.
    near: option_property("near", "Near (m)", default=PRESETS[DEFAULT_PRESET][0], soft_min=0.01, soft_max=100.0)
    far: option_property("far", "Far (m)", default=PRESETS[DEFAULT_PRESET][1], soft_min=0.02, soft_max=1000.0)
    fov_source: EnumProperty(
        name="Field of View", description="Where the camera's field of view comes from",
        items=(
            ("AUTO", "Auto", f"The photo's EXIF focal length, else MoGe-2's estimate, else {DEFAULT_HFOV_DEG:g} degrees"),
            ("MANUAL", "Manual", "Set the horizontal field of view"),
        ),
        default="AUTO",
    )
    fov: option_property("fov", "Horizontal FOV", default=DEFAULT_HFOV_DEG)
    edge_strength: option_property("edge_strength", "Edge Strength", subtype="FACTOR")
    create_camera: BoolProperty(
        name="Create Camera", default=True, description="Add the photo's camera with the photo as background",
    )
    keep_previous: BoolProperty(
        name="Keep Previous Results", default=False,
        description="Add each run's result beside the photo's earlier ones, instead of replacing its last result "
                    "(collection, objects and camera)",
    )
    seed: option_property("seed", "Seed")


class DepthFromImageRunState(bpy.types.PropertyGroup):
    """The run's progress and last error, shown by the panel: WindowManager.depth_from_image."""

    running: BoolProperty(default=False)
    progress: FloatProperty(default=0.0, min=0.0, max=1.0, subtype="FACTOR")
    stage: StringProperty(default="")
    last_error: StringProperty(default="")
    last_result: StringProperty(default="")


def job_options(settings: DepthFromImageSettings, prefs) -> dict:
    """The worker job's options (names of `ppd_core.options.JobOptions`) for these settings and preferences."""
    options = {
        # The panel shows Method for a mesh only: a print solid is always the relief it describes.
        "method": settings.mesh_method.lower() if settings.output == "MESH" else OPTIONS["method"].default,
        "points": settings.output == "POINTS",
        "solid": settings.output == "SOLID",
        "width_mm": settings.width_mm,
        "relief_mm": settings.relief_mm,
        "base_mm": settings.base_mm,
        **print_options(settings),
        "edge_strength": settings.edge_strength,
        "steps": settings.steps,
        "resolution": RESOLUTIONS.get(settings.resolution),  # None: Auto, chosen once the worker is up
        "device": prefs.device,
        "precision": prefs.precision,
        "semantics": prefs.semantics,
        "seed": settings.seed,
    }
    if settings.preset == "custom":
        options["near"] = settings.near
        options["far"] = settings.far
    elif settings.preset != "auto":
        options["preset"] = settings.preset
    if settings.fov_source == "MANUAL":
        options["fov"] = settings.fov
    if prefs.weights_folder:
        options["weights"] = bpy.path.abspath(prefs.weights_folder)
    return options


def print_options(settings: DepthFromImageSettings) -> dict:
    """The print solid's shape options (names of `JobOptions`) for a Print Solid output; none otherwise."""
    if settings.output != "SOLID":
        return {}
    options = {"frame_mm": settings.frame_mm, "corner_mm": settings.corner_mm, "hanger": settings.hanger,
               "smooth_mm": settings.smooth_mm, "silhouette": settings.silhouette}
    if settings.frame_mm > 0 and not settings.frame_matches_relief:
        options["frame_height_mm"] = settings.frame_height_mm
    if settings.curved:
        options["curve_radius_mm"] = settings.curve_radius_mm
    if settings.use_budget:
        options["max_mb"] = settings.max_mb
    if settings.colour_relief:
        options["filaments"] = settings.filament_colours.strip().replace(" ", "") or str(settings.filament_count)
    return options


CLASSES = (PhotoFile, DepthFromImageSettings, DepthFromImageRunState)


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
