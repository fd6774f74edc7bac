"""Which photo file the worker reads, from a path or from an image loaded in Blender (a movie or
an image sequence, or a video file, is a clip).

A packed image has no file on disk, so its original bytes (EXIF included) are written to
the run's temporary folder; a generated image, one painted but not saved, or one in a
format the worker cannot read (EXR, HDR, ...) is written there as a PNG of its pixels. The worker only ever sees a file path, and the
user's image is never changed.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import bpy
import numpy as np

from ppd_core.options import VIDEO_SUFFIXES

EXTENSIONS = {"PNG": ".png", "JPEG": ".jpg", "TIFF": ".tif", "WEBP": ".webp", "BMP": ".bmp",
              "OPEN_EXR": ".exr", "TARGA": ".tga"}


# Formats Blender reads but the worker (Pillow) does not: their pixels are sent as a PNG.
BLENDER_ONLY_FORMATS = {"OPEN_EXR", "OPEN_EXR_MULTILAYER", "HDR", "CINEON", "DPX"}


class PhotoError(Exception):
    """The chosen photo cannot be used; the message says which and why."""


@dataclass(frozen=True)
class SourcePhoto:
    """The file for the worker, the name of the Blender image to texture with ("" for a
    file: the importer loads it), a display name. A name, not the image itself: a Python
    reference to a data-block can go stale while the run works (undo, deletion)."""

    path: str
    image_name: str
    name: str
    clip: bool = False  # a movie, or an image sequence's folder: the video model runs on its frames

    @property
    def key(self) -> str:
        """What makes two runs the same photo: the Blender image's name, else the file's path."""
        return f"image:{self.image_name}" if self.image_name else f"file:{os.path.normcase(self.path)}"

    def image(self) -> bpy.types.Image | None:
        """The Blender image, if it still exists."""
        return bpy.data.images.get(self.image_name) if self.image_name else None


def display_name(filename: str) -> str:
    """The photo's name without folder and extension, for objects and collections."""
    stem = os.path.splitext(os.path.basename(filename))[0]
    return stem.strip() or "Photo"


def srgb_from_linear(values: np.ndarray) -> np.ndarray:
    """Scene-linear values (a float image's pixels) as sRGB display values in [0, 1]."""
    values = np.clip(values, 0.0, 1.0)
    return np.where(values <= 0.0031308, values * 12.92, 1.055 * np.power(values, 1.0 / 2.4) - 0.055)


def _pixels_copy(image: bpy.types.Image, folder: str) -> str:
    """Write the image's current pixels as an 8-bit sRGB PNG through a throw-away image."""
    width, height = image.size
    if width == 0 or height == 0:
        raise PhotoError(f"Image '{image.name}' has no pixels Blender can read: reload or replace it")
    pixels = np.empty(width * height * 4, np.float32)
    image.pixels.foreach_get(pixels)
    if image.is_float:  # float buffers hold scene-linear light; a photo file holds sRGB values
        rgba = pixels.reshape(-1, 4)
        rgba[:, :3] = srgb_from_linear(rgba[:, :3])
    path = os.path.join(folder, _safe_stem(image) + ".png")
    copy = bpy.data.images.new("ppd photo copy", width, height, alpha=True)
    try:
        copy.pixels.foreach_set(pixels)
        copy.filepath_raw = path
        copy.file_format = "PNG"
        copy.save()
    finally:
        bpy.data.images.remove(copy)
    return path


def _safe_stem(image: bpy.types.Image) -> str:
    return re.sub(r"[^\w.-]+", "_", display_name(image.name)) or "photo"


def _packed_copy(image: bpy.types.Image, folder: str) -> str:
    extension = os.path.splitext(image.filepath)[1] or EXTENSIONS.get(image.file_format, ".png")
    path = os.path.join(folder, _safe_stem(image) + extension)
    with open(path, "wb") as handle:
        handle.write(image.packed_file.data)
    return path


def _photo_file(path: str) -> SourcePhoto:
    """A photo file the user named ("//" relative to the saved .blend)."""
    if path.startswith("//") and not bpy.data.is_saved:
        raise PhotoError(f"{path} is relative to the .blend file, which is not saved yet: save it, or choose the "
                         "photo again")
    path = os.path.abspath(bpy.path.abspath(path))
    if not os.path.isfile(path):
        raise PhotoError(f"Photo not found: {path}")
    return SourcePhoto(path=path, image_name="", name=display_name(path), clip=is_clip_file(path))


def is_clip_file(path: str) -> bool:
    """A video file: the video model runs on its frames, and the result follows the timeline."""
    return os.path.splitext(path)[1].lower() in VIDEO_SUFFIXES


def _clip_of(image: bpy.types.Image, name: str) -> SourcePhoto:
    """A movie or image sequence loaded in Blender as a clip: the movie file, or the sequence's folder
    (all its images, in name order, are the frames)."""
    path = os.path.abspath(bpy.path.abspath(image.filepath, library=image.library)) if image.filepath else ""
    if image.source == "SEQUENCE":
        path = os.path.dirname(path)
    if not path or not os.path.exists(path):
        raise PhotoError(f"Image '{image.name}' has no {image.source.lower()} on disk ({path or 'no path'}): "
                         "find or reload it")
    return SourcePhoto(path=path, image_name=image.name, name=name, clip=True)


def resolve_photos(settings, temp_folder: str) -> list:
    """The photos named by the sidebar settings (one, or the chosen files); raises PhotoError with the fix."""
    if settings.photo_source == "FILES":
        if not len(settings.photo_files):
            raise PhotoError("No photos chosen: pick photo files or a folder in the Depth panel")
        return [_photo_file(item.path) for item in settings.photo_files]
    return [resolve_photo(settings, temp_folder)]


def resolve_photo(settings, temp_folder: str) -> SourcePhoto:
    """The one photo named by the sidebar settings (a file or a Blender image); raises PhotoError with the fix."""
    if settings.photo_source == "FILE":
        if not settings.photo_path:
            raise PhotoError("No photo chosen: pick a photo file in the Depth panel")
        return _photo_file(settings.photo_path)

    image = settings.photo_image
    if image is None:
        raise PhotoError("No image chosen: pick a loaded image in the Depth panel")
    name = display_name(image.name)
    if image.source in ("SEQUENCE", "MOVIE"):
        return _clip_of(image, name)
    if image.source == "TILED":
        raise PhotoError(f"Image '{image.name}' is a tiled image: choose a single photo")
    if image.source == "VIEWER":
        raise PhotoError(f"Image '{image.name}' is a render or viewer result: save it as a file first")
    if image.source == "GENERATED" or image.is_dirty or image.file_format in BLENDER_ONLY_FORMATS:
        return SourcePhoto(path=_pixels_copy(image, temp_folder), image_name=image.name, name=name)
    if image.packed_file is not None:
        return SourcePhoto(path=_packed_copy(image, temp_folder), image_name=image.name, name=name)
    path = os.path.abspath(bpy.path.abspath(image.filepath, library=image.library)) if image.filepath else ""
    if not path or not os.path.isfile(path):
        raise PhotoError(f"Image '{image.name}' has no file on disk ({path or 'no path'}): "
                         "find or save it, or pack it into the .blend")
    return SourcePhoto(path=path, image_name=image.name, name=name)
