"""The result file (NPZ, no pickles): the hand-off from the pipeline to the Blender add-on and
to Python users. Its layout is written here once: `result_bytes` writes it, `read_result`
reads and checks it (the add-on imports this module inside Blender: numpy and the standard
library only).

Layout "ppd-npz-1" (see docs/architecture.md): format, kind ("mesh" | "points" | "solid"),
frame ("opencv": metres, camera frame; "print_mm": millimetres, z up), vertices float32
(N, 3), faces int32 (F, 3), uvs float32 (N, 2) (not for solids), colors uint8 (N, 3),
normals float32 (N, 3) (optional), image_path, and the camera: image_size int32 (2,),
intrinsics float64 (fx, fy, cx, cy), camera_lens_mm, camera_sensor_width_mm,
camera_sensor_fit, camera_shift float64 (2,); and, from the pipeline, the metric depth it
meshed: depth float32 (h, w) metres on the mesh grid (NaN = none) with depth_info (a JSON text:
where scale and camera came from), so that `ppd-mesh photo.jpg --depth photo.npz` re-meshes
without the network. A colour relief (a solid painted for a multi-material printer) adds
face_filaments int16 (F,) (each face's filament, 0 the first; -1 the object's own, the first),
filament_colors uint8 (K, 3) sRGB in slot order and filament_names (a JSON list of K words).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import zipfile
import zlib
from dataclasses import dataclass
from typing import Iterator, Optional

import numpy as np

from mesh.data import MeshData, Paint
from mesh.image_size import ImageTooLarge, check_array_size
from ppd_core.errors import BadInputError, first_line
from ppd_core.geometry.camera import CameraRecord

RESULT_FORMAT = "ppd-npz-1"
KINDS = ("mesh", "points", "solid")
FRAME_OF_KIND = {"mesh": "opencv", "points": "opencv", "solid": "print_mm"}
CAMERA_KEYS = ("image_size", "intrinsics", "camera_lens_mm", "camera_sensor_width_mm", "camera_sensor_fit",
               "camera_shift")
DEFAULT_COLOR = 200  # grey for vertices without colours


@dataclass
class ResultFile:
    """A result file's content, checked (see the module docstring for the layout)."""

    kind: str
    frame: str
    vertices: np.ndarray
    faces: np.ndarray
    uvs: Optional[np.ndarray]
    colors: Optional[np.ndarray]
    normals: Optional[np.ndarray]
    image_path: str
    camera: Optional[CameraRecord]
    depth: Optional[np.ndarray] = None    # metric depth on the mesh grid, when the pipeline wrote it
    depth_info: Optional[dict] = None
    paint: Optional[Paint] = None         # a colour relief's filament per face


def result_bytes(mesh: MeshData, kind: str, camera: CameraRecord, image_path: str,
                 depth: Optional[np.ndarray] = None, depth_info: Optional[dict] = None) -> bytes:
    """The result file of `mesh` (a `kind` result) seen by `camera` in the photo `image_path`,
    with the metric `depth` it was made from and `depth_info` when given."""
    if kind not in KINDS:
        raise BadInputError(f"result kind {kind!r} is not one of {', '.join(KINDS)}")
    arrays = {
        "format": np.array(RESULT_FORMAT),
        "kind": np.array(kind),
        "frame": np.array(mesh.frame),
        "vertices": mesh.vertices.astype(np.float32),
        "faces": mesh.faces.astype(np.int32),
        "image_path": np.array(str(image_path)),
        "image_size": np.array([camera.width, camera.height], dtype=np.int32),
        "intrinsics": np.array([camera.fx, camera.fy, camera.cx, camera.cy], dtype=np.float64),
        "camera_lens_mm": np.float64(camera.lens_mm),
        "camera_sensor_width_mm": np.float64(camera.sensor_width_mm),
        "camera_sensor_fit": np.array(camera.sensor_fit),
        "camera_shift": np.array([camera.shift_x, camera.shift_y], dtype=np.float64),
        "colors": (mesh.colors if mesh.colors is not None
                   else np.full((len(mesh.vertices), 3), DEFAULT_COLOR, dtype=np.uint8)),
    }
    if mesh.uvs is not None and kind != "solid":
        arrays["uvs"] = mesh.uvs.astype(np.float32)
    if mesh.normals is not None:
        arrays["normals"] = mesh.normals.astype(np.float32)
    if depth is not None:
        arrays["depth"] = np.asarray(depth, dtype=np.float32)
        arrays["depth_info"] = np.array(json.dumps(depth_info or {}))
    if mesh.paint is not None:
        arrays["face_filaments"] = mesh.paint.faces.astype(np.int16)
        arrays["filament_colors"] = mesh.paint.colors.astype(np.uint8)
        arrays["filament_names"] = np.array(json.dumps(list(mesh.paint.names)))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        for key, value in arrays.items():
            with archive.open(f"{key}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)
    return buffer.getvalue()


def _text(data, key: str, path: str) -> str:
    if key not in data.files:
        raise BadInputError(f"{path}: missing key '{key}'")
    return str(data[key][()])


def _rows(data, key: str, path: str, dtype, width: int, count: Optional[int] = None) -> np.ndarray:
    """Array `key` as (N, width) of `dtype`, N = `count` when given."""
    array = np.asarray(data[key])
    if array.ndim != 2 or array.shape[1] != width:
        raise BadInputError(f"{path}: '{key}' has shape {array.shape}, expected (N, {width})")
    if count is not None and len(array) != count:
        raise BadInputError(f"{path}: '{key}' has {len(array)} rows for {count} vertices")
    return np.ascontiguousarray(array, dtype=dtype)


def _camera(data, path: str) -> Optional[CameraRecord]:
    if "intrinsics" not in data.files:
        return None
    for key in CAMERA_KEYS:
        if key not in data.files:
            raise BadInputError(f"{path}: missing key '{key}' (it has intrinsics but no camera)")
    width, height = (int(v) for v in np.asarray(data["image_size"]).ravel()[:2])
    fx, fy, cx, cy = (float(v) for v in np.asarray(data["intrinsics"]).ravel()[:4])
    shift_x, shift_y = (float(v) for v in np.asarray(data["camera_shift"]).ravel()[:2])
    return CameraRecord(width=width, height=height, fx=fx, fy=fy, cx=cx, cy=cy,
                        lens_mm=float(data["camera_lens_mm"]), sensor_width_mm=float(data["camera_sensor_width_mm"]),
                        sensor_fit=_text(data, "camera_sensor_fit", path), shift_x=shift_x, shift_y=shift_y)


def _depth(data, path: str) -> dict:
    """The saved depth map and its info, when the file has them."""
    if "depth" not in data.files:
        return {}
    depth = np.asarray(data["depth"], dtype=np.float32)
    if depth.ndim != 2 or depth.size == 0:
        raise BadInputError(f"{path}: 'depth' has shape {depth.shape}, expected a 2-D map")
    try:
        info = json.loads(_text(data, "depth_info", path)) if "depth_info" in data.files else {}
    except ValueError:
        raise BadInputError(f"{path}: 'depth_info' is not JSON") from None
    return {"depth": depth, "depth_info": info if isinstance(info, dict) else {}}


def _paint(data, path: str) -> dict:
    """A colour relief's paint, when the file has it."""
    if "face_filaments" not in data.files:
        return {}
    try:
        names = json.loads(_text(data, "filament_names", path))
        return {"paint": Paint(faces=np.asarray(data["face_filaments"]).reshape(-1),
                               colors=_rows(data, "filament_colors", path, np.uint8, 3),
                               names=tuple(names) if isinstance(names, list) else ())}
    except (ValueError, KeyError) as error:  # MeshError is a ValueError
        raise BadInputError(f"{path}: the filaments of the colour relief are not readable ({error})") from None


def _open(path: str):
    """The result file's arrays, each read when first asked for; BadInputError when the file
    is not a result file. The caller closes it (`with`)."""
    if not os.path.isfile(path):
        raise BadInputError(f"{path}: result file not found")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise BadInputError(f"{path}: not a readable NPZ file ({error})") from None
    try:
        _check_members(data, path)
    except BaseException:
        data.close()
        raise
    return data


def _check_members(data, path: str) -> None:
    """Every member's size (from its header, before any is unpacked: a small NPZ can unpack to
    gigabytes) within the image limit, and the format."""
    try:
        for member in data.zip.namelist():
            with data.zip.open(member) as handle:
                check_array_size(handle, f"{path}: '{member.removesuffix('.npy')}'")
    except ImageTooLarge as error:
        raise BadInputError(str(error)) from None
    except (OSError, zipfile.BadZipFile, zlib.error) as error:
        raise BadInputError(f"{path}: not a readable NPZ file ({error})") from None
    if _text(data, "format", path) != RESULT_FORMAT:
        raise BadInputError(f"{path}: format is not {RESULT_FORMAT}")


@contextlib.contextmanager
def _damaged_as_bad_input(path: str) -> Iterator[None]:
    """A member cut short or corrupt (its header said more than it holds) is bad input, not a crash."""
    try:
        yield
    except (ValueError, EOFError, OSError, zipfile.BadZipFile, zlib.error) as error:
        raise BadInputError(f"{path}: a damaged result file ({first_line(error)})") from None


def read_saved_depth(path: str) -> tuple[Optional[np.ndarray], dict, Optional[CameraRecord]]:
    """(depth map or None, its info, camera or None) of a result file, without reading its
    mesh: re-meshing a saved result needs only these."""
    path = os.fspath(path)
    with _open(path) as data, _damaged_as_bad_input(path):
        saved = _depth(data, path)
        return saved.get("depth"), saved.get("depth_info", {}), _camera(data, path)


def read_result(path: str) -> ResultFile:
    """Load and check a result file; BadInputError names the file and what is wrong."""
    path = os.fspath(path)
    with _open(path) as data, _damaged_as_bad_input(path):
        kind = _text(data, "kind", path)
        if kind not in KINDS:
            raise BadInputError(f"{path}: unknown kind '{kind}'")
        for key in ("vertices", "faces"):
            if key not in data.files:
                raise BadInputError(f"{path}: missing key '{key}'")
        vertices = _rows(data, "vertices", path, np.float32, 3)
        count = len(vertices)
        optional = {key: _rows(data, key, path, dtype, width, count) if key in data.files else None
                    for key, dtype, width in (("uvs", np.float32, 2), ("colors", np.uint8, 3),
                                              ("normals", np.float32, 3))}
        faces = _rows(data, "faces", path, np.int32, 3)
        result = ResultFile(kind=kind, frame=_text(data, "frame", path), vertices=vertices, faces=faces,
                            image_path=_text(data, "image_path", path) if "image_path" in data.files else "",
                            camera=_camera(data, path), **optional, **_depth(data, path),
                            **_paint(data, path))
    if result.frame != FRAME_OF_KIND[kind]:
        raise BadInputError(f"{path}: a {kind} result must be in frame '{FRAME_OF_KIND[kind]}'")
    if not np.isfinite(result.vertices).all():
        raise BadInputError(f"{path}: vertices contain NaN or infinity")
    if len(result.faces) and (result.faces.min() < 0 or result.faces.max() >= count):
        raise BadInputError(f"{path}: faces index vertices outside 0..{count - 1}")
    if result.paint is not None and len(result.paint.faces) != len(result.faces):
        raise BadInputError(f"{path}: {len(result.paint.faces)} face filaments for {len(result.faces)} faces")
    return result
