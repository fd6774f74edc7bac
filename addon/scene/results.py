"""A photo's results in the scene: a re-run replaces the photo's previous result (its
collection, objects, camera and their data) unless the user keeps earlier results, and every
result's collection and objects share one name ("coffee.001" holds "coffee.001 points").

The new result is created first and the old one removed only once that succeeded, so a
failed re-run leaves the previous result as it was.
"""

from __future__ import annotations

import bpy

from .clip_import import import_clip_result
from .importer import NAME_BYTES, PHOTO_KEY, SERIAL, ImportedResult, import_result, short_name

#: What a result's data-blocks are called after its name ("coffee", "coffee points", ...).
SUFFIXES = ("", " points", " solid", " camera", " photo")
#: The kinds of data-block a result names; a free name is free in all of them.
NAMED_KINDS = ("collections", "objects", "meshes", "cameras", "materials", "node_groups")


def free_name(name: str) -> str:
    """`name`, else `name.001`, `name.002`, ...: the first under which no collection, object or
    data-block of a result (with any of `SUFFIXES`) exists yet."""
    base = short_name(name, NAME_BYTES - 4)  # room for ".001" within the importer's limit
    taken = {block.name for kind in NAMED_KINDS for block in getattr(bpy.data, kind)}
    number = 0
    while True:
        candidate = base if number == 0 else f"{base}.{number:03d}"
        if not any(candidate + suffix in taken for suffix in SUFFIXES):
            return candidate
        number += 1


def latest_result(scene: bpy.types.Scene, key: str):
    """The collection of the photo's latest result in `scene` (the highest serial), or None."""
    if not key:
        return None
    found = [collection for collection in scene.collection.children_recursive
             if collection.get(PHOTO_KEY) == key]
    return max(found, key=lambda collection: int(collection.get(SERIAL, 0)), default=None)


def _data_of(objects: list) -> list:
    """The meshes, cameras, materials and node groups the result's objects use."""
    blocks = []
    for obj in objects:
        if obj.data is not None:
            blocks.append(obj.data)
            blocks.extend(material for material in getattr(obj.data, "materials", []) if material is not None)
        blocks.extend(modifier.node_group for modifier in obj.modifiers
                      if modifier.type == "NODES" and modifier.node_group is not None)
    return list({block.as_pointer(): block for block in blocks}.values())


def remove_result(collection: bpy.types.Collection) -> None:
    """Remove a result: its objects, then whichever of their data nothing else uses, then the
    collection (unless the user put other things into it: then only its tag goes)."""
    key = collection.get(PHOTO_KEY)
    objects = [obj for obj in collection.objects if obj.get(PHOTO_KEY) == key]
    data = _data_of(objects)
    bpy.data.batch_remove(objects)
    for _ in range(2):  # materials and node groups lose their last user once the meshes are gone
        unused = [block for block in data if block.users == 0]
        data = [block for block in data if block.users > 0]
        bpy.data.batch_remove(unused)
    if len(collection.objects) or len(collection.children):
        del collection[PHOTO_KEY]
    else:
        bpy.data.collections.remove(collection)


def rename_result(imported: ImportedResult, name: str) -> None:
    """Give a result's collection, objects and their data the name `name` (suffixes kept)."""
    old = imported.collection.name
    blocks = [imported.collection, *imported.objects, *_data_of(imported.objects)]
    for block in blocks:
        if block.name.startswith(old):
            block.name = name + block.name[len(old):]


def import_photo_result(scene: bpy.types.Scene, path: str, *, name: str, key: str, keep_previous: bool = False,
                        **options) -> ImportedResult:
    """Import a result file of the photo `key` (options as `import_result`): beside its earlier
    results with `keep_previous`, else in place of its latest one, under that one's name."""
    previous = None if keep_previous else latest_result(scene, key)
    imported = import_result(scene, path, name=free_name(name), key=key, **options)
    if previous is not None:
        remove_result(previous)
        rename_result(imported, free_name(name))
    return imported


def import_clip(scene: bpy.types.Scene, stats: dict, *, name: str, key: str, keep_previous: bool = False,
                **options) -> ImportedResult:
    """Import a clip job's result (options as `import_clip_result`), in place of the clip's latest
    result unless `keep_previous`, as `import_photo_result` does for a photo."""
    previous = None if keep_previous else latest_result(scene, key)
    imported = import_clip_result(scene, stats, name=free_name(name), key=key, **options)
    if previous is not None:
        remove_result(previous)
        rename_result(imported, free_name(name))
    return imported
