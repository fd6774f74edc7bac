"""Writers for every output kind, keyed by file type; each write is atomic.

Frames on disk: PLY, OBJ and GLB use the glTF convention (metres, y up, the camera at the
origin looking down -z: OpenCV (x, -y, -z)) so they open upright in any viewer; STL and 3MF
are z up in millimetres (solids as built; a scene mesh turned so its up is +z); the NPZ
keeps the OpenCV camera frame (or the print frame of a solid) and says which.
"""

from __future__ import annotations

import contextlib
import locale
import os
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import numpy as np

from mesh.data import MeshData
from ppd_core.errors import BadInputError, OutputError

NPZ_FORMAT = "ppd-npz-1"
#: The farthest depth a 16-bit millimetre PNG holds; farther pixels are stored as this.
DEPTH_PNG_MAX_M = 65.535
# Proper rotations (det +1), so faces keep their winding.
_OPENCV_TO_GLTF = np.diag([1.0, -1.0, -1.0])
_OPENCV_TO_Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
_Z_UP_TO_GLTF = _OPENCV_TO_Z_UP  # (x, y, z) z-up -> (x, z, -y) y-up


@dataclass(frozen=True)
class CameraInfo:
    """What the NPZ carries about the photo and its camera (see docs/architecture.md)."""

    image_path: str
    image_size: tuple[int, int]                 # width, height in pixels
    intrinsics: tuple[float, float, float, float]  # fx, fy, cx, cy
    lens_mm: float
    sensor_width_mm: float
    shift: tuple[float, float]                  # Blender shift_x, shift_y
    sensor_fit: str = "HORIZONTAL"


def gltf_frame(mesh: MeshData) -> MeshData:
    """The mesh in glTF's frame: metres, y up, camera looking down -z."""
    if mesh.frame == "opencv":
        return mesh.transformed(_OPENCV_TO_GLTF)
    return mesh.transformed(_Z_UP_TO_GLTF, scale=0.001)


def print_frame(mesh: MeshData) -> MeshData:
    """The mesh z up in millimetres (solids are already; a scene is turned and scaled)."""
    if mesh.frame == "print_mm":
        return mesh
    return mesh.transformed(_OPENCV_TO_Z_UP, scale=1000.0, frame="print_mm")


def _side_stem(path: Path) -> str:
    """The OBJ's stem with blanks as underscores, for the MTL and texture it names inside:
    MeshLab and other readers end a file name in `mtllib` / `map_Kd` at the first blank."""
    return re.sub(r"\s", "_", path.stem)


def texture_path(path: Path) -> Path:
    """The texture PNG written beside an OBJ (never the photo's own name)."""
    return path.with_name(_side_stem(path) + "_texture.png")


def output_files(kind: str, path: Path) -> list[Path]:
    """Every file an export of `kind` to `path` creates (OBJ: the OBJ, its MTL and texture;
    depth_png: the 16-bit depth and its colour preview)."""
    path = Path(path)
    if kind == "obj":
        return [path, path.with_name(_side_stem(path) + ".mtl"), texture_path(path)]
    if kind == "depth_png":
        return [path, path.with_name(path.stem + "_preview.png")]
    return [path]


def write_depth_png(path: Path, depth: np.ndarray) -> list[Path]:
    """A 16-bit PNG of metric depth in millimetres (0 = no depth, clipped at 65.535 m, the
    convention `ppd_core.depth.read_depth_file` reads back) and a colour preview, near warm."""
    import cv2

    depth = np.asarray(depth, dtype=np.float64)
    valid = np.isfinite(depth) & (depth > 0)
    millimetres = np.where(valid, np.clip(np.rint(depth * 1000.0), 1, 65535), 0).astype(np.uint16)
    nearness = np.zeros(depth.shape, dtype=np.uint8)
    if valid.any():
        inverse = np.where(valid, 1.0 / np.where(valid, depth, 1.0), 0.0)
        low, high = np.percentile(inverse[valid], [2.0, 98.0])
        scaled = (inverse - low) / (high - low) if high > low else np.full(depth.shape, 0.5)
        nearness = np.clip(np.rint(scaled * 255.0), 0, 255).astype(np.uint8)
    preview = cv2.applyColorMap(nearness, cv2.COLORMAP_TURBO)
    preview[~valid] = 0
    files = output_files("depth_png", path)
    with atomic_files(files) as (depth_temp, preview_temp):
        for temp, image in ((depth_temp, millimetres), (preview_temp, preview)):
            ok, data = cv2.imencode(".png", image)
            if not ok:
                raise OutputError(f"{path}: OpenCV could not encode the PNG")
            temp.write_bytes(data.tobytes())
    return files


def _file_mode() -> int:
    """The permissions a plainly created file would get under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_files(paths: Sequence[Path]) -> Iterator[list[Path]]:
    """Yield temporary paths beside `paths`; on success move them all onto the final names.

    On any error the temporaries (and any final file this call already moved) are removed,
    so a write produces all its files or none.
    """
    paths = [Path(p) for p in paths]
    temps: list[Path] = []
    placed: list[Path] = []
    try:
        for path in paths:
            try:
                # A short prefix: a final name near the 255-byte limit must still get a temporary.
                handle, name = tempfile.mkstemp(prefix=f".{path.stem[:32]}.", suffix=f".tmp{path.suffix[:16]}",
                                                dir=path.parent)
            except OSError as error:
                raise OutputError(f"{path}: cannot write here ({error.strerror or error})") from error
            os.close(handle)
            os.chmod(name, _file_mode())  # mkstemp makes 0600; a finished file gets the usual mode
            temps.append(Path(name))
        try:
            yield temps
            for temp, path in zip(temps, paths):
                os.replace(temp, path)
                placed.append(path)
        except OSError as error:  # a full disk, a vanished folder: the user's problem, said plainly
            raise OutputError(f"{paths[0]}: cannot write ({error.strerror or error})") from error
    except BaseException:
        for leftover in temps + placed:
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
        raise


def _texture_image(texture):
    """A PIL image from an (H, W, 3) uint8 array or an image file path."""
    from PIL import Image

    if isinstance(texture, (str, Path)):
        try:
            with Image.open(texture) as image:
                return image.convert("RGB")
        except (OSError, ValueError) as error:
            raise BadInputError(f"{texture}: cannot read the texture image ({error})") from None
    return Image.fromarray(np.ascontiguousarray(texture, dtype=np.uint8), "RGB")


def _textured_trimesh(mesh: MeshData, texture, name: str):
    """A trimesh with the photo as its texture when there are UVs, else vertex colours."""
    from trimesh.visual import TextureVisuals
    from trimesh.visual.material import SimpleMaterial

    surface = mesh.to_trimesh()
    if texture is not None and mesh.uvs is not None:
        # White diffuse so that viewers show the photo's own colours, not a darkened copy.
        material = SimpleMaterial(image=_texture_image(texture), name=name, diffuse=[255, 255, 255, 255],
                                  ambient=[255, 255, 255, 255], specular=[0, 0, 0, 255])
        surface.visual = TextureVisuals(uv=mesh.uvs.astype(np.float64), material=material)
    return surface


def _require_faces(mesh: MeshData, path: Path) -> None:
    if mesh.is_points:
        raise BadInputError(f"{path}: this format needs a mesh, not a point cloud")


def write_stl(path: Path, mesh: MeshData, **_) -> None:
    """Binary STL, z up, millimetres."""
    from trimesh.exchange.stl import export_stl

    _require_faces(mesh, path)
    data = export_stl(print_frame(mesh).to_trimesh())
    with atomic_files([path]) as (temp,):
        temp.write_bytes(data)


def write_3mf(path: Path, mesh: MeshData, **_) -> None:
    """3MF (unit millimetre), z up. Written by pymeshlab: trimesh's 3MF writer needs lxml."""
    import pymeshlab

    _require_faces(mesh, path)
    solid = print_frame(mesh)
    # lib3mf aborts the whole process (an uncaught C++ exception) when the disk fills up, so
    # make sure the uncompressed model (about 64 bytes a vertex, 56 a triangle) fits first.
    needed = 64 * len(solid.vertices) + 56 * len(solid.faces) + 65536
    free = shutil.disk_usage(path.parent).free
    if free < needed:
        raise OutputError(f"{path}: cannot write (about {needed // 1024} KiB needed, {free // 1024} KiB free)")
    meshes = pymeshlab.MeshSet()
    meshes.add_mesh(pymeshlab.Mesh(vertex_matrix=solid.vertices.astype(np.float64), face_matrix=solid.faces))
    saved_locale = locale.setlocale(locale.LC_ALL)
    try:
        with atomic_files([path]) as (temp,):
            meshes.save_current_mesh(str(temp))
    finally:
        locale.setlocale(locale.LC_ALL, saved_locale)  # its 3MF writer leaves the process in the C locale


def write_ply(path: Path, mesh: MeshData, **_) -> None:
    """Binary PLY of a mesh or a point cloud, with colours and normals, glTF frame."""
    scene = gltf_frame(mesh)
    if len(scene.vertices) == 0:
        raise BadInputError(f"{path}: nothing to write, the mesh has no vertices")
    if scene.is_points:
        import open3d as o3d

        with atomic_files([path]) as (temp,):
            if not o3d.io.write_point_cloud(str(temp), scene.to_open3d(), write_ascii=False):
                raise OutputError(f"{path}: Open3D could not write the point cloud")
        return
    from trimesh.exchange.ply import export_ply

    data = export_ply(scene.to_trimesh(), encoding="binary", vertex_normal=scene.normals is not None)
    with atomic_files([path]) as (temp,):
        temp.write_bytes(data)


def write_obj(path: Path, mesh: MeshData, texture=None, **_) -> None:
    """OBJ + MTL + texture PNG (the photo), glTF frame; three files, all or none."""
    from trimesh.exchange.obj import export_obj

    _require_faces(mesh, path)
    obj_path, mtl_path, png_path = output_files("obj", path)
    surface = _textured_trimesh(gltf_frame(mesh), texture, png_path.stem)
    text, extras = export_obj(surface, include_normals=mesh.normals is not None, include_texture=True,
                              return_texture=True, mtl_name=mtl_path.name)
    with atomic_files([obj_path, mtl_path, png_path]) as (obj_temp, mtl_temp, png_temp):
        if mtl_path.name not in extras or png_path.name not in extras:
            raise OutputError(f"{path}: no texture to write (the mesh has no texture coordinates or photo)")
        obj_temp.write_text(text, encoding="utf-8")  # not the locale's: Qt (pymeshlab) may set C
        mtl_temp.write_bytes(extras[mtl_path.name])
        png_temp.write_bytes(extras[png_path.name])


def write_glb(path: Path, mesh: MeshData, texture=None, **_) -> None:
    """Binary glTF with the texture embedded (or vertex colours), glTF frame."""
    import trimesh
    from trimesh.exchange.gltf import export_glb

    _require_faces(mesh, path)
    data = export_glb(trimesh.Scene(_textured_trimesh(gltf_frame(mesh), texture, path.stem)))
    with atomic_files([path]) as (temp,):
        temp.write_bytes(data)


def write_npz(path: Path, mesh: MeshData, camera: Optional[CameraInfo] = None, kind: Optional[str] = None,
              **_) -> None:
    """The Blender hand-off: arrays in the OpenCV frame (or print frame for a solid), no pickles."""
    if camera is None:
        raise BadInputError(f"{path}: the NPZ needs the photo's camera information")
    kind = kind or ("points" if mesh.is_points else "solid" if mesh.frame == "print_mm" else "mesh")
    arrays = {
        "format": np.array(NPZ_FORMAT),
        "kind": np.array(kind),
        "frame": np.array(mesh.frame),
        "vertices": mesh.vertices.astype(np.float32),
        "faces": mesh.faces.astype(np.int32),
        "image_path": np.array(str(Path(camera.image_path).resolve())),
        "image_size": np.asarray(camera.image_size, dtype=np.int32),
        "intrinsics": np.asarray(camera.intrinsics, dtype=np.float64),
        "camera_lens_mm": np.float64(camera.lens_mm),
        "camera_sensor_width_mm": np.float64(camera.sensor_width_mm),
        "camera_sensor_fit": np.array(camera.sensor_fit),
        "camera_shift": np.asarray(camera.shift, dtype=np.float64),
    }
    if mesh.uvs is not None and kind != "solid":
        arrays["uvs"] = mesh.uvs.astype(np.float32)
    arrays["colors"] = (mesh.colors if mesh.colors is not None
                        else np.full((len(mesh.vertices), 3), 200, dtype=np.uint8))
    if mesh.normals is not None:
        arrays["normals"] = mesh.normals.astype(np.float32)
    # np.savez_compressed, but with the archive closed by a `with`: numpy leaves its ZipFile
    # open when interrupted, and its later __del__ prints a traceback about a closed file.
    with atomic_files([path]) as (temp,):
        with zipfile.ZipFile(temp, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
            for key, value in arrays.items():
                with archive.open(f"{key}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)


EXPORTERS: dict[str, Callable[..., None]] = {
    "stl": write_stl,
    "3mf": write_3mf,
    "ply": write_ply,
    "obj": write_obj,
    "glb": write_glb,
    "npz": write_npz,
}


def export(kind: str, path: Path, mesh: MeshData, *, texture=None, camera: Optional[CameraInfo] = None,
           npz_kind: Optional[str] = None) -> list[Path]:
    """Write `mesh` as `kind` to `path` atomically; return every file written.

    texture: the photo (array or path) for OBJ and GLB; camera: required for NPZ.
    """
    if kind not in EXPORTERS:
        raise BadInputError(f"unknown output type {kind!r}; choose one of {', '.join(EXPORTERS)}")
    path = Path(path)
    EXPORTERS[kind](path, mesh, texture=texture, camera=camera, kind=npz_kind)
    return output_files(kind, path)
