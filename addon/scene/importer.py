"""Import the worker's result file as Blender objects: read and checked without bpy by
`ppd_core.files.result_file`, then created here.

Frames: an "opencv" result (metres; x right, y down, z forward) becomes Blender object
coordinates (x, -y, -z): a 180° turn about X, so a camera at the origin with identity
rotation (looking down -Z, +Y up) sees the mesh exactly as the photo's camera did, and
triangle winding (counter-clockwise seen from the camera) is kept. A "print_mm" result
(millimetres, z up) keeps its vertices in millimetres on an object scaled to metres, so it
comes in at its true size without changing the scene's unit settings.

Everything is created with numpy `foreach_set`; if anything fails, every data-block
created so far is removed again, so an error never leaves a partial import behind. The
collection and its objects carry the photo's key and an import serial (`PHOTO_KEY`,
`SERIAL`): that is how a re-run of the photo finds its previous result (`scene.results`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import bpy
import numpy as np

from ppd_core.files.result_file import ResultFile, read_result

from . import camera as scene_camera
from . import materials
from .print_mesh import FILAMENTS_KEY

# Blender 4.2-4.5 cut data-block names at 63 bytes; a shorter photo name leaves room for
# " camera" / " points" and a ".001" so the objects of one import keep telling names.
NAME_BYTES = 48
PHOTO_KEY = "depth_from_image_photo"
"""Custom property of a result's collection and objects: which photo made it (`SourcePhoto.key`)."""
SERIAL = "depth_from_image_serial"
"""Custom property of a result's collection: imports count up, so the latest one is the highest."""


@dataclass
class ImportedResult:
    """What one import created: the collection and the objects in it."""

    collection: bpy.types.Collection
    objects: list = field(default_factory=list)
    camera: bpy.types.Object | None = None
    warnings: list = field(default_factory=list)


def short_name(name: str, limit: int = NAME_BYTES) -> str:
    """`name` cut to `limit` UTF-8 bytes at a character boundary (never empty)."""
    cut = name.encode("utf-8")[:limit].decode("utf-8", errors="ignore").strip()
    return cut or "Photo"


def metres_to_scene_units(scene: bpy.types.Scene) -> float:
    """Blender units per metre in `scene` (1000 in a scene whose unit scale is 0.001)."""
    units = scene.unit_settings
    if units.system == "NONE" or units.scale_length <= 0.0:
        return 1.0
    return 1.0 / units.scale_length


def select_only(view_layer: bpy.types.ViewLayer, objects: list) -> None:
    """Make the imported objects the selection, the first one active (as importers do)."""
    for obj in view_layer.objects:
        if obj is not None and obj.select_get(view_layer=view_layer):  # None: removed, not yet synced
            obj.select_set(False, view_layer=view_layer)
    for obj in objects:
        obj.select_set(True, view_layer=view_layer)
    view_layer.objects.active = objects[0]


def blender_from_opencv(vertices: np.ndarray) -> np.ndarray:
    """OpenCV camera frame -> Blender camera-object frame: (x, y, z) -> (x, -y, -z)."""
    return vertices * np.array([1.0, -1.0, -1.0], dtype=vertices.dtype)


def build_mesh(name: str, vertices: np.ndarray, faces: np.ndarray, uvs=None, colors=None) -> bpy.types.Mesh:
    """A mesh from arrays: positions, triangles, per-vertex UVs (loop UVs) and sRGB colours."""
    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(len(vertices))
    mesh.vertices.foreach_set("co", vertices.ravel())
    if len(faces):
        mesh.loops.add(faces.size)
        mesh.loops.foreach_set("vertex_index", faces.ravel())
        mesh.polygons.add(len(faces))
        mesh.polygons.foreach_set("loop_start", np.arange(0, faces.size, 3, dtype=np.int32))
        mesh.polygons.foreach_set("loop_total", np.full(len(faces), 3, dtype=np.int32))
        mesh.polygons.foreach_set("use_smooth", np.ones(len(faces), dtype=bool))
    if uvs is not None and len(faces):
        layer = mesh.uv_layers.new(name="UVMap")
        layer.data.foreach_set("uv", uvs[faces.ravel()].ravel())
    if colors is not None:
        attribute = mesh.color_attributes.new("Col", "BYTE_COLOR", "POINT")
        rgba = np.ones((len(colors), 4), dtype=np.float32)
        rgba[:, :3] = colors / np.float32(255.0)
        attribute.data.foreach_set("color_srgb", rgba.ravel())
        mesh.color_attributes.active_color = attribute
    mesh.update()
    return mesh


def _point_radius(vertices_cv: np.ndarray, camera) -> float:
    """About half the spacing of neighbouring pixels at the median depth."""
    depth = float(np.median(np.abs(vertices_cv[:, 2]))) if len(vertices_cv) else 1.0
    if camera is not None and camera.fx > 0:
        return max(depth / camera.fx * 0.6, 1e-5)
    return max(depth * 1e-3, 1e-5)


# Scene settings an import changes (render size, scene camera), restored on failure.
SCENE_SETTINGS = (
    ("render", "resolution_x"), ("render", "resolution_y"), ("render", "resolution_percentage"),
    ("render", "pixel_aspect_x"), ("render", "pixel_aspect_y"),
)


# The data-block kinds an import creates; whatever is new in them is removed on failure.
CREATED_KINDS = ("collections", "objects", "meshes", "cameras", "materials", "node_groups", "images")


class _Created:
    """What existed before one import, so that a failure anywhere (even inside a helper
    that had made a data-block but not returned it yet) removes every data-block made
    since and puts back the scene settings the import changed."""

    def __init__(self, scene: bpy.types.Scene) -> None:
        self.before = {kind: {block.as_pointer() for block in getattr(bpy.data, kind)} for kind in CREATED_KINDS}
        self.scene = scene
        self.camera = scene.camera
        self.settings = [(owner, key, getattr(getattr(scene, owner), key)) for owner, key in SCENE_SETTINGS]

    def remove_all(self) -> None:
        for owner, key, value in self.settings:
            setattr(getattr(self.scene, owner), key, value)
        self.scene.camera = self.camera
        doomed = [block for kind in CREATED_KINDS for block in getattr(bpy.data, kind)
                  if block.as_pointer() not in self.before[kind]]
        bpy.data.batch_remove(doomed)


def import_result(
    scene: bpy.types.Scene,
    path: str,
    *,
    name: str,
    image: bpy.types.Image | None = None,
    shading: str = "EMISSION",
    create_camera: bool = True,
    view_layer: bpy.types.ViewLayer | None = None,
    key: str = "",
) -> ImportedResult:
    """Create the objects for one result file in a new collection `name` in `scene`, tagged
    with the photo's `key`.

    `image` is the photo to texture with (loaded from the result's image_path when None).
    With a `view_layer`, the new objects become its selection and the first one active.
    On any error every data-block created here is removed and the error re-raised.
    """
    result = read_result(path)
    created = _Created(scene)
    try:
        imported = _create(scene, result, created, name=short_name(name), image=image, shading=shading,
                           create_camera=create_camera)
        _tag(imported, key)
        if view_layer is not None:
            select_only(view_layer, imported.objects)
    except Exception:
        created.remove_all()
        raise
    return imported


def _tag(imported: ImportedResult, key: str) -> None:
    """Mark the result as the photo's latest: its key on the collection and objects, the next serial."""
    serial = max((int(c.get(SERIAL, 0)) for c in bpy.data.collections), default=0) + 1
    imported.collection[PHOTO_KEY] = key
    imported.collection[SERIAL] = serial
    for obj in imported.objects:
        obj[PHOTO_KEY] = key


def _photo_image(result: ResultFile, image: bpy.types.Image | None, created: _Created) -> bpy.types.Image | None:
    """The photo as a Blender image: `image`, else loaded from the result's image_path. None
    when there is none or Blender cannot read it (a HEIC photo the worker could read)."""
    if image is not None:
        return image
    path = result.image_path
    if not path or not os.path.isfile(path):
        return None
    try:
        photo = bpy.data.images.load(path, check_existing=True)
    except RuntimeError:
        return None
    if photo.size[0] == 0:
        if photo.as_pointer() not in created.before["images"]:
            bpy.data.images.remove(photo)
        return None
    return photo


def _paint_filaments(mesh: bpy.types.Mesh, paint, name: str) -> None:
    """A colour relief: one material per filament in slot order (its colour, its number and name),
    each face the material of its filament (sides and base: the first, as the printer prints them)."""
    for number, (colour, word) in enumerate(zip(paint.colors, paint.names), start=1):
        mesh.materials.append(materials.filament_material(f"{name} filament {number} {word}", colour))
    mesh.polygons.foreach_set("material_index", np.maximum(paint.faces, 0).astype(np.int32))
    mesh.update()


def _create(scene, result: ResultFile, created: _Created, *, name, image, shading, create_camera) -> ImportedResult:
    collection = bpy.data.collections.new(name)
    scene.collection.children.link(collection)
    imported = ImportedResult(collection=collection)
    kind = result.kind
    vertices = result.vertices
    if kind != "solid":
        vertices = blender_from_opencv(vertices)
    faces = result.faces if kind != "points" else np.zeros((0, 3), np.int32)
    label = {"mesh": name, "points": f"{name} points", "solid": f"{name} solid"}[kind]
    mesh = build_mesh(label, vertices, faces, result.uvs, result.colors)
    obj = bpy.data.objects.new(label, mesh)
    collection.objects.link(obj)
    imported.objects.append(obj)
    # Every result comes in at its true size in the scene's own units, whatever they are: the
    # object is scaled (a solid's millimetres by 0.001 first), and the scene's unit settings are
    # left alone. Scaling about the camera centre keeps what the photo's camera sees.
    to_scene = metres_to_scene_units(scene)
    obj.scale = ((0.001 if kind == "solid" else 1.0) * to_scene,) * 3

    photo = _photo_image(result, image, created) if kind != "solid" else None
    if kind == "mesh":
        if photo is None and result.image_path and result.colors is not None:
            imported.warnings.append(f"Blender cannot read {os.path.basename(result.image_path)} as a "
                                     "texture: the mesh shows its vertex colours")
            material = materials.color_attribute_material(f"{name} photo", "Col", shading)
        else:
            material = materials.photo_material(f"{name} photo", photo, shading)
        mesh.materials.append(material)
    elif kind == "points":
        material = materials.color_attribute_material(f"{name} points", "Col", shading)
        radius = _point_radius(result.vertices, result.camera)
        group = materials.points_node_group(f"{name} points", material, radius)
        modifier = obj.modifiers.new("Mesh to Points", "NODES")
        modifier.node_group = group
    elif result.paint is not None:
        _paint_filaments(mesh, result.paint, name)
        obj[FILAMENTS_KEY] = json.dumps({"colors": result.paint.colors.tolist(), "names": list(result.paint.names)})
    else:
        material = materials.color_attribute_material(f"{name} solid", "Col", "PRINCIPLED")
        mesh.materials.append(material)

    if create_camera and kind != "solid" and result.camera is not None:
        depths = -vertices[:, 2] if len(vertices) else np.ones(1, np.float32)
        camera_obj = scene_camera.create_camera(
            scene, f"{name} camera", result.camera, photo,
            clip=(float(depths.min()) * to_scene, float(depths.max()) * to_scene),
        )
        collection.objects.link(camera_obj)
        imported.objects.append(camera_obj)
        imported.camera = camera_obj
    return imported
