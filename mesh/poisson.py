"""Poisson surface reconstruction of a lifted point cloud (Open3D, or pymeshlab's screened Poisson).

Normals are estimated (when not given) and oriented toward the camera at the origin; the
surface is trimmed where the octree's sample density is low (Poisson's invented skin) and
cropped to the cloud's bounding box; vertex colours are carried over.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from mesh.data import MeshData
from ppd_core.errors import BadInputError
from ppd_core.progress import ProgressCallback, report

BACKENDS = ("open3d", "pymeshlab")
#: Octree depths accepted. Below 5 Open3D's solver prints hundreds of warnings, raises, or
#: aborts the process (seen at depth 1-4 on a flat 64x48 cloud); above 12 memory explodes.
MIN_DEPTH, MAX_DEPTH = 5, 12
STAGE = "mesh"


def oriented_normals(points: np.ndarray, neighbours: int = 30) -> np.ndarray:
    """(N, 3) float32 unit normals from the `neighbours` nearest points, facing the origin."""
    import open3d as o3d

    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(points, dtype=np.float64)))
    cloud.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(neighbours))
    cloud.orient_normals_towards_camera_location(np.zeros(3))
    return np.asarray(cloud.normals, dtype=np.float32)


def _open3d_poisson(points, colors, normals, depth):
    import open3d as o3d

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


def _pymeshlab_poisson(points, colors, normals, depth):
    import pymeshlab

    rgba = None
    if colors is not None:
        rgba = np.column_stack([colors.astype(np.float64) / 255.0, np.ones(len(colors))])
    source = pymeshlab.Mesh(vertex_matrix=points.astype(np.float64),
                            v_normals_matrix=normals.astype(np.float64),
                            **({} if rgba is None else {"v_color_matrix": rgba}))
    meshes = pymeshlab.MeshSet()
    meshes.add_mesh(source)
    # One thread: pymeshlab's OpenMP workers spin-wait, and on a shared CPU two threads were
    # measured 15x slower than one.
    meshes.generate_surface_reconstruction_screened_poisson(depth=depth, preclean=True, threads=1)
    surface = meshes.current_mesh()
    vertices = surface.vertex_matrix()
    mesh = MeshData(
        vertices=vertices,
        faces=surface.face_matrix(),
        colors=None if colors is None else np.clip(np.rint(surface.vertex_color_matrix()[:, :3] * 255), 0, 255),
        normals=surface.vertex_normal_matrix(),
    )
    # The screened Poisson filter stores each vertex's sample density as its quality.
    return mesh, np.asarray(surface.vertex_scalar_array(), dtype=np.float64)


def _keep_vertices(mesh: MeshData, keep: np.ndarray) -> MeshData:
    """The faces whose three vertices are all kept, with unused vertices dropped."""
    from mesh.grid import compact

    faces = mesh.faces[keep[mesh.faces].all(axis=1)]
    return compact(MeshData(mesh.vertices, faces, mesh.uvs, mesh.colors, mesh.normals, mesh.frame))


def poisson_mesh(points: np.ndarray, colors: Optional[np.ndarray] = None,
                 normals: Optional[np.ndarray] = None, *, depth: int = 9,
                 trim_quantile: float = 0.02, backend: str = "open3d",
                 on_progress: Optional[ProgressCallback] = None) -> MeshData:
    """A watertight-then-trimmed Poisson surface of a point cloud in the OpenCV camera frame.

    depth: octree depth (9 is about 512^3 cells; each step up is ~4x the time)
    trim_quantile: vertices whose density is below this quantile are removed (0 keeps all)
    backend: "open3d" (default) or "pymeshlab" (screened Poisson)
    The solve itself cannot be interrupted; `on_progress` may cancel between steps.
    """
    if backend not in BACKENDS:
        raise BadInputError(f"unknown Poisson backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    points = np.asarray(points, dtype=np.float32)
    if points.ndim != 2 or points.shape[1] != 3:
        raise BadInputError(f"Poisson reconstruction needs (N, 3) points, got shape {points.shape}")
    for name, values in (("colors", colors), ("normals", normals)):
        if values is not None and np.shape(values) != points.shape:
            raise BadInputError(f"Poisson {name} must match the points' shape {points.shape}, got {np.shape(values)}")
    finite = np.isfinite(points).all(axis=1)  # Open3D crashes (segfault) on NaN points
    if normals is not None:
        finite &= np.isfinite(np.asarray(normals, dtype=np.float32)).all(axis=1)
    if not finite.all():
        points = points[finite]
        colors = None if colors is None else np.asarray(colors)[finite]
        normals = None if normals is None else np.asarray(normals)[finite]
    if len(points) < 4:
        raise BadInputError(f"Poisson reconstruction needs at least 4 finite points, got {len(points)}")
    if not np.ptp(points, axis=0).max() > 0:  # Open3D crashes on a zero-size bounding box too
        raise BadInputError(f"Poisson reconstruction needs points spread in space; all {len(points)} are at one place")
    if not MIN_DEPTH <= int(depth) <= MAX_DEPTH:
        raise BadInputError(f"Poisson depth must be {MIN_DEPTH}..{MAX_DEPTH}, got {depth}")
    if not 0.0 <= trim_quantile < 1.0:
        raise BadInputError(f"trim quantile must be in [0, 1), got {trim_quantile}")
    report(on_progress, STAGE, 0.0, "estimating normals" if normals is None else "Poisson")
    if normals is None:
        normals = oriented_normals(points)
    report(on_progress, STAGE, 0.1, f"Poisson reconstruction (depth {depth}, {backend})")
    solve = _open3d_poisson if backend == "open3d" else _pymeshlab_poisson
    mesh, density = solve(points, colors, np.asarray(normals, dtype=np.float32), int(depth))
    report(on_progress, STAGE, 0.9, "trimming")
    keep = np.ones(len(mesh.vertices), dtype=bool)
    if trim_quantile > 0 and len(density) == len(keep):
        keep &= density >= np.quantile(density, trim_quantile)
    lower, upper = points.min(axis=0), points.max(axis=0)
    keep &= np.all((mesh.vertices >= lower) & (mesh.vertices <= upper), axis=1)
    mesh = _keep_vertices(mesh, keep)
    report(on_progress, STAGE, 1.0, f"{len(mesh.faces)} triangles")
    return mesh
