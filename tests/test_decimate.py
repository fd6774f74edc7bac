"""Decimation hits its target and keeps the texture mapping, boundaries and colours."""

import numpy as np
import pytest

from mesh.decimate import decimate
from mesh.grid import grid_mesh
from mesh.data import MeshError
from tests.mesh_helpers import lift_depth, step_depth


@pytest.fixture(scope="module")
def step_mesh():
    depth = step_depth(60, 80, near=1.0, far=2.0, column=40)
    y, x = np.mgrid[0:60, 0:80]
    depth = depth + 0.05 * np.sin(x / 6.0) * np.cos(y / 7.0)
    return grid_mesh(lift_depth(depth, focal=80.0))


@pytest.mark.parametrize("target", [4000, 600])
def test_count_hits_the_target_within_five_percent(step_mesh, target):
    result = decimate(step_mesh, target)
    assert abs(len(result.faces) - target) <= 0.05 * target
    assert result.colors is not None and len(result.colors) == len(result.vertices)


def test_ratio_and_texture_coordinates_stay_on_their_pixels(step_mesh):
    result = decimate(step_mesh, ratio=0.25)
    target = round(0.25 * len(step_mesh.faces))
    assert abs(len(result.faces) - target) <= 0.05 * target
    v = result.vertices.astype(np.float64)
    u = (v[:, 0] / v[:, 2] * 80.0 + 40.0) / 80.0
    w = 1.0 - (v[:, 1] / v[:, 2] * 80.0 + 30.0) / 60.0
    assert np.percentile(np.hypot(u - result.uvs[:, 0], w - result.uvs[:, 1]), 99) < 0.01


def test_no_triangle_is_created_across_the_depth_step(step_mesh):
    result = decimate(step_mesh, 1000)
    z = result.vertices[:, 2][result.faces]
    assert not np.any((z.min(axis=1) < 1.4) & (z.max(axis=1) > 1.6))


def test_target_above_count_is_a_no_op_and_bad_targets_are_clear(step_mesh):
    assert decimate(step_mesh, 10 ** 7) is step_mesh
    with pytest.raises(MeshError, match="exactly one"):
        decimate(step_mesh)
    with pytest.raises(MeshError, match="ratio"):
        decimate(step_mesh, ratio=1.5)
    with pytest.raises(MeshError, match="at least 1"):
        decimate(step_mesh, 0)
