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
from mesh.solid import solid_from_mesh, relief_solid

__all__ = [
    "CameraInfo", "EXPORTERS", "MeshData", "MeshReport", "check_mesh", "decimate", "export",
    "solid_from_mesh", "grid_mesh", "poisson_mesh", "relief_solid",
]
