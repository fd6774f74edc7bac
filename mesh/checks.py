"""Print checks for a solid: watertight, winding, manifold, volume, degenerate faces, size."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Union

import manifold3d
import numpy as np

from mesh.data import MeshData

if TYPE_CHECKING:  # for annotations only
    import trimesh

#: Faces with less area than this (in the mesh's units squared) count as degenerate.
DEGENERATE_AREA = 1e-12


@dataclass(frozen=True)
class MeshReport:
    """What a slicer cares about, measured on one mesh (sizes in the mesh's units, mm for solids)."""

    vertices: int
    faces: int
    watertight: bool
    winding_consistent: bool
    manifold: bool
    volume: float
    degenerate_faces: int
    bounds_min: tuple[float, float, float]
    bounds_max: tuple[float, float, float]

    @property
    def size(self) -> tuple[float, float, float]:
        """Extent of the bounding box along x, y, z."""
        return tuple(float(b - a) for a, b in zip(self.bounds_min, self.bounds_max))

    @property
    def printable(self) -> bool:
        """True when a slicer can take the mesh as it is (degenerate faces are only counted:
        slicers drop zero-area triangles of a closed mesh without harm)."""
        return self.watertight and self.winding_consistent and self.manifold and self.volume > 0

    def summary(self, unit: str = "mm") -> str:
        """One line: size, volume and the yes/no checks, e.g. for the command's output."""
        x, y, z = self.size
        yes = {True: "yes", False: "NO"}
        return (f"{x:.2f} x {y:.2f} x {z:.2f} {unit}, volume {self.volume:.1f} {unit}^3, "
                f"watertight {yes[self.watertight]}, winding {yes[self.winding_consistent]}, "
                f"manifold {yes[self.manifold]}, degenerate faces {self.degenerate_faces}"
                f"{'' if self.printable else ' - NOT PRINTABLE'}")

    def to_dict(self) -> dict:
        """JSON-serialisable fields plus the size and the overall verdict."""
        return {**asdict(self), "size": list(self.size), "printable": self.printable}


def is_manifold(vertices: np.ndarray, faces: np.ndarray) -> bool:
    """True when manifold3d accepts the triangles as a closed, oriented 2-manifold."""
    if len(faces) == 0:
        return False
    mesh = manifold3d.Mesh(vert_properties=np.ascontiguousarray(vertices, dtype=np.float32),
                           tri_verts=np.ascontiguousarray(faces, dtype=np.uint32))
    return manifold3d.Manifold(mesh).status() == manifold3d.Error.NoError


def check_mesh(mesh: Union[MeshData, "trimesh.Trimesh"]) -> MeshReport:
    """Measure a mesh as a slicer reading its STL would see it: vertices at the same position
    merged, nothing else repaired."""
    import trimesh  # heavy (~1 s to load): imported on first use

    if isinstance(mesh, MeshData):
        mesh = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    surface = trimesh.Trimesh(np.asarray(mesh.vertices), np.asarray(mesh.faces), process=False)
    surface.merge_vertices()
    vertices = np.asarray(surface.vertices, dtype=np.float64)
    faces = np.asarray(surface.faces, dtype=np.int64)
    bounds = surface.bounds if len(vertices) else np.zeros((2, 3))
    watertight = bool(len(faces)) and bool(surface.is_watertight)
    return MeshReport(
        vertices=len(vertices),
        faces=len(faces),
        watertight=watertight,
        winding_consistent=bool(len(faces)) and bool(surface.is_winding_consistent),
        manifold=watertight and is_manifold(vertices, faces),
        volume=float(surface.volume) if watertight else 0.0,
        degenerate_faces=int(np.count_nonzero(surface.area_faces <= DEGENERATE_AREA)) if len(faces) else 0,
        bounds_min=tuple(float(v) for v in bounds[0]),
        bounds_max=tuple(float(v) for v in bounds[1]),
    )
