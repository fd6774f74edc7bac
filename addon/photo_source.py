"""Which photo file the worker reads, from a path or from an image loaded in Blender.

A packed image has no file on disk, so its original bytes (EXIF included) are written to
the run's temporary folder; the worker only ever sees a file path.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import bpy

EXTENSIONS = {"PNG": ".png", "JPEG": ".jpg", "TIFF": ".tif", "WEBP": ".webp", "BMP": ".bmp",
              "OPEN_EXR": ".exr", "TARGA": ".tga"}


class PhotoError(Exception):
    """The chosen photo cannot be used; the message says which and why."""


@dataclass(frozen=True)
class Photo:
    """The file for the worker, the Blender image to texture with (if any), a display name."""

    path: str
    image: bpy.types.Image | None
    name: str


def display_name(filename: str) -> str:
    """The photo's name without folder and extension, for objects and collections."""
    stem = os.path.splitext(os.path.basename(filename))[0]
    return stem.strip() or "Photo"


def _packed_copy(image: bpy.types.Image, folder: str) -> str:
    extension = os.path.splitext(image.filepath)[1] or EXTENSIONS.get(image.file_format, ".png")
    safe = re.sub(r"[^\w.-]+", "_", display_name(image.name)) or "photo"
    path = os.path.join(folder, safe + extension)
    with open(path, "wb") as handle:
        handle.write(image.packed_file.data)
    return path


def resolve_photo(settings, temp_folder: str) -> Photo:
    """The photo named by the sidebar settings; raises PhotoError with the fix."""
    if settings.photo_source == "FILE":
        if not settings.photo_path:
            raise PhotoError("No photo chosen: pick a photo file in the Depth panel")
        path = os.path.abspath(bpy.path.abspath(settings.photo_path))
        if not os.path.isfile(path):
            raise PhotoError(f"Photo not found: {path}")
        return Photo(path=path, image=None, name=display_name(path))

    image = settings.photo_image
    if image is None:
        raise PhotoError("No image chosen: pick a loaded image in the Depth panel")
    if image.packed_file is not None:
        return Photo(path=_packed_copy(image, temp_folder), image=image, name=display_name(image.name))
    path = os.path.abspath(bpy.path.abspath(image.filepath, library=image.library)) if image.filepath else ""
    if image.source != "FILE" or not path or not os.path.isfile(path):
        raise PhotoError(f"Image '{image.name}' has no file on disk: save it or pack it into the .blend first")
    return Photo(path=path, image=image, name=display_name(image.name))
