"""Meshing and print prep: grid triangulation, Poisson, decimation, solids, checks, exports.

Inputs are numpy arrays (or a `ppd_core.lift.LiftResult`); every mesher returns a
`MeshData`, which converts to trimesh and Open3D and is what `mesh.export` writes.
"""

from mesh.checks import MeshReport, check_mesh
from mesh.data import MeshData
from mesh.decimate import decimate
from mesh.export import EXPORTERS, CameraInfo, export
from mesh.grid import grid_mesh
from mesh.poisson import poisson_mesh
from mesh.solid import relief_solid, solid_from_mesh

__all__ = [
    "CameraInfo", "EXPORTERS", "MeshData", "MeshReport", "check_mesh", "decimate", "export",
    "grid_mesh", "poisson_mesh", "relief_solid", "solid_from_mesh",
]
