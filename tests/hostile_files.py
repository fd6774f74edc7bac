"""Files built to break the product: image headers that claim more pixels than they hold
(PNG, TIFF, OpenEXR, .npy), each a few hundred bytes on disk."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np


def png_claiming(path: Path, width: int, height: int) -> Path:
    """A greyscale PNG whose header says width x height; its pixel data is a few bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0)  # 16-bit grey, as depth PNGs are
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
                     + chunk(b"IEND", b""))
    return path


def tiff_claiming(path: Path, width: int, height: int, channels: int = 1) -> Path:
    """An uncompressed float32 TIFF whose first directory says width x height x channels
    (3 channels: a TIFF Pillow cannot decode, OpenCV can); one strip of 16 bytes."""
    tags = [(256, 4, width), (257, 4, height), (258, 3, 32), (259, 3, 1), (262, 3, 1 if channels == 1 else 2),
            (273, 4, 0), (277, 3, channels), (278, 4, height), (279, 4, 16), (339, 3, 3)]
    directory_at = 8
    data_at = directory_at + 2 + 12 * len(tags) + 4
    entries = b"".join(struct.pack("<HHII", tag, kind, 1, data_at if tag == 273 else value)
                       if kind == 4 else struct.pack("<HHIHH", tag, kind, 1, value, 0) for tag, kind, value in tags)
    path.write_bytes(b"II*\x00" + struct.pack("<I", directory_at) + struct.pack("<H", len(tags)) + entries
                     + struct.pack("<I", 0) + b"\x00" * 16)
    return path


def exr_claiming(path: Path, width: int, height: int) -> Path:
    """An OpenEXR header with one float channel Z whose dataWindow is width x height; no pixels."""

    def attribute(name: bytes, kind: bytes, value: bytes) -> bytes:
        return name + b"\x00" + kind + b"\x00" + struct.pack("<i", len(value)) + value

    window = struct.pack("<4i", 0, 0, width - 1, height - 1)
    header = (attribute(b"channels", b"chlist", b"Z\x00" + struct.pack("<iB3xii", 2, 0, 1, 1) + b"\x00")
              + attribute(b"compression", b"compression", b"\x00")
              + attribute(b"dataWindow", b"box2i", window) + attribute(b"displayWindow", b"box2i", window)
              + attribute(b"lineOrder", b"lineOrder", b"\x00") + attribute(b"pixelAspectRatio", b"float",
                                                                           struct.pack("<f", 1.0))
              + attribute(b"screenWindowCenter", b"v2f", struct.pack("<2f", 0, 0))
              + attribute(b"screenWindowWidth", b"float", struct.pack("<f", 1.0)) + b"\x00")
    path.write_bytes(b"\x76\x2f\x31\x01" + struct.pack("<I", 2) + header + b"\x00" * 64)
    return path


def npy_claiming(path: Path, height: int, width: int) -> Path:
    """An .npy header for a float32 (height, width) array, with 16 bytes of data."""
    with path.open("wb") as handle:
        np.lib.format.write_array_header_1_0(handle, {"descr": "<f4", "fortran_order": False,
                                                      "shape": (height, width)})
        handle.write(b"\x00" * 16)
    return path


def folder_state(folder: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every file and folder under `folder` (hidden ones too): {relative path: (size, mtime, content hash)},
    to show that a refused run wrote, changed and left behind nothing."""
    import hashlib

    state = {}
    for path in sorted(Path(folder).rglob("*")):
        info = path.lstat()
        digest = hashlib.sha1(path.read_bytes()).digest() if path.is_file() and not path.is_symlink() else b""
        state[str(path.relative_to(folder))] = (info.st_size, info.st_mtime_ns, digest)
    return state


def npz_claiming(path: Path, height: int, width: int, compressed_data: bool = False) -> Path:
    """A result-file NPZ whose 'depth' member declares a float32 (height, width) array: 16
    bytes of data, or with `compressed_data` all of it, zeros, deflated to a thousandth."""
    import io
    import zipfile

    def member(shape: tuple, descr: str, data: bytes) -> bytes:
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {"descr": descr, "fortran_order": False, "shape": shape})
        return header.getvalue() + data

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED if compressed_data else zipfile.ZIP_STORED) as npz:
        npz.writestr("format.npy", member((), "<U9", "ppd-npz-1".encode("utf-32-le")))
        data = bytes(4 * height * width) if compressed_data else b"\x00" * 16
        npz.writestr("depth.npy", member((height, width), "<f4", data))
    return path
