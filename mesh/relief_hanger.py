"""Hangers cut into a print relief: a hole through it near its top edge, or a keyhole slot in its back.

Both sit centred left to right near the top of the outline with `HANGER_WALL_MM` of solid
around them, in the middle of a grid cell so that none of their sides runs along a grid line.
The keyhole is a pocket from the back: a round entry for the screw head, a slot for its shank
with a lip behind which the head hangs, under a roof (`mesh.print_options` holds its sizes).
"""

from __future__ import annotations

import math
from typing import Optional

import manifold3d
import numpy as np

from mesh.data import MeshError
from mesh.print_options import (HANGER_WALL_MM, HOLE_MM, KEYHOLE_HEAD_MM, KEYHOLE_HEAD_ROOM_MM, KEYHOLE_LIP_MM,
                                KEYHOLE_SHANK_MM, KEYHOLE_SLOT_MM)
from mesh.relief_layout import PictureLayout, arc_segments, prism

KEYHOLE_ENTRY_MM = 10.0
"""The keyhole's round opening: wider than the head room above the lip, so their sides cross
instead of touching."""


def _top_on_line(region: manifold3d.CrossSection, x: float) -> Optional[tuple[float, float]]:
    """The highest point of `region` on the vertical line at `x`, or its highest vertex when the
    line misses it; None for an empty region."""
    best = None
    corners = []
    for polygon in region.to_polygons():
        polygon = np.asarray(polygon)
        corners.append(polygon)
        a, b = polygon, np.roll(polygon, -1, axis=0)
        crossing = (a[:, 0] - x) * (b[:, 0] - x) <= 0
        crossing &= a[:, 0] != b[:, 0]
        if crossing.any():
            t = (x - a[crossing, 0]) / (b[crossing, 0] - a[crossing, 0])
            y = float((a[crossing, 1] + t * (b[crossing, 1] - a[crossing, 1])).max())
            best = y if best is None else max(best, y)
    if best is not None:
        return x, best
    if not corners:
        return None
    points = np.concatenate(corners)
    top = points[np.argmax(points[:, 1])]
    return float(top[0]), float(top[1])


def _contains(region: manifold3d.CrossSection, point: tuple[float, float]) -> bool:
    probe = manifold3d.CrossSection.square((1e-3, 1e-3), center=True).translate(point)
    return (region ^ probe).area() > 0


def _off_grid(point: tuple[float, float], layout: PictureLayout) -> tuple[float, float]:
    """`point` moved to the middle of a grid cell (its own across, the next one down), so a
    hanger's straight sides and ends never run along the grid's lines (a cut there leaves
    needle triangles)."""
    (cell_x, cell_y), (half_x, half_y) = layout.cell, layout.half_extent
    x = (math.floor((point[0] + half_x) / cell_x) + 0.5) * cell_x - half_x
    y = half_y - (math.ceil((half_y - point[1]) / cell_y) + 0.5) * cell_y
    return x, y


def hanger_cutter(hanger: str, outline: manifold3d.CrossSection, layout: PictureLayout,
                  top_mm: float) -> Optional[manifold3d.Manifold]:
    """What is cut away for `hanger` ("hole" or "keyhole"), centred left to right near the top of
    the outline with `HANGER_WALL_MM` of solid around it (a hole in the frame when it is wide
    enough); None for "none"."""
    if hanger == "none":
        return None
    bounds = outline.bounds()
    centre_x = 0.5 * (bounds[0] + bounds[2])
    if hanger == "hole":
        radius = HOLE_MM / 2
        inset = layout.frame_mm / 2 if layout.frame_mm >= HOLE_MM + 2.0 else radius + HANGER_WALL_MM
        region = outline.offset(-inset)
        point = _top_on_line(region, centre_x)
        if point is None:
            raise MeshError(f"the outline has no room for a {HOLE_MM:g} mm hanging hole")
        x, y = _off_grid(point, layout)
        return manifold3d.Manifold.cylinder(top_mm + 2.0, radius, circular_segments=arc_segments(radius)).translate(
            (x, y, -1.0))
    head, shank = KEYHOLE_HEAD_MM / 2, KEYHOLE_SHANK_MM / 2
    region = outline.offset(-(head + HANGER_WALL_MM))
    point = _top_on_line(region, centre_x)
    if point is not None:
        point = _off_grid(point, layout)
    if point is None or not all(_contains(region, (point[0], point[1] - drop)) for drop in (0.0, KEYHOLE_SLOT_MM)):
        raise MeshError(f"the outline has no room for a keyhole: it needs about "
                        f"{KEYHOLE_HEAD_MM + KEYHOLE_SLOT_MM + 2 * HANGER_WALL_MM:g} mm of height")
    x, y = point
    pocket = KEYHOLE_LIP_MM + KEYHOLE_HEAD_ROOM_MM
    entry = prism(_circle(x, y - KEYHOLE_SLOT_MM, KEYHOLE_ENTRY_MM / 2), -1.0, pocket)
    lip = prism(_slot(x, y, shank), -1.1, KEYHOLE_LIP_MM + 0.2)  # its top inside the head room
    room = prism(_slot(x, y, head), KEYHOLE_LIP_MM, pocket)
    return entry + lip + room


def _circle(x: float, y: float, radius: float) -> np.ndarray:
    """(N, 2) counter-clockwise corners of a circle, none on its horizontal or vertical diameter."""
    count = 4 * max(4, arc_segments(radius) // 4)
    angles = (np.arange(count) + 0.5) * (2 * np.pi / count)
    return np.column_stack([x + radius * np.cos(angles), y + radius * np.sin(angles)])


def _slot(x: float, y: float, half_width: float) -> np.ndarray:
    """A keyhole slot `2 half_width` wide from `KEYHOLE_SLOT_MM` below (x, y) up to it, its top
    end rounded about (x, y): counter-clockwise corners."""
    steps = max(4, arc_segments(half_width) // 2)
    angles = np.linspace(0.0, np.pi, steps + 1)
    arc = np.column_stack([x + half_width * np.cos(angles), y + half_width * np.sin(angles)])
    arc[0, 1] = arc[-1, 1] = y
    bottom = y - KEYHOLE_SLOT_MM
    return np.concatenate([[[x - half_width, bottom], [x + half_width, bottom]], arc])
