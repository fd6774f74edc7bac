"""Format writers: a mesh in, the file's bytes out (trimesh's `exchange` is the model).

They touch no output file: writing bytes to disk atomically, next to other outputs, is
the caller's job (in this product `ppd_core.files.outputs`). Frames on disk: PLY, OBJ and
GLB use the glTF convention (metres, y up, the camera at the origin looking down -z: OpenCV
(x, -y, -z)) so they open upright in any viewer; STL and 3MF are z up in millimetres (solids
as built; a scene mesh turned so its up is +z).
"""

from __future__ import annotations

import locale
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional, Union

import numpy as np
from PIL import Image

from mesh.data import MeshData, MeshError
from mesh.image_size import ImageTooLarge, check_image_size
from mesh.painted_3mf import painted_threemf_bytes

# Proper rotations (det +1), so faces keep their winding.
_OPENCV_TO_GLTF = np.diag([1.0, -1.0, -1.0])
OPENCV_TO_Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
_Z_UP_TO_GLTF = OPENCV_TO_Z_UP  # (x, y, z) z-up -> (x, z, -y) y-up

Texture = Union[np.ndarray, str, Path]  # an (H, W, 3) uint8 RGB array or an image file


def gltf_frame(mesh: MeshData) -> MeshData:
    """The mesh in glTF's frame: metres, y up, camera looking down -z."""
    if mesh.frame == "opencv":
        return mesh.transformed(_OPENCV_TO_GLTF)
    return mesh.transformed(_Z_UP_TO_GLTF, scale=0.001)


def print_frame(mesh: MeshData) -> MeshData:
    """The mesh z up in millimetres (solids are already; a scene is turned and scaled)."""
    if mesh.frame == "print_mm":
        return mesh
    return mesh.transformed(OPENCV_TO_Z_UP, scale=1000.0, frame="print_mm")


def _texture_image(texture: Texture):
    """A PIL image from an (H, W, 3) uint8 array or an image file path."""
    if isinstance(texture, (str, Path)):
        try:
            check_image_size(texture)
            with Image.open(texture) as image:
                return image.convert("RGB")
        except ImageTooLarge as error:
            raise MeshError(str(error)) from None
        except (OSError, ValueError) as error:
            raise MeshError(f"{texture}: cannot read the texture image ({error})") from None
    return Image.fromarray(np.ascontiguousarray(texture, dtype=np.uint8), "RGB")


def _textured_trimesh(mesh: MeshData, texture: Texture, name: str):
    """A trimesh with the photo as its texture (white diffuse, so viewers show the photo's
    own colours, not a darkened copy)."""
    from trimesh.visual import TextureVisuals  # heavy (~1 s to load): imported on first use
    from trimesh.visual.material import SimpleMaterial

    surface = mesh.to_trimesh()
    material = SimpleMaterial(image=_texture_image(texture), name=name, diffuse=[255, 255, 255, 255],
                              ambient=[255, 255, 255, 255], specular=[0, 0, 0, 255])
    surface.visual = TextureVisuals(uv=mesh.uvs.astype(np.float64), material=material)
    return surface


def _require_faces(mesh: MeshData, what: str) -> None:
    if mesh.is_points:
        raise MeshError(f"{what} needs a mesh, not a point cloud")


def _require_texture(mesh: MeshData, texture, what: str) -> None:
    if texture is None or mesh.uvs is None:
        raise MeshError(f"{what} needs texture coordinates and a photo to texture with")


STL_HEADER = b"Depth from Image binary STL, z up, millimetres".ljust(80)
STL_RECORD = np.dtype([("normal", "<f4", (3,)), ("corners", "<f4", (3, 3)), ("attribute", "<u2")])
"""A binary STL triangle: 50 bytes, packed (numpy structured dtypes are unaligned by default)."""
STL_BLOCK = 1 << 16
"""Triangles per block of work: small enough to stay in cache, large enough that numpy's
per-call cost is nothing."""


def _fill_stl_records(records: np.ndarray, coords: np.ndarray, faces: np.ndarray) -> None:
    """Write the corners and unit normals of `faces` (3, F) of `coords` (3, N) into `records`.

    Coordinate by coordinate on contiguous float32 rows: numpy's loops over a trailing axis of
    3 run several times slower."""
    corner = [[coords[axis].take(faces[index]) for axis in range(3)] for index in range(3)]
    for index in range(3):
        for axis in range(3):
            records["corners"][:, index, axis] = corner[index][axis]
    a = [corner[1][axis] - corner[0][axis] for axis in range(3)]
    b = [corner[2][axis] - corner[0][axis] for axis in range(3)]
    normal = [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
    length = np.sqrt(normal[0] * normal[0] + normal[1] * normal[1] + normal[2] * normal[2])
    length[length == 0] = 1.0  # a degenerate triangle keeps the normal (0, 0, 0)
    for axis in range(3):
        records["normal"][:, axis] = normal[axis] / length


def stl_bytes(mesh: MeshData) -> bytearray:
    """Binary STL, z up, millimetres: the 80-byte header, the triangle count, one record a triangle.

    Written straight into one buffer in float32, in blocks shared by a few threads (numpy
    releases the GIL): trimesh's exporter (float64 triangles, a Trimesh built first, the
    records copied twice) took about 1 s for the 1.5 million triangles of a 1024x768 grid
    mesh, this about 0.2 s on two cores (`benchmarks/mesh_speed.py`). The same records as
    trimesh writes (normals within float32 rounding), apart from the header text."""
    _require_faces(mesh, "STL")
    solid = print_frame(mesh)
    coords = np.ascontiguousarray(np.asarray(solid.vertices, dtype=np.float32).T)  # (3, N)
    faces = np.ascontiguousarray(solid.faces.T)  # (3, F)
    count = faces.shape[1]
    data = bytearray(len(STL_HEADER) + 4 + STL_RECORD.itemsize * count)
    data[:80] = STL_HEADER
    data[80:84] = np.array(count, dtype="<u4").tobytes()
    records = np.frombuffer(data, STL_RECORD, offset=84)
    starts = range(0, count, STL_BLOCK)
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1, len(starts))) as pool:
        list(pool.map(lambda start: _fill_stl_records(records[start:start + STL_BLOCK], coords,
                                                      faces[:, start:start + STL_BLOCK]), starts))
    return data


def threemf_bytes(mesh: MeshData) -> bytes:
    """3MF (unit millimetre), z up, written by pymeshlab (lib3mf), which needs a file: it is
    written in a private temporary folder and read back. A painted solid (`mesh.paint`, a
    colour relief) is written with its filaments by `mesh.painted_3mf`."""
    import pymeshlab  # heavy (~2 s to load): imported on first use

    _require_faces(mesh, "3MF")
    solid = print_frame(mesh)
    if solid.paint is not None:
        return painted_threemf_bytes(solid)
    meshes = pymeshlab.MeshSet()
    meshes.add_mesh(pymeshlab.Mesh(vertex_matrix=solid.vertices.astype(np.float64), face_matrix=solid.faces))
    with tempfile.TemporaryDirectory(prefix="ppd-3mf-") as folder:
        # lib3mf aborts the whole process (an uncaught C++ exception) when the disk fills up,
        # so make sure the uncompressed model (about 64 bytes a vertex, 56 a triangle) fits first.
        needed = 64 * len(solid.vertices) + 56 * len(solid.faces) + 65536
        free = shutil.disk_usage(folder).free
        if free < needed:
            raise OSError(28, f"about {needed // 1024} KiB needed, {free // 1024} KiB free")
        path = os.path.join(folder, "model.3mf")
        saved_locale = locale.setlocale(locale.LC_ALL)
        try:
            meshes.save_current_mesh(path)
        finally:
            locale.setlocale(locale.LC_ALL, saved_locale)  # its 3MF writer leaves the process in the C locale
        return Path(path).read_bytes()


def ply_bytes(mesh: MeshData) -> bytes:
    """Binary PLY of a mesh or a point cloud, with colours and normals, glTF frame."""
    scene = gltf_frame(mesh)
    if len(scene.vertices) == 0:
        raise MeshError("nothing to write: the mesh has no vertices")
    if scene.is_points:
        return _point_cloud_ply(scene)
    from trimesh.exchange.ply import export_ply  # heavy (~1 s to load): imported on first use

    return export_ply(scene.to_trimesh(), encoding="binary", vertex_normal=scene.normals is not None)


def _point_cloud_ply(cloud: MeshData) -> bytes:
    """A binary little-endian PLY of points with their normals and colours, as one numpy
    record array (trimesh's point-cloud export drops normals)."""
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if cloud.normals is not None:
        fields += [("nx", "<f4"), ("ny", "<f4"), ("nz", "<f4")]
    if cloud.colors is not None:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    records = np.empty(len(cloud.vertices), dtype=fields)
    for axis, name in enumerate("xyz"):
        records[name] = cloud.vertices[:, axis]
        if cloud.normals is not None:
            records["n" + name] = cloud.normals[:, axis]
    if cloud.colors is not None:
        for channel, name in enumerate(("red", "green", "blue")):
            records[name] = cloud.colors[:, channel]
    types = {"<f4": "float", "u1": "uchar"}
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {len(records)}"]
    header += [f"property {types[kind]} {name}" for name, kind in fields]
    return ("\n".join(header + ["end_header"]) + "\n").encode("ascii") + records.tobytes()


def obj_files(mesh: MeshData, texture: Texture, mtl_name: str, texture_name: str) -> tuple[bytes, bytes, bytes]:
    """(OBJ, MTL, texture PNG) of a textured mesh, glTF frame; the OBJ names the MTL
    `mtl_name` and the MTL names the texture `texture_name` (file names, no folders). Its
    first line counts the vertices and faces, so that a copy cut short at a line's end is
    found out (`ppd_core.files.output_check`)."""
    from trimesh.exchange.obj import export_obj  # heavy (~1 s to load): imported on first use

    _require_faces(mesh, "OBJ")
    _require_texture(mesh, texture, "OBJ")
    surface = _textured_trimesh(gltf_frame(mesh), texture, Path(texture_name).stem)
    text, extras = export_obj(surface, include_normals=mesh.normals is not None, include_texture=True,
                              return_texture=True, mtl_name=mtl_name)
    if mtl_name not in extras or texture_name not in extras:
        raise MeshError(f"trimesh wrote no {mtl_name} / {texture_name} for the OBJ")
    counts = f"# {len(surface.vertices)} vertices, {len(surface.faces)} faces\n"
    return (counts + text).encode("utf-8"), extras[mtl_name], extras[texture_name]


def glb_bytes(mesh: MeshData, texture: Optional[Texture] = None) -> bytes:
    """Binary glTF, glTF frame, with the photo embedded as the texture (vertex colours when
    there is no texture or no UVs)."""
    import trimesh  # heavy (~1 s to load): imported on first use
    from trimesh.exchange.gltf import export_glb

    _require_faces(mesh, "GLB")
    scene = gltf_frame(mesh)
    textured = texture is not None and mesh.uvs is not None
    return export_glb(trimesh.Scene(_textured_trimesh(scene, texture, "photo") if textured else scene.to_trimesh()))
