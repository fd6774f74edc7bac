"""Relief options: frame, rounded corners, hangers, curved panel, smoothing, silhouette, budget.

Each solid is printable (watertight, consistently wound, manifold, as a slicer merges it) and
measured in millimetres against what the option promises; its shape is probed with rays.
"""

import math

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mesh.checks import check_mesh
from mesh.data import MeshError
from mesh.print_options import (HOLE_MM, KEYHOLE_BASE_MM, KEYHOLE_HEAD_ROOM_MM, KEYHOLE_LIP_MM, KEYHOLE_SHANK_MM,
                                KEYHOLE_SLOT_MM, shape_problem)
from mesh.relief_print import ReliefSpec, relief_print, stl_face_budget
from mesh.relief_hanger import KEYHOLE_ENTRY_MM
from mesh.relief_layout import picture_layout, reaching_layout
from mesh.relief_shape import smoothed
from mesh.solid import relief_solid


def box_depth(height=48, width=64):
    """A near box (rows 10..34, columns 15..44) before a far wall."""
    depth = np.full((height, width), 2.0, np.float32)
    depth[10:35, 15:45] = 1.0
    return depth


def first_hits(solid, origins, direction):
    """Distance along `direction` to the solid from each origin (inf: a miss), Open3D rays."""
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(solid.vertices.astype(np.float32), solid.faces.astype(np.uint32))
    origins = np.atleast_2d(np.asarray(origins, np.float32))
    rays = np.column_stack([origins, np.broadcast_to(np.asarray(direction, np.float32), origins.shape)])
    return scene.cast_rays(o3d.core.Tensor(rays.astype(np.float32)))["t_hit"].numpy()


def top_at(solid, xy):
    """Height of the top surface above each (x, y); -inf where there is none."""
    xy = np.atleast_2d(xy)
    hits = first_hits(solid, np.column_stack([xy, np.full(len(xy), 1000.0)]), (0, 0, -1))
    return 1000.0 - hits


def printable(solid):
    report = check_mesh(solid)
    assert report.printable and report.degenerate_faces == 0, report.summary()
    return report


def test_without_options_it_is_exactly_the_plain_relief():
    depth = box_depth()
    plain = relief_solid(depth, width_mm=60.0, relief_mm=4.0, base_mm=1.5)
    solid = relief_print(depth, spec=ReliefSpec(width_mm=60.0, relief_mm=4.0, base_mm=1.5))
    np.testing.assert_array_equal(solid.vertices, plain.vertices)
    np.testing.assert_array_equal(solid.faces, plain.faces)


def test_frame_surrounds_the_picture_within_the_width_at_its_height():
    solid = relief_print(box_depth(), spec=ReliefSpec(width_mm=60.0, relief_mm=4.0, base_mm=1.5, frame_mm=5.0,
                                                      frame_height_mm=3.0))
    report = printable(solid)
    picture_length = 50.0 * 48 / 64  # the picture is 60 - 2 x 5 mm wide, the photo's aspect
    assert report.size == pytest.approx((60.0, picture_length + 10.0, 5.5), abs=1e-4)
    frame = [(-27.5, 0.0), (27.5, 0.0), (0.0, picture_length / 2 + 2.5), (0.0, -picture_length / 2 - 2.5)]
    np.testing.assert_allclose(top_at(solid, frame), 1.5 + 3.0, atol=1e-3)
    assert top_at(solid, [(0.0, 0.0)])[0] == pytest.approx(5.5, abs=1e-3)  # the near box, full relief
    assert top_at(solid, [(-22.0, 0.0)])[0] == pytest.approx(1.5, abs=1e-3)  # the far wall, the base


def test_a_frame_is_as_high_as_the_relief_unless_told():
    solid = relief_print(box_depth(), spec=ReliefSpec(width_mm=60.0, relief_mm=4.0, base_mm=1.5, frame_mm=4.0))
    assert top_at(solid, [(-28.0, 0.0)])[0] == pytest.approx(5.5, abs=1e-3)


@pytest.mark.parametrize("frame", [0.0, 5.0])
def test_rounded_corners_cut_exactly_the_corner_area(frame):
    flat = np.full((45, 60), 1.0, np.float32)  # every pixel as near: a flat slab 1 + 2 mm thick
    radius = 6.0
    solid = relief_print(flat, spec=ReliefSpec(width_mm=60.0, relief_mm=2.0, base_mm=1.0, corner_mm=radius,
                                               frame_mm=frame, frame_height_mm=2.0))
    report = printable(solid)
    length = (60.0 - 2 * frame) * 45 / 60 + 2 * frame
    assert report.size == pytest.approx((60.0, length, 3.0), abs=1e-4)
    # The slab's volume: its footprint, less a square minus a quarter disc at each corner (the
    # arcs are polygons with 0.3 mm sides, a hair inside the circle).
    footprint = 60.0 * length - (4 - math.pi) * radius**2
    assert report.volume == pytest.approx(3.0 * footprint, rel=2e-3)
    corner = 30.0 - radius + radius / math.sqrt(2)  # on the arc, 45 degrees round
    assert np.isinf(first_hits(solid, [(corner + 0.1, length / 2 - radius + radius / math.sqrt(2) + 0.1, 10.0)],
                               (0, 0, -1))[0])
    inside = (corner - 0.3, length / 2 - radius + radius / math.sqrt(2) - 0.3)
    assert top_at(solid, [inside])[0] == pytest.approx(3.0, abs=1e-3)


def test_hanging_hole_goes_through_near_the_top_edge_in_the_middle():
    solid = relief_print(box_depth(), spec=ReliefSpec(width_mm=60.0, relief_mm=4.0, base_mm=1.5, hanger="hole"))
    printable(solid)
    xs = np.linspace(-29.9, 29.9, 1197)  # rays just inside the outline (one along a side may slip by)
    ys = np.linspace(-22.4, 22.4, 897)
    grid = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)
    missing = grid[np.isinf(first_hits(solid, np.column_stack([grid, np.full(len(grid), 50.0)]), (0, 0, -1)))]
    centre = missing.mean(axis=0)
    # 3 mm of solid above it, and moved down into the middle of a grid cell (about 1 mm here)
    assert abs(centre[0]) < 0.5 and HOLE_MM / 2 + 3.0 < 22.5 - centre[1] < HOLE_MM / 2 + 3.0 + 1.5
    assert np.ptp(missing[:, 0]) == pytest.approx(HOLE_MM, abs=0.15)  # a 5 mm hole
    assert len(missing) * 0.05**2 == pytest.approx(math.pi * (HOLE_MM / 2) ** 2, rel=0.05)


def test_a_wide_frame_holds_the_hole_in_its_middle():
    solid = relief_print(box_depth(), spec=ReliefSpec(width_mm=60.0, relief_mm=4.0, base_mm=1.5, hanger="hole",
                                                      frame_mm=9.0))
    printable(solid)
    length = 42.0 * 48 / 64 + 18.0
    assert np.isinf(first_hits(solid, [(0.1, length / 2 - 4.5, 50.0)], (0, 0, -1))[0])


def test_keyhole_is_a_pocket_in_the_back_under_a_roof():
    depth = box_depth()
    spec = ReliefSpec(width_mm=60.0, relief_mm=4.0, base_mm=KEYHOLE_BASE_MM, hanger="keyhole")
    solid = relief_print(depth, spec=spec)
    report = printable(solid)
    assert report.size == pytest.approx((60.0, 45.0, KEYHOLE_BASE_MM + 4.0), abs=1e-4)
    xs, ys = np.linspace(-29.9, 29.9, 599), np.linspace(-22.4, 22.4, 449)
    grid = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)
    up = first_hits(solid, np.column_stack([grid, np.full(len(grid), -5.0)]), (0, 0, 1)) - 5.0
    pocket = grid[up > 0.01]
    pocket_depth = KEYHOLE_LIP_MM + KEYHOLE_HEAD_ROOM_MM
    assert up.max() == pytest.approx(pocket_depth, abs=1e-3)  # the roof, 1 mm under the base's top
    assert np.ptp(pocket[:, 0]) == pytest.approx(KEYHOLE_ENTRY_MM, abs=0.2)  # the round entry is the widest part
    # Seen from behind: the entry and the shank's slot above it (the head room hides behind the lip).
    assert np.ptp(pocket[:, 1]) == pytest.approx(KEYHOLE_SLOT_MM + (KEYHOLE_ENTRY_MM + KEYHOLE_SHANK_MM) / 2, abs=0.3)
    entry = pocket[:, 1].min() + KEYHOLE_ENTRY_MM / 2
    hang = entry + KEYHOLE_SLOT_MM
    centre = pocket[:, 0].mean()
    # Where the screw hangs: an open slot at the back for the shank, the lip beside it under the head room.
    assert up[np.argmin(np.hypot(grid[:, 0] - centre, grid[:, 1] - hang))] == pytest.approx(pocket_depth, abs=1e-3)
    beside = np.argmin(np.hypot(grid[:, 0] - centre - 3.5, grid[:, 1] - hang))
    assert up[beside] == pytest.approx(0.0, abs=1e-3)
    assert first_hits(solid, [(centre + 3.5, hang, 0.5)], (0, 0, 1))[0] == pytest.approx(KEYHOLE_LIP_MM - 0.5, abs=1e-3)
    # Nothing shows through the front.
    assert np.isfinite(top_at(solid, pocket[::7])).all()


def test_curved_panel_stands_on_a_cylinder_of_the_radius():
    flat = np.full((45, 60), 1.0, np.float32)
    radius, thickness = 50.0, 3.0
    solid = relief_print(flat, spec=ReliefSpec(width_mm=60.0, relief_mm=2.0, base_mm=1.0, curve_radius_mm=radius))
    report = printable(solid)
    half = 60.0 / radius / 2
    # The front is a polygon of 1 mm cells (the map's 60 px): its chords lie 1/(8 R) mm inside the arc.
    assert report.size == pytest.approx((2 * (radius + thickness) * math.sin(half),
                                         thickness + radius * (1 - math.cos(half)), 45.0), abs=3e-3)
    assert report.bounds_min[2] == pytest.approx(0.0, abs=1e-9)
    # Every point between the back's cylinder and the front's, about the axis behind the panel.
    low, high = np.array(report.bounds_min), np.array(report.bounds_max)
    axis = np.array([(low[0] + high[0]) / 2, high[1] - radius * (1 - math.cos(half)) + radius])
    distance = np.hypot(solid.vertices[:, 0] - axis[0], solid.vertices[:, 1] - axis[1])
    assert distance.min() == pytest.approx(radius, abs=0.02) and distance.max() == pytest.approx(radius + 3.0, abs=0.02)
    # The straight edges stay on the arc: sample the back face between vertices.
    assert report.volume == pytest.approx(0.5 * half * 2 * ((radius + 3) ** 2 - radius**2) * 45.0, rel=1e-3)


def test_too_tight_a_curve_or_too_wide_a_frame_is_refused_in_words():
    assert "at least 19.1 mm" in shape_problem(width_mm=60.0, base_mm=2.0, curve_radius_mm=10.0)
    assert "leaves nothing" in shape_problem(width_mm=60.0, base_mm=2.0, frame_mm=30.0)
    assert "--base-mm 5" in shape_problem(width_mm=60.0, base_mm=2.0, hanger="keyhole")
    with pytest.raises(MeshError, match="no room for a keyhole"):
        relief_print(np.ones((8, 64), np.float32), spec=ReliefSpec(width_mm=64.0, base_mm=5.0, hanger="keyhole"))


def test_smoothing_calms_grain_and_keeps_the_step():
    rng = np.random.default_rng(0)
    heights = np.where(np.arange(120)[None, :] < 60, 0.2, 0.9) + rng.normal(0, 0.02, (80, 120))
    smooth = smoothed(np.clip(heights, 0, 1), radius_px=4)
    assert smooth.max() == pytest.approx(1.0)
    flat = smooth[10:70, 10:50]
    assert flat.std() < 0.3 * heights[10:70, 10:50].std()
    # the step is still a step: within 2 px of it both sides keep nearly their levels
    step = smooth[:, 57] - smooth[:, 62]
    assert np.median(np.abs(step)) > 0.9 * 0.7 / smooth.max() * (1 / 0.92)


def test_smoothing_a_relief_keeps_it_exactly_as_high():
    depth = box_depth() + np.random.default_rng(1).normal(0, 0.02, (48, 64)).astype(np.float32)
    solid = relief_print(depth, spec=ReliefSpec(width_mm=60.0, relief_mm=4.0, base_mm=1.5, smooth_mm=2.0))
    assert printable(solid).size[2] == pytest.approx(5.5, abs=1e-4)


def test_silhouette_cuts_along_the_pixels_with_depth():
    depth = np.full((60, 80), np.nan, np.float32)
    depth[10:50, 20:70] = 1.5  # a 50 x 40 pixel region with depth, sky around it
    depth[30:40, 30:40] = 1.0
    depth[2:4, 2:4] = 1.0  # a speck of depth: left out
    solid = relief_print(depth, spec=ReliefSpec(width_mm=80.0, relief_mm=3.0, base_mm=1.0, silhouette=True))
    report = printable(solid)
    # The print grid is the map's (coarser than 0.25 mm cells), reaching a little past the picture.
    layout = reaching_layout(picture_layout(depth.shape, 80.0, 0.0, 0.25))
    (cell_x, cell_y), (half_x, half_y) = layout.cell, layout.half_extent
    # Half a grid step beyond the outermost points with depth on each side (nudged 0.1 step).
    assert report.size[:2] == pytest.approx((50 * cell_x, 40 * cell_y), abs=0.02)
    assert report.bounds_min[0] == pytest.approx(-half_x + 19.6 * cell_x, abs=0.02)
    assert report.bounds_max[1] == pytest.approx(half_y - 9.6 * cell_y, abs=0.02)
    assert top_at(solid, [(-half_x + 3 * cell_x, half_y - 3 * cell_y)])[0] == -np.inf  # no speck


def test_silhouette_with_a_frame_and_rounded_corners_stays_printable_and_within_the_width():
    depth = np.full((60, 80), np.inf, np.float32)  # a renderer's sky
    yy, xx = np.mgrid[0:60, 0:80]
    depth[((xx - 40) / 30.0) ** 2 + ((yy - 35) / 20.0) ** 2 < 1] = 2.0
    depth[:, 70:] = 1.0  # reaches the picture's right edge
    solid = relief_print(depth, spec=ReliefSpec(width_mm=80.0, relief_mm=3.0, base_mm=1.0, silhouette=True,
                                                frame_mm=3.0, corner_mm=2.0))
    report = printable(solid)
    assert report.bounds_max[0] <= 40.0 + 1e-6 and report.bounds_min[0] > -40.0


def test_budget_keeps_the_size_and_the_depth_edge():
    depth = np.full((150, 200), 2.0, np.float32)
    depth[50:100, 75:125] = 1.0
    full = relief_print(depth, spec=ReliefSpec(width_mm=100.0, relief_mm=5.0, base_mm=2.0))
    budget = stl_face_budget(0.1)
    small = relief_print(depth, spec=ReliefSpec(width_mm=100.0, relief_mm=5.0, base_mm=2.0, max_faces=budget))
    assert budget == 1998 and len(small.faces) <= budget < len(full.faces) / 25
    assert printable(small).size == pytest.approx(printable(full).size, abs=1e-5)
    # The box's edges stay where they were: heights a cell either side of them agree.
    x_edge, y_edge = -50.0 + 75 * 100.0 / 199, 75.0 / 2 - 50 * 75.0 / 149
    probes = np.array([(x_edge - 0.6, 0.0), (x_edge + 0.6, 0.0), (0.0, y_edge + 0.6), (0.0, y_edge - 0.6)])
    np.testing.assert_allclose(top_at(small, probes), top_at(full, probes), atol=0.05)


@settings(max_examples=12, deadline=None, derandomize=True)
@given(st.integers(30, 90), st.integers(30, 120), st.floats(20.0, 150.0), st.floats(0.5, 10.0), st.floats(0.5, 6.0),
       st.sampled_from([0.0, 5.0, 2.7]), st.sampled_from([0.0, 3.0, 7.3]), st.sampled_from(["none", "hole", "keyhole"]),
       st.sampled_from([None, 2.0, 0.9]), st.booleans(), st.sampled_from([None, "3"]), st.sampled_from([0.25, 0.33]))
def test_any_combination_of_options_is_printable(rows, columns, width, relief, base, frame, corner, hanger, bend,
                                                 silhouette, filaments, cell):
    """Random sizes, aspects and options: printable, or refused in words (a keyhole on a thin base, no room)."""
    rng = np.random.default_rng(rows * 1000 + columns)
    depth = cv2.GaussianBlur(rng.uniform(1.0, 3.0, (rows, columns)).astype(np.float32), (0, 0), 2.0)
    if silhouette:
        yy, xx = np.mgrid[0:rows, 0:columns]
        depth[((xx - columns / 2) / (0.4 * columns)) ** 2 + ((yy - rows / 2) / (0.4 * rows)) ** 2 > 1] = np.nan
    spec = ReliefSpec(width_mm=width, relief_mm=relief, base_mm=base, frame_mm=frame, corner_mm=corner,
                      hanger=hanger, curve_radius_mm=None if bend is None else width / bend, silhouette=silhouette,
                      filaments=filaments, cell_mm=cell)
    try:
        solid = relief_print(depth, rng.integers(0, 255, (rows, columns, 3), dtype=np.uint8), spec)
    except MeshError as error:
        assert "keyhole" in str(error) or "hanging hole" in str(error) or "corners" in str(error)
        return
    printable(solid)
