"""The plain-array geometry of `mesh`: `PixelCloud` (points lifted from a depth map's pixels,
what the meshers take), `MeshData` (what every mesher returns and every writer takes) and
`Paint` (a colour relief's filament per face)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

import numpy as np


class MeshError(ValueError):
    """Geometry a mesher or writer cannot use (no points, bad shapes, sizes out of range)."""


#: Frames a `MeshData` can be in: the OpenCV camera frame in metres (scene meshes and
#: point clouds) or the print frame in millimetres, z up, relief facing +z (solids).
FRAMES = ("opencv", "print_mm")


def _rows_of(values, width: int, dtype, name: str) -> np.ndarray:
    """`values` as a contiguous (N, width) array; (..., width) arrays are flattened to rows."""
    array = np.asarray(values)
    if array.size and array.shape[-1] != width:
        raise MeshError(f"mesh {name} must be (N, {width}), got shape {array.shape}")
    return np.ascontiguousarray(array, dtype=dtype).reshape(-1, width)


def pixel_uvs(pixel_index: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(N, 2) float32 texture coordinates of flat pixel indices: u = (x+0.5)/W, v = 1-(y+0.5)/H."""
    height, width = shape
    y, x = np.divmod(np.asarray(pixel_index, dtype=np.int64), width)
    return np.column_stack([(x + 0.5) / width, 1.0 - (y + 0.5) / height]).astype(np.float32)


@dataclass
class PixelCloud:
    """Points lifted from the pixels of a depth map, with the per-pixel masks they came from.

    points:        (N, 3) float32, OpenCV camera frame (x right, y down, z forward), metres
    colors:        (N, 3) uint8 RGB (grey 128 when no photo was given)
    normals:       (N, 3) float32 unit vectors, oriented toward the camera
    pixel_index:   (N,) int64 flat index y * width + x into the depth map's grid
    valid:         (H, W) bool, pixels with a finite positive depth that kept a point
    discontinuity: (H, W) bool, the depth-discontinuity mask (its pixels kept no point)
    """

    points: np.ndarray
    colors: np.ndarray
    normals: np.ndarray
    pixel_index: np.ndarray
    valid: np.ndarray
    discontinuity: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of the depth map the points were lifted from."""
        return self.valid.shape

    def __len__(self) -> int:
        return int(self.points.shape[0])

    def to_mesh_data(self) -> MeshData:
        """The cloud as a face-less MeshData with colours, normals and UVs into the photo."""
        return MeshData(vertices=self.points, faces=np.zeros((0, 3), np.int32), colors=self.colors,
                        normals=self.normals, uvs=pixel_uvs(self.pixel_index, self.shape))

    def to_open3d(self):
        """An `open3d.geometry.PointCloud` with the points, colours (0..1) and normals."""
        return self.to_mesh_data().to_open3d()


@dataclass
class Paint:
    """The filament of each triangle of a multi-material print solid.

    faces:  (F,) int16 filament per triangle (0 = the first), -1 = the object's own filament,
            which is the first: sides and base are left unpainted
    colors: (K, 3) uint8 sRGB of each filament, in the order of the printer's filament slots
    names:  K words for the legend ("white", "#2a5d8f")
    """

    faces: np.ndarray
    colors: np.ndarray
    names: tuple

    def __post_init__(self) -> None:
        self.faces = np.ascontiguousarray(self.faces, dtype=np.int16).reshape(-1)
        self.colors = np.ascontiguousarray(self.colors, dtype=np.uint8).reshape(-1, 3)
        self.names = tuple(str(name) for name in self.names)
        if len(self.names) != len(self.colors) or not len(self.colors):
            raise MeshError(f"paint needs one name per filament colour, got {len(self.names)} for {len(self.colors)}")
        if self.faces.size and (self.faces.min() < -1 or self.faces.max() >= len(self.colors)):
            raise MeshError(f"paint names filaments {self.faces.min()}..{self.faces.max()} of {len(self.colors)}")


@dataclass
class MeshData:
    """A triangle mesh (or, with no faces, a point cloud) as numpy arrays.

    vertices: (N, 3) float32 positions in `frame`
    faces:    (F, 3) int32 vertex indices, counter-clockwise seen from the camera / outside
    uvs:      (N, 2) float32 texture coordinates in [0, 1], v up; None without a texture
    colors:   (N, 3) uint8 RGB per vertex, or None
    normals:  (N, 3) float32 unit vertex normals, or None
    frame:    "opencv" (metres, camera frame) or "print_mm" (millimetres, z up)
    paint:    the filament of each face of a multi-material solid (`Paint`), or None
    """

    vertices: np.ndarray
    faces: np.ndarray
    uvs: Optional[np.ndarray] = None
    colors: Optional[np.ndarray] = None
    normals: Optional[np.ndarray] = None
    frame: str = "opencv"
    paint: Optional[Paint] = None

    def __post_init__(self) -> None:
        self.vertices = _rows_of(self.vertices, 3, np.float32, "vertices")
        faces = _rows_of(self.faces, 3, None, "faces")
        if not np.issubdtype(faces.dtype, np.integer):
            faces = faces.astype(np.int64)
        n = len(self.vertices)
        if faces.size and (faces.min() < 0 or faces.max() >= n):
            raise MeshError(f"faces index vertices {faces.min()}..{faces.max()}, but there are {n} vertices")
        self.faces = faces.astype(np.int32, copy=False)
        if self.uvs is not None:
            self.uvs = np.ascontiguousarray(self.uvs, dtype=np.float32).reshape(n, 2)
        if self.colors is not None:
            self.colors = np.ascontiguousarray(self.colors, dtype=np.uint8).reshape(n, 3)
        if self.normals is not None:
            self.normals = np.ascontiguousarray(self.normals, dtype=np.float32).reshape(n, 3)
        if self.frame not in FRAMES:
            raise ValueError(f"unknown mesh frame {self.frame!r}; expected one of {FRAMES}")
        if self.paint is not None and len(self.paint.faces) != len(self.faces):
            raise MeshError(f"paint has {len(self.paint.faces)} faces for a mesh of {len(self.faces)}")

    @property
    def is_points(self) -> bool:
        """True for a point cloud (no faces)."""
        return len(self.faces) == 0

    def bounds(self) -> np.ndarray:
        """(2, 3) min and max corner of the vertices (zeros when empty)."""
        if len(self.vertices) == 0:
            return np.zeros((2, 3), dtype=np.float64)
        v = self.vertices.astype(np.float64)
        return np.stack([v.min(axis=0), v.max(axis=0)])

    def face_normals(self) -> np.ndarray:
        """(F, 3) float32 unit face normals (zero for degenerate faces), by the winding."""
        corners = self.vertices[self.faces]
        normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
        length = np.linalg.norm(normals, axis=1, keepdims=True)
        return np.divide(normals, length, out=np.zeros_like(normals), where=length > 0)

    def transformed(self, matrix: np.ndarray, scale: float = 1.0, frame: Optional[str] = None) -> "MeshData":
        """A copy with vertices mapped by the 3x3 rotation `matrix` times `scale`.

        Normals are rotated too. A reflection (det < 0) flips the faces' winding so that
        they keep facing the same side.
        """
        matrix = np.asarray(matrix, dtype=np.float64)
        vertices = (self.vertices.astype(np.float64) @ matrix.T) * scale
        normals = None if self.normals is None else (self.normals.astype(np.float64) @ matrix.T)
        faces = self.faces if np.linalg.det(matrix) > 0 else self.faces[:, ::-1]
        return replace(self, vertices=vertices, faces=faces.copy(), normals=normals,
                       frame=frame or self.frame)

    def to_trimesh(self, process: bool = False):
        """A `trimesh.Trimesh` (or `trimesh.PointCloud` when there are no faces) of this mesh."""
        import trimesh  # heavy (~1 s to load): imported on first use

        colors = None if self.colors is None else np.column_stack(
            [self.colors, np.full(len(self.colors), 255, np.uint8)])
        if self.is_points:
            return trimesh.PointCloud(self.vertices.copy(), colors=colors)
        # float32 face normals here are several times faster than trimesh's float64 ones.
        return trimesh.Trimesh(vertices=self.vertices.copy(), faces=self.faces.copy(),
                               face_normals=self.face_normals(),
                               vertex_normals=None if self.normals is None else self.normals.copy(),
                               vertex_colors=colors, process=process)

    def to_open3d(self):
        """An `open3d.geometry.TriangleMesh` (or `PointCloud` when there are no faces)."""
        import open3d as o3d  # heavy (~3 s to load): imported on first use

        vectors = o3d.utility.Vector3dVector
        if self.is_points:
            geometry = o3d.geometry.PointCloud(vectors(self.vertices.astype(np.float64)))
        else:
            geometry = o3d.geometry.TriangleMesh(vectors(self.vertices.astype(np.float64)),
                                                 o3d.utility.Vector3iVector(self.faces))
        prefix = "" if self.is_points else "vertex_"
        if self.colors is not None:
            setattr(geometry, prefix + "colors", vectors(self.colors.astype(np.float64) / 255.0))
        if self.normals is not None:
            setattr(geometry, prefix + "normals", vectors(self.normals.astype(np.float64)))
        return geometry

    @classmethod
    def from_open3d(cls, geometry, frame: str = "opencv") -> "MeshData":
        """A `MeshData` from an Open3D `TriangleMesh` (colours and normals when present)."""
        vertices = np.asarray(geometry.vertices)
        colors = np.asarray(geometry.vertex_colors)
        normals = np.asarray(geometry.vertex_normals)
        return cls(
            vertices=vertices,
            faces=np.asarray(geometry.triangles),
            colors=np.clip(np.rint(colors * 255.0), 0, 255) if len(colors) == len(vertices) and len(colors) else None,
            normals=normals if len(normals) == len(vertices) and len(normals) else None,
            frame=frame,
        )
