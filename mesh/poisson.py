"""Poisson surface reconstruction of a lifted point cloud (Open3D).

Normals are estimated (when not given) and oriented toward the camera at the origin; the
surface is trimmed where the octree's sample density is low (Poisson's invented skin) and
cropped to the cloud's bounding box; vertex colours are carried over.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from mesh.data import MeshData, MeshError
from mesh.grid import compact
from mesh.limits import POISSON_DEPTHS

#: Progress of the reconstruction: (fraction done, message). It may raise to cancel.
Progress = Callable[[float, str], None]


def oriented_normals(points: np.ndarray, neighbours: int = 30) -> np.ndarray:
    """(N, 3) float32 unit normals from the `neighbours` nearest points, facing the origin."""
    import open3d as o3d  # heavy (~3 s to load): imported on first use

    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(points, dtype=np.float64)))
    cloud.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(neighbours))
    cloud.orient_normals_towards_camera_location(np.zeros(3))
    return np.asarray(cloud.normals, dtype=np.float32)


def _open3d_poisson(points: np.ndarray, colors: Optional[np.ndarray], normals: np.ndarray,
                    depth: int) -> tuple[MeshData, np.ndarray]:
    """The Poisson surface and each vertex's sample density."""
    import open3d as o3d  # heavy (~3 s to load): imported on first use

    vectors = o3d.utility.Vector3dVector
    cloud = o3d.geometry.PointCloud(vectors(points.astype(np.float64)))
    cloud.normals = vectors(normals.astype(np.float64))
    if colors is not None:
        cloud.colors = vectors(colors.astype(np.float64) / 255.0)
    with o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error):
        surface, density = o3d.geometry.TriangleMesh.create_from_point_cloud_poisson(cloud, depth=depth)
    mesh = MeshData.from_open3d(surface)
    if colors is None:
        mesh.colors = None
    return mesh, np.asarray(density, dtype=np.float64)


def _keep_vertices(mesh: MeshData, keep: np.ndarray) -> MeshData:
    """The faces whose three vertices are all kept, with unused vertices dropped."""
    faces = mesh.faces[keep[mesh.faces].all(axis=1)]
    return compact(MeshData(mesh.vertices, faces, mesh.uvs, mesh.colors, mesh.normals, mesh.frame))


def poisson_mesh(points: np.ndarray, colors: Optional[np.ndarray] = None,
                 normals: Optional[np.ndarray] = None, *, depth: int = 9,
                 trim_quantile: float = 0.02, on_progress: Optional[Progress] = None) -> MeshData:
    """A watertight-then-trimmed Poisson surface of a point cloud in the OpenCV camera frame.

    depth: octree depth (9 is about 512^3 cells; each step up is ~4x the time)
    trim_quantile: vertices whose density is below this quantile are removed (0 keeps all)
    The solve itself cannot be interrupted; `on_progress` may cancel between steps.
    """
    report = on_progress or (lambda fraction, message: None)
    points = np.asarray(points, dtype=np.float32)
    if points.ndim != 2 or points.shape[1] != 3:
        raise MeshError(f"Poisson reconstruction needs (N, 3) points, got shape {points.shape}")
    for name, values in (("colors", colors), ("normals", normals)):
        if values is not None and np.shape(values) != points.shape:
            raise MeshError(f"Poisson {name} must match the points' shape {points.shape}, got {np.shape(values)}")
    finite = np.isfinite(points).all(axis=1)  # Open3D crashes (segfault) on NaN points
    if normals is not None:
        finite &= np.isfinite(np.asarray(normals, dtype=np.float32)).all(axis=1)
    if not finite.all():
        points = points[finite]
        colors = None if colors is None else np.asarray(colors)[finite]
        normals = None if normals is None else np.asarray(normals)[finite]
    if len(points) < 4:
        raise MeshError(f"Poisson reconstruction needs at least 4 finite points, got {len(points)}")
    if not np.ptp(points, axis=0).max() > 0:  # Open3D crashes on a zero-size bounding box too
        raise MeshError(f"Poisson reconstruction needs points spread in space; all {len(points)} are at one place")
    if not POISSON_DEPTHS[0] <= int(depth) <= POISSON_DEPTHS[1]:
        raise MeshError(f"Poisson depth must be {POISSON_DEPTHS[0]}..{POISSON_DEPTHS[1]}, got {depth}")
    if not 0.0 <= trim_quantile < 1.0:
        raise MeshError(f"trim quantile must be in [0, 1), got {trim_quantile}")
    report(0.0, "estimating normals" if normals is None else "Poisson")
    if normals is None:
        normals = oriented_normals(points)
    report(0.1, f"Poisson reconstruction (depth {depth})")
    mesh, density = _open3d_poisson(points, colors, np.asarray(normals, dtype=np.float32), int(depth))
    report(0.9, "trimming")
    keep = np.ones(len(mesh.vertices), dtype=bool)
    if trim_quantile > 0 and len(density) == len(keep):
        keep &= density >= np.quantile(density, trim_quantile)
    lower, upper = points.min(axis=0), points.max(axis=0)
    keep &= np.all((mesh.vertices >= lower) & (mesh.vertices <= upper), axis=1)
    mesh = _keep_vertices(mesh, keep)
    report(1.0, f"{len(mesh.faces)} triangles")
    return mesh
