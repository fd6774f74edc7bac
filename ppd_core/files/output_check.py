"""Is an output that is already there complete? A cheap structural check of each file by its
type, so that `--skip-existing` keeps what is whole and redoes what was cut short or cannot
be read (a copy or sync interrupted, a disk that filled up under another program).

`output_problem(kind, path)` is None for a complete output, `MISSING` when none of its files
is there, else one line saying what is wrong. Each output kind has its check in `CHECKS`,
next to its writer in `ppd_core.files.outputs.ENCODERS`: a new kind needs both. The checks
read headers and sizes (STL, GLB, PLY, EXR), zip directories and CRCs (3MF, NPZ), or decode
the picture (PNG), never the whole geometry.
"""

from __future__ import annotations

import json
import math
import re
import struct
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Callable, Optional

from ppd_core.options import output_files

MISSING = "missing"
"""`output_problem`'s answer when none of the output's files exists."""

Check = Callable[[list[Path]], Optional[str]]


def _size_words(found: int, expected: int) -> str:
    return f"cut short: {found} of {expected} bytes" if found < expected else f"{found - expected} bytes too many"


def stl_problem(path: Path) -> Optional[str]:
    """Binary STL: 84 + 50 bytes a triangle of its header's count; ASCII: `solid` ... `endsolid`."""
    size = path.stat().st_size
    with path.open("rb") as file:
        head = file.read(84)
        if len(head) == 84:
            (triangles,) = struct.unpack_from("<I", head, 80)
            if size == 84 + 50 * triangles:
                return None if triangles else "holds no triangles"
        if head.startswith(b"solid"):
            file.seek(max(0, size - 256))
            lines = file.read().rstrip().splitlines()
            if lines and lines[-1].lstrip().startswith(b"endsolid"):
                return None
            return "an ASCII STL without its closing endsolid line (cut short)"
    if len(head) < 84:
        return _size_words(size, 84)
    expected = 84 + 50 * triangles
    if size < expected:
        return f"{size} bytes, but its header counts {triangles} triangles ({expected} bytes): cut short"
    return f"{size} bytes, but its header counts {triangles} triangles ({expected} bytes)"


def zip_problem(path: Path, members: tuple[str, ...]) -> Optional[str]:
    """A zip archive (3MF, NPZ): its directory readable, every member's CRC right, `members` there."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
            names = set(archive.namelist())
    # zipfile raises NotImplementedError for a member compressed by a method it does not know
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, NotImplementedError) as error:
        return f"not a readable zip archive (cut short?): {error}"
    if bad is not None:
        return f"its member {bad} is damaged"
    lacking = [name for name in members if name not in names]
    return f"lacks {', '.join(lacking)}" if lacking else None


_PLY_SIZES = {"char": 1, "int8": 1, "uchar": 1, "uint8": 1, "short": 2, "int16": 2, "ushort": 2, "uint16": 2,
              "int": 4, "int32": 4, "uint": 4, "uint32": 4, "float": 4, "float32": 4, "double": 8, "float64": 8}


def _ply_header(data: bytes) -> tuple[str, list, int]:
    """(format, [(element name, count, [property (count type or None, value type)])], body offset)."""
    end = data.find(b"end_header")
    newline = data.find(b"\n", end)
    if not data.startswith(b"ply") or end < 0 or newline < 0:
        raise ValueError("no complete PLY header")
    fmt, elements = "", []
    for line in data[:end].decode("ascii", "replace").splitlines()[1:]:
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format":
            fmt = words[1]
        elif words[0] == "element":
            elements.append((words[1], int(words[2]), []))
        elif words[0] == "property" and elements:
            listed = words[1] == "list"
            types = (words[2], words[3]) if listed else (None, words[1])
            if any(kind is not None and kind not in _PLY_SIZES for kind in types):
                raise ValueError(f"unknown property type in {line!r}")
            elements[-1][2].append(types)
    return fmt, elements, newline + 1


def _ply_body_size(data: bytes, at: int, elements: list, little: bool) -> Optional[int]:
    """Bytes of a binary PLY's body, walking list properties; None when the file ends first.
    A list element of one list property whose lists all have the first one's length (a
    triangle mesh) is checked at once with numpy."""
    import numpy as np

    start = at
    for _, count, properties in elements:
        fixed = sum(_PLY_SIZES[value] for length, value in properties if length is None)
        lists = [(length, value) for length, value in properties if length is not None]
        if not lists:
            at += count * fixed
            continue
        if len(properties) == 1 and count:
            length, value = lists[0]
            width = _PLY_SIZES[length]
            if at + width > len(data):
                return None
            first = int.from_bytes(data[at:at + width], "little" if little else "big")
            stride = width + first * _PLY_SIZES[value]
            if at + count * stride <= len(data):
                counts = np.frombuffer(data, dtype=np.uint8, count=count * stride, offset=at).reshape(count, stride)
                if (counts[:, :width] == counts[0, :width]).all():
                    at += count * stride
                    continue
        for _ in range(count):  # lists of several lengths: element by element
            for length, value in properties:
                if length is None:
                    at += _PLY_SIZES[value]
                    continue
                width = _PLY_SIZES[length]
                if at + width > len(data):
                    return None
                at += width + int.from_bytes(data[at:at + width], "little" if little else "big") * _PLY_SIZES[value]
    return at - start if at <= len(data) else None


def ply_problem(path: Path) -> Optional[str]:
    """PLY: a complete header, then exactly the body its elements and properties make."""
    data = path.read_bytes()
    try:
        fmt, elements, body = _ply_header(data)
    except ValueError as error:
        return f"not a readable PLY ({error})"
    if fmt == "ascii":
        rows = sum(count for _, count, _ in elements)
        found = len([line for line in data[body:].splitlines() if line.strip()])
        return None if found >= rows and data.endswith(b"\n") else f"cut short: {found} of {rows} lines"
    if fmt not in ("binary_little_endian", "binary_big_endian"):
        return f"unknown PLY format {fmt!r}"
    needed = _ply_body_size(data, body, elements, fmt == "binary_little_endian")
    if needed is None:
        return f"cut short: the body ends within its elements ({len(data) - body} bytes)"
    return None if needed == len(data) - body else _size_words(len(data) - body, needed)


GLB_MAGIC, GLB_JSON, GLB_BIN = b"glTF", 0x4E4F534A, 0x004E4942


def glb_problem(path: Path) -> Optional[str]:
    """Binary glTF: the header's length is the file's, its chunks fill it, the JSON parses and
    the binary chunk holds the buffer the JSON names."""
    data = path.read_bytes()
    if len(data) < 12 or data[:4] != GLB_MAGIC:
        return "not a binary glTF (no glTF header)"
    version, length = struct.unpack_from("<II", data, 4)
    if version != 2:
        return f"glTF version {version}, not 2"
    if length != len(data):
        return _size_words(len(data), length) + " (by its header)"
    chunks, at = {}, 12
    while at + 8 <= len(data):
        size, kind = struct.unpack_from("<II", data, at)
        chunks.setdefault(kind, data[at + 8:at + 8 + size])
        at += 8 + size
    if at != len(data) or GLB_JSON not in chunks:
        return "its chunks do not fill the file"
    try:
        gltf = json.loads(chunks[GLB_JSON])
    except ValueError:
        return "its JSON chunk does not parse"
    buffers = gltf.get("buffers") or [{}]
    needed = buffers[0].get("byteLength", 0) if isinstance(buffers[0], dict) else 0
    if needed and len(chunks.get(GLB_BIN, b"")) < needed:
        return f"its binary chunk holds {len(chunks.get(GLB_BIN, b''))} of {needed} bytes"
    return None


PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"
"""The last 12 bytes of every PNG (its IEND chunk), which a decoder does not need."""


def picture_problem(path: Path) -> Optional[str]:
    """An image: a PNG ends with its IEND chunk; its chunks' checksums hold (Pillow's verify)
    and it decodes to its last pixel."""
    from PIL import Image, UnidentifiedImageError

    from mesh.image_size import ImageTooLarge, check_image_size

    if path.suffix.lower() == ".png":
        with path.open("rb") as file:
            file.seek(max(0, path.stat().st_size - len(PNG_END)))
            if file.read() != PNG_END:
                return "cut short: no PNG end chunk"
    try:
        check_image_size(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                image.verify()
            with Image.open(path) as image:
                image.load()
    except ImageTooLarge as error:
        return str(error).split(": ", 1)[-1]
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, struct.error) as error:
        return f"not a readable image ({error})"
    return None


EXR_LINES_PER_CHUNK = {0: 1, 1: 1, 2: 1, 3: 16, 4: 32, 5: 16, 6: 32, 7: 32, 8: 32, 9: 256}
"""Scanlines per chunk of each OpenEXR compression (none, RLE, ZIPS, ZIP, PIZ, PXR24, B44,
B44A, DWAA, DWAB)."""


def _exr_layout(data: bytes) -> tuple[int, int, int]:
    """(flags, scanline chunks, offset table start) of an OpenEXR file's header."""
    if data[:4] != b"\x76\x2f\x31\x01" or len(data) < 8:
        raise ValueError("no OpenEXR header")
    (flags,) = struct.unpack_from("<I", data, 4)
    at, height, compression = 8, None, None
    while True:
        name_end = data.find(b"\x00", at)
        if name_end < 0:
            raise ValueError("its header is cut short")
        if name_end == at:
            break
        type_end = data.find(b"\x00", name_end + 1)
        if type_end < 0 or type_end + 5 > len(data):
            raise ValueError("its header is cut short")
        (size,) = struct.unpack_from("<i", data, type_end + 1)
        value = type_end + 5
        if value + size > len(data) or size < 0:
            raise ValueError("its header is cut short")
        name = data[at:name_end]
        if name == b"dataWindow" and size == 16:
            _, y_min, _, y_max = struct.unpack_from("<4i", data, value)
            height = y_max - y_min + 1
        elif name == b"compression" and size == 1:
            compression = data[value]
        at = value + size
    if height is None or compression not in EXR_LINES_PER_CHUNK:
        raise ValueError("its header lacks dataWindow or a known compression")
    return flags, math.ceil(height / EXR_LINES_PER_CHUNK[compression]), at + 1


def exr_problem(path: Path) -> Optional[str]:
    """OpenEXR (one scanline part): its last chunk ends at the file's end; then OpenCV decodes it."""
    import os

    data = path.read_bytes()
    try:
        flags, chunks, table = _exr_layout(data)
    except ValueError as error:
        return f"not a readable EXR ({error})"
    if not flags & 0x1A00 and chunks:  # neither tiled, deep nor multi-part: a scanline table
        if table + 8 * chunks > len(data):
            return "cut short within its offset table"
        offsets = struct.unpack_from(f"<{chunks}Q", data, table)
        last = max(offsets)
        if last + 8 > len(data):
            return _size_words(len(data), last + 8)
        (size,) = struct.unpack_from("<i", data, last + 4)
        if last + 8 + size != len(data):
            return _size_words(len(data), last + 8 + size)
    os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")  # before OpenCV's first EXR call, as depth_file reads
    import cv2
    import numpy as np

    if cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) is None:
        return "OpenCV cannot decode it"
    return None


OBJ_COUNTS = re.compile(rb"# (\d+) vertices, (\d+) faces\r?\n")
"""The first line `mesh.export.obj_files` writes: it lets a file cut at a line's end be found out."""


def obj_problem(files: list[Path]) -> Optional[str]:
    """OBJ + MTL + texture: the OBJ ends its last line and holds the vertices and faces its first
    line counts (an OBJ from elsewhere: only the line's end), names its MTL; the MTL names
    the texture; the texture decodes."""
    obj, mtl, texture = files
    data = obj.read_bytes()
    if not data.endswith(b"\n"):
        return f"{obj.name}: cut short within a line"
    counts = OBJ_COUNTS.match(data)
    if counts:
        vertices, faces = data.count(b"\nv "), data.count(b"\nf ")
        if (vertices, faces) != (int(counts.group(1)), int(counts.group(2))):
            return f"{obj.name}: cut short: {vertices} of {counts.group(1).decode()} vertices, {faces} of " \
                   f"{counts.group(2).decode()} faces"
    if f"mtllib {mtl.name}".encode() not in data:
        return f"{obj.name}: does not name {mtl.name}"
    if f"map_Kd {texture.name}".encode() not in mtl.read_bytes():
        return f"{mtl.name}: does not name {texture.name}"
    problem = picture_problem(texture)
    return f"{texture.name}: {problem}" if problem else None


def camera_json_problem(path: Path) -> Optional[str]:
    """The depth map's camera JSON: it parses, with the intrinsics and size it promises."""
    from ppd_core.files.depth_exr import CAMERA_JSON_KEYS

    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        return f"not readable JSON ({error})"
    lacking = [key for key in CAMERA_JSON_KEYS if not isinstance(record, dict) or key not in record]
    return f"lacks {', '.join(lacking)}" if lacking else None


USD_SECTION_BYTES = 32  # a crate's table of contents: a count, then (16-byte name, start, size) per section


def usd_problem(path: Path) -> Optional[str]:
    """A binary USD (crate): its magic, and its table of contents, written last, ending the file."""
    size = path.stat().st_size
    with path.open("rb") as file:
        head = file.read(24)
        if len(head) < 24 or not head.startswith(b"PXR-USDC"):
            return "not a binary USD file"
        contents = int.from_bytes(head[16:24], "little")
        if not 24 <= contents <= size - 8:
            return _size_words(size, contents + 8)
        file.seek(contents)
        sections = int.from_bytes(file.read(8), "little")
    return None if size == contents + 8 + USD_SECTION_BYTES * sections else _size_words(
        size, contents + 8 + USD_SECTION_BYTES * sections)


def _each(*checks: Callable[[Path], Optional[str]]) -> Check:
    """A check of an output whose files are checked one by one, in the order of `output_files`."""

    def check(files: list[Path]) -> Optional[str]:
        for file, file_check in zip(files, checks):
            problem = file_check(file)
            if problem:
                return f"{file.name}: {problem}" if len(files) > 1 else problem
        return None

    return check


def _npz_members() -> tuple[str, ...]:
    from ppd_core.files.result_file import CAMERA_KEYS

    return tuple(f"{key}.npy" for key in ("format", "kind", "frame", "vertices", "faces", *CAMERA_KEYS))


#: Output kind -> the check of its files (in the order of `options.output_files`).
CHECKS: dict[str, Check] = {
    "stl": _each(stl_problem),
    "3mf": _each(lambda path: zip_problem(path, ("3D/3dmodel.model", "[Content_Types].xml", "_rels/.rels"))),
    "ply": _each(ply_problem),
    "obj": obj_problem,
    "glb": _each(glb_problem),
    "npz": _each(lambda path: zip_problem(path, _npz_members())),
    "depth_png": _each(picture_problem, picture_problem),
    "depth_exr": _each(exr_problem, picture_problem, camera_json_problem),
    "usd": _each(usd_problem),
    "preview": _each(picture_problem),
}


def output_problem(kind: str, path: Path) -> Optional[str]:
    """None when every file of the output of `kind` at `path` is there and whole; `MISSING`
    when none is there; else what is wrong, in one line (a file cut short, unreadable, missing)."""
    files = output_files(kind, path)
    there = [file.is_file() for file in files]
    if not any(there) and not any(file.is_dir() for file in files):
        return MISSING
    for file, is_file in zip(files, there):
        if not is_file:
            return f"{file.name}: {'is a folder' if file.is_dir() else 'not there'}"
    try:
        return CHECKS[kind](files)
    except OSError as error:
        return f"cannot read it ({error.strerror or error})"
