"""Grid triangulation: geometry, winding toward the camera, cuts at depth edges, UVs."""

import numpy as np

from mesh.data import pixel_uvs
from mesh.grid import grid_mesh
from tests.mesh_helpers import lift_depth, step_depth


def face_normals(mesh):
    v = mesh.vertices.astype(np.float64)
    a, b, c = v[mesh.faces[:, 0]], v[mesh.faces[:, 1]], v[mesh.faces[:, 2]]
    return np.cross(b - a, c - a)


def test_full_plane_gives_two_triangles_per_quad_facing_the_camera():
    mesh = grid_mesh(lift_depth(np.full((10, 12), 2.0)))
    assert len(mesh.faces) == 2 * 9 * 11
    assert len(mesh.vertices) == 120
    normals = face_normals(mesh)
    assert np.all(normals[:, 2] < 0)  # toward the camera at the origin (OpenCV z forward)
    assert mesh.faces.dtype == np.int32 and mesh.vertices.dtype == np.float32


def test_no_triangle_spans_a_depth_step():
    lift = lift_depth(step_depth(near=1.0, far=3.0, column=32))
    mesh = grid_mesh(lift)
    z = mesh.vertices[:, 2][mesh.faces]
    assert np.all(z.max(axis=1) / z.min(axis=1) - 1 <= 0.05)
    # both sides are still meshed: 2 triangles per quad on each side, none across
    assert len(mesh.faces) == 2 * 47 * 31 + 2 * 47 * 31


def test_invalid_pixels_make_holes_and_unused_vertices_go():
    depth = np.full((8, 8), 2.0)
    depth[3, 3] = np.nan
    depth[0, 7] = 0.0  # the top-right corner
    mesh = grid_mesh(lift_depth(depth))
    # Quads split along the top-right/bottom-left diagonal: an inner pixel is in 6 triangles,
    # the top-right corner pixel in both triangles of its one quad.
    assert len(mesh.faces) == 2 * 49 - 6 - 2
    assert len(mesh.vertices) == 62
    used = np.zeros(len(mesh.vertices), bool)
    used[mesh.faces.ravel()] = True
    assert used.all()


def test_uvs_point_at_pixel_centres_with_v_up():
    uvs = pixel_uvs(np.array([0, 3, 4, 7]), (2, 4))
    np.testing.assert_allclose(uvs, [[0.125, 0.75], [0.875, 0.75], [0.125, 0.25], [0.875, 0.25]])


def test_mesh_uvs_and_colours_follow_their_pixels():
    depth = np.linspace(1.0, 1.5, 30 * 40).reshape(30, 40)
    lift = lift_depth(depth, focal=50.0)
    mesh = grid_mesh(lift)
    v = mesh.vertices.astype(np.float64)
    x = v[:, 0] / v[:, 2] * 50.0 + 20.0  # continuous image coordinate of each vertex
    y = v[:, 1] / v[:, 2] * 50.0 + 15.0
    np.testing.assert_allclose(mesh.uvs[:, 0], x / 40.0, atol=1e-5)
    np.testing.assert_allclose(mesh.uvs[:, 1], 1.0 - y / 30.0, atol=1e-5)
    column = np.rint(x - 0.5).astype(int)
    np.testing.assert_array_equal(mesh.colors[:, 0], column * 255 // 39)


def test_real_lift_of_a_smeared_step_meshes_nothing_in_the_gap():
    """Through ppd_core.lift: a blurred or resized step has in-between depths; none is meshed."""
    import cv2

    from ppd_core.geometry.camera import intrinsics_from_fov
    from ppd_core.geometry.lift import lift

    height, width = 96, 128
    sharp = step_depth(height, width, near=1.0, far=1.5, column=64).astype(np.float32)
    photo = np.zeros((height, width, 3), np.uint8)
    photo[:, :64] = 200
    photo[:, 64:] = 40
    smeared = {
        "blurred": cv2.GaussianBlur(sharp, (0, 0), 1.5),
        "resized": cv2.resize(cv2.resize(sharp, (32, 24), interpolation=cv2.INTER_AREA), (width, height),
                              interpolation=cv2.INTER_LINEAR),
    }
    for name, depth in smeared.items():
        mesh = grid_mesh(lift(depth, intrinsics_from_fov(width, height, 60.0), photo))
        z = mesh.vertices[:, 2][mesh.faces]
        assert not np.any((z > 1.05) & (z < 1.45)), name
        assert np.all(z.max(axis=1) / z.min(axis=1) - 1 <= 0.05), name
        assert len(mesh.faces) > 0.9 * 2 * (height - 1) * (width - 1), name


def test_grainy_depth_keeps_its_triangles_and_still_cuts_the_step():
    """2.5% pixel noise is not a depth edge (a fixed 5% span would drop a third of the quads)."""
    from ppd_core.geometry.camera import intrinsics_from_fov
    from ppd_core.geometry.lift import lift

    rng = np.random.default_rng(0)
    height, width = 120, 160
    depth = np.full((height, width), 3.0, np.float32)
    depth[30:90, 40:100] = 1.5
    depth = (depth * (1 + 0.025 * rng.standard_normal((height, width)))).astype(np.float32)
    mesh = grid_mesh(lift(depth, intrinsics_from_fov(width, height, 60.0)))
    assert len(mesh.faces) > 0.95 * 2 * (height - 1) * (width - 1)
    z = mesh.vertices[mesh.faces][:, :, 2]
    assert not np.any((z.min(axis=1) < 2.0) & (z.max(axis=1) > 2.2))
