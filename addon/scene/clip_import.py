"""A clip's result in Blender: one object whose geometry follows the timeline, textured by the movie,
seen by the clip's camera.

The worker writes every frame as its own USD file and one stage that plays them (`mesh.usd`);
Blender's own USD importer makes of the stage one object with a Mesh Sequence Cache modifier,
which reads each frame's file when the frame is shown, whatever its topology. Measured for
100 frames of 47k vertices (benchmarks/clip_blender_import.py): the import takes 0.1 s and
23 MB, a frame shows in 36 ms; a Blender mesh per frame took 17.6 s and 673 MB. The stage's
time code is the clip's frame number + 1, Blender's numbering of a movie's frames, so the
movie texture (its image user refreshed every frame) and the geometry stay in step.

The importer puts a y-up stage's object under a quarter turn about X; the camera gets the
same transform, so that it sees the object as the clip's camera saw the scene. On any error
everything made here is removed again (`importer._Created`).
"""

from __future__ import annotations

import os

import bpy

from ppd_core.geometry.camera import CameraRecord

from . import camera as scene_camera
from . import materials
from .importer import ImportedResult, _Created, _tag, metres_to_scene_units, select_only, short_name

USD_UV_MAP = "st"  # the name Blender's USD importer gives the stage's UVs


def _movie_image(path: str, image: bpy.types.Image | None, frames: int) -> bpy.types.Image | None:
    """The clip as a Blender movie image: the user's own, else loaded from `path` (None when Blender
    cannot read it)."""
    if image is None and os.path.isfile(path):
        try:
            image = bpy.data.images.load(path, check_existing=True)
        except RuntimeError:
            return None
    return image


def _movie_material(name: str, image: bpy.types.Image | None, frames: int, shading: str) -> bpy.types.Material:
    """The photo material on the stage's UVs, its texture following the timeline frame by frame."""
    material = materials.photo_material(name, image, shading)
    for node in material.node_tree.nodes:
        if node.type == "UVMAP":
            node.uv_map = USD_UV_MAP
        elif node.type == "TEX_IMAGE" and image is not None and image.source in ("MOVIE", "SEQUENCE"):
            node.image_user.frame_duration = frames
            node.image_user.frame_start = 1
            node.image_user.frame_offset = 0
            node.image_user.use_auto_refresh = True
    return material


def import_clip_result(scene: bpy.types.Scene, stats: dict, *, name: str, key: str = "",
                       image: bpy.types.Image | None = None, shading: str = "EMISSION", create_camera: bool = True,
                       view_layer: bpy.types.ViewLayer | None = None) -> ImportedResult:
    """Import a clip job's result (its stats: `stage`, `clip` record) into a new collection `name`."""
    record = stats["clip"]
    created = _Created(scene)
    try:
        collection = bpy.data.collections.new(short_name(name))
        scene.collection.children.link(collection)
        imported = ImportedResult(collection=collection)
        before = {obj.as_pointer() for obj in bpy.data.objects}
        bpy.ops.wm.usd_import(filepath=stats["stage"], set_frame_range=True, import_cameras=False,
                              import_lights=False, import_materials=False)
        new = [obj for obj in bpy.data.objects if obj.as_pointer() not in before]
        surface = next((obj for obj in new if obj.type in ("MESH", "POINTCLOUD")), None)
        if surface is None:
            raise RuntimeError(f"{stats['stage']}: Blender's USD importer made no mesh of it")
        for obj in new:  # out of wherever the importer put them, into the result's collection
            for owner in list(obj.users_collection):
                owner.objects.unlink(obj)
            collection.objects.link(obj)
        surface.name = short_name(name)
        imported.objects = [surface] + [obj for obj in new if obj is not surface]
        to_scene = metres_to_scene_units(scene)
        surface.scale = tuple(value * to_scene for value in surface.scale)
        movie = _movie_image(record["clip"], image, len(record["frames"]))
        surface.data.materials.append(_movie_material(f"{name} photo", movie, record["frames"][-1] + 1, shading))
        if create_camera:
            spec = CameraRecord(**record["camera"])
            near, far = record["depth"]["preview_range_m"]
            camera = scene_camera.create_camera(scene, f"{name} camera", spec, movie,
                                                clip=(near * to_scene, far * to_scene))
            camera.matrix_world = surface.matrix_world.normalized()
            collection.objects.link(camera)
            imported.camera = camera
            imported.objects.append(camera)
        _tag(imported, key)
        if view_layer is not None:
            select_only(view_layer, imported.objects[:1])
    except Exception:
        created.remove_all()
        raise
    return imported
