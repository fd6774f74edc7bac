"""The one size gate for every image file the product reads: photo, depth map, metric
reference, texture.

The width and height are read from the file's header, before any decoder runs, and
compared with `MAX_IMAGE_PIXELS`, so an oversized file is one clear line, not Pillow's
decompression-bomb error, OpenCV's `CV_IO_MAX_IMAGE_PIXELS` assertion or an allocation of
gigabytes. Pillow reads the headers it knows; TIFFs Pillow cannot decode (3-channel or
float64 ones, which OpenCV reads as depth) are sized from their first directory, OpenEXR
from its `dataWindow`, `.npy` arrays and NPZ members from their header. It lives at the
bottom of the imports (`mesh/` imports nothing of `ppd_core`) because the texture writer
reads images too.
"""

from __future__ import annotations

import re
import struct
import warnings
from pathlib import Path
from typing import BinaryIO, Optional, Union

MAX_IMAGE_PIXELS = 100_000_000
"""Largest image accepted (100 MP), below Pillow's decompression-bomb error (179 MP) and
OpenCV's own cap (1 GP), so theirs never fire first."""

_EXR_MAGIC = b"\x76\x2f\x31\x01"
_EXR_HEADER_LIMIT = 1 << 20  # attributes past the first MB: not a header we read
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def image_size(path: Union[str, Path]) -> Optional[tuple[int, int]]:
    """(width, height) from the file's header, or None when no reader here knows the
    format; an .npy array gives (elements, 1). Raises `ImageTooLarge` when Pillow itself
    refuses the header as a decompression bomb, OSError when the file cannot be read."""
    path = Path(path)
    with path.open("rb") as handle:
        head = handle.read(16)
    if path.suffix.lower() == ".npy":
        return _npy_size(path)
    if head.startswith(_EXR_MAGIC):
        return _exr_size(path)
    size = _pillow_size(path)
    if size is None and head[:4] in _TIFF_MAGICS:
        return _tiff_size(path, head)
    return size


class ImageTooLarge(ValueError):
    """An image file larger than `MAX_IMAGE_PIXELS`; the message names the file."""


def check_image_size(path: Union[str, Path]) -> Optional[tuple[int, int]]:
    """(width, height) of an image file within `MAX_IMAGE_PIXELS`, or None for a format no
    reader here knows; `ImageTooLarge` (one line naming the file) above the limit."""
    size = image_size(path)
    if size is not None:
        _check_pixels(str(path), *size)
    return size


def check_array_size(handle: BinaryIO, name: str) -> None:
    """The same limit for the .npy array whose header `handle` is at (an NPZ member, named
    `name` in the message), before its data is read: a compressed NPZ can unpack gigabytes."""
    elements = _npy_elements(handle)
    if elements is not None:
        _check_pixels(name, elements, 1)


def _check_pixels(name: str, width: int, height: int) -> None:
    if width * height > MAX_IMAGE_PIXELS:
        shape = f"{width}x{height}" if height > 1 else f"an array of {width} values"
        raise ImageTooLarge(f"{name}: {shape} is {width * height / 1e6:.0f} MP, more than the "
                            f"{MAX_IMAGE_PIXELS // 1_000_000} MP limit of an image")


def _pillow_size(path: Path) -> Optional[tuple[int, int]]:
    from PIL import Image, UnidentifiedImageError  # Pillow opens lazily: the header only

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the decompression-bomb warning, "corrupt EXIF"
            with Image.open(path) as image:
                return image.size
    except Image.DecompressionBombError as error:  # over twice Pillow's own limit; its message has the count
        asked = re.search(r"\((\d+) pixels\)", str(error))
        size = f"{int(asked.group(1)) / 1e6:.0f} MP" if asked else "over 179 MP"
        raise ImageTooLarge(f"{path}: {size}, more than the {MAX_IMAGE_PIXELS // 10**6} MP limit of an image") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, struct.error):
        return None


def _tiff_size(path: Path, head: bytes) -> Optional[tuple[int, int]]:
    """The first directory's ImageWidth and ImageLength, read with Pillow's TIFF tag reader."""
    from PIL import TiffImagePlugin

    try:
        big = head[2] == 43
        directory = TiffImagePlugin.ImageFileDirectory_v2(head[:16] if big else head[:8])
        with path.open("rb") as handle:
            handle.seek(directory.next)
            directory.load(handle)
        return int(directory[256]), int(directory[257])
    except (KeyError, OSError, ValueError, SyntaxError, EOFError, struct.error, TypeError):
        return None


def _exr_size(path: Path) -> Optional[tuple[int, int]]:
    """The `dataWindow` (box2i: xMin, yMin, xMax, yMax) of an OpenEXR header: name NUL,
    type NUL, int32 size, value; an empty name ends the header."""
    with path.open("rb") as handle:
        header = handle.read(_EXR_HEADER_LIMIT)
    at = 8  # magic, version
    while at < len(header):
        name_end = header.find(b"\x00", at)
        if name_end < 0 or name_end == at:
            return None
        type_end = header.find(b"\x00", name_end + 1)
        if type_end < 0 or type_end + 5 > len(header):
            return None
        name, kind = header[at:name_end], header[name_end + 1:type_end]
        (length,) = struct.unpack_from("<i", header, type_end + 1)
        value = type_end + 5
        if name == b"dataWindow" and kind == b"box2i" and length == 16 and value + 16 <= len(header):
            x_min, y_min, x_max, y_max = struct.unpack_from("<4i", header, value)
            return max(0, x_max - x_min + 1), max(0, y_max - y_min + 1)
        if length < 0:
            return None
        at = value + length
    return None


def _npy_size(path: Path) -> Optional[tuple[int, int]]:
    """(elements, 1) of an .npy array, from its header."""
    with path.open("rb") as handle:
        elements = _npy_elements(handle)
    return None if elements is None else (elements, 1)


def _npy_elements(handle: BinaryIO) -> Optional[int]:
    """The element count an .npy header at `handle` declares; None when it is no .npy header."""
    import numpy as np

    try:
        version = np.lib.format.read_magic(handle)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read_header is None:
            return None
        shape, _, _ = read_header(handle)
    except (ValueError, OSError, EOFError, SyntaxError, TypeError):
        return None
    count = 1
    for side in shape:
        count *= int(side)
    return count
