"""Poisson reconstruction: surface on the cloud, facing the camera, trimmed, cropped, coloured."""

import numpy as np
import pytest

from mesh.poisson import oriented_normals, poisson_mesh
from mesh.data import MeshError


def bump_cloud(height=60, width=80, focal=80.0):
    y, x = np.mgrid[0:height, 0:width]
    z = 2.0 - 0.3 * np.exp(-((x - width / 2) ** 2 + (y - height / 2) ** 2) / 200.0)
    points = np.stack([(x + 0.5 - width / 2) / focal * z, (y + 0.5 - height / 2) / focal * z, z], -1)
    colors = np.zeros((height, width, 3), np.uint8)
    colors[..., 0] = 200
    colors[..., 2] = np.where(x < width / 2, 0, 250)
    return points.reshape(-1, 3).astype(np.float32), colors.reshape(-1, 3)


def test_estimated_normals_face_the_camera():
    points, _ = bump_cloud()
    normals = oriented_normals(points)
    assert np.all(np.einsum("ij,ij->i", normals, -points) > 0)
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-5)


def test_surface_lies_on_the_cloud_and_keeps_colours():
    points, colors = bump_cloud()
    mesh = poisson_mesh(points, colors, depth=6)
    assert len(mesh.faces) > 500
    lower, upper = points.min(axis=0), points.max(axis=0)
    assert np.all(mesh.vertices >= lower - 1e-6) and np.all(mesh.vertices <= upper + 1e-6)
    # every vertex is close to the true surface z(x, y) of its viewing ray
    from scipy.spatial import cKDTree
    distance, nearest = cKDTree(points).query(mesh.vertices)
    assert np.percentile(distance, 95) < 0.03
    # colours come from the nearby points: red everywhere, blue only on the right half
    assert np.all(np.abs(mesh.colors[:, 0].astype(int) - 200) <= 3)
    right = mesh.vertices[:, 0] > 0.1
    left = mesh.vertices[:, 0] < -0.1
    assert mesh.colors[right, 2].mean() > 200 and mesh.colors[left, 2].mean() < 50
    # faces point at the camera like the cloud's normals
    v = mesh.vertices.astype(np.float64)
    n = np.cross(v[mesh.faces[:, 1]] - v[mesh.faces[:, 0]], v[mesh.faces[:, 2]] - v[mesh.faces[:, 0]])
    assert np.mean(n[:, 2] < 0) > 0.95


def test_density_trimming_removes_the_invented_skin_first():
    # Two planes at 1 m and 2 m: Poisson bridges them with a wall no point supports.
    y, x = np.mgrid[0:60, 0:80]
    z = np.where(x < 40, 1.0, 2.0)
    points = np.stack([(x + 0.5 - 40) / 80.0 * z, (y + 0.5 - 30) / 80.0 * z, z], -1).reshape(-1, 3)
    normals = np.tile([0.0, 0.0, -1.0], (len(points), 1))

    def wall_and_total(quantile):
        mesh = poisson_mesh(points, normals=normals, depth=6, trim_quantile=quantile)
        depth = mesh.vertices[:, 2]
        return np.count_nonzero((depth > 1.2) & (depth < 1.8)), len(depth)

    wall_all, total_all = wall_and_total(0.0)
    wall_trimmed, total_trimmed = wall_and_total(0.1)
    assert wall_trimmed < 0.8 * wall_all
    assert (wall_all - wall_trimmed) > 0.5 * (total_all - total_trimmed)


def test_progress_can_cancel_and_bad_arguments_are_clear():
    points, colors = bump_cloud(20, 20)

    class Stop(Exception):
        pass

    def cancel(fraction, message):
        if fraction >= 0.1:
            raise Stop("stop")

    with pytest.raises(Stop):
        poisson_mesh(points, colors, depth=5, on_progress=cancel)
    with pytest.raises(MeshError, match="at least 4 finite points"):
        poisson_mesh(points[:3], depth=5)


def test_non_finite_points_are_dropped_and_bad_shapes_refused():
    points, colors = bump_cloud(20, 20)
    points[::7] = np.nan  # Open3D used to crash the process (segfault) on these
    mesh = poisson_mesh(points, colors, depth=5)
    assert len(mesh.faces) > 100 and np.isfinite(mesh.vertices).all()
    with pytest.raises(MeshError, match=r"\(N, 3\) points"):
        poisson_mesh(points[:, :2], depth=5)
    with pytest.raises(MeshError, match="colors must match"):
        poisson_mesh(points, colors[:5], depth=5)
    with pytest.raises(MeshError, match="at one place"):
        poisson_mesh(np.ones((50, 3)), depth=5)
    for depth in (1, 4, 40):  # Open3D aborted the process at depth 1
        with pytest.raises(MeshError, match="Poisson depth must be 5..12"):
            poisson_mesh(points, depth=depth)
