"""Where the picture lies on a print relief, and the exact polygons its outline and hangers are cut with.

The picture's heights lie on a grid (`PictureLayout`); cuts along the grid's own lines leave
needle triangles, so the grid reaches a fraction of a cell past the outline (`reaching_layout`)
and the cutters are built in plain float64 (`prism`), never rounded onto the grid's lines.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import manifold3d
import numpy as np

from mesh.solid import print_grid_shape

ARC_EDGE_MM = 0.3
"""Rounded corners and holes are polygons with edges about this long: finer than a nozzle."""


@dataclass(frozen=True)
class PictureLayout:
    """Where the picture lies on the print: `width_mm` by `length_mm`, centred on x = y = 0, inside
    a frame `frame_mm` wide; its heights on a grid of `rows` x `columns` points (row 0 at +y)
    that reaches `reach_mm` (x, y) past the picture on each side."""

    width_mm: float
    length_mm: float
    rows: int
    columns: int
    frame_mm: float = 0.0
    reach_mm: tuple[float, float] = (0.0, 0.0)

    @property
    def half_extent(self) -> tuple[float, float]:
        """Half the grid's width and length in mm."""
        return self.width_mm / 2 + self.reach_mm[0], self.length_mm / 2 + self.reach_mm[1]

    @property
    def cell(self) -> tuple[float, float]:
        """(x, y) spacing of the grid in mm."""
        half_x, half_y = self.half_extent
        return 2 * half_x / (self.columns - 1), 2 * half_y / (self.rows - 1)

    def grid_points(self, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """(N, 2) x, y in mm of (fractional) grid rows and columns."""
        (cell_x, cell_y), (half_x, half_y) = self.cell, self.half_extent
        return np.column_stack([columns * cell_x - half_x, half_y - rows * cell_y])

    def grid_cells(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rows, columns) int of the grid cells under (N, 2+) points (outside: beyond 0..count-2)."""
        (cell_x, cell_y), (half_x, half_y) = self.cell, self.half_extent
        return (np.floor((half_y - points[:, 1]) / cell_y).astype(np.int64),
                np.floor((points[:, 0] + half_x) / cell_x).astype(np.int64))


def picture_layout(shape: tuple[int, int], width_mm: float, frame_mm: float, cell_mm: float) -> PictureLayout:
    """The layout of a depth map of `shape` (H, W) on a print `width_mm` wide, frame included."""
    picture_width = width_mm - 2 * frame_mm
    rows, columns = print_grid_shape(shape, picture_width, cell_mm)
    return PictureLayout(picture_width, picture_width * shape[0] / shape[1], rows, columns, frame_mm)


def reaching_layout(layout: PictureLayout) -> PictureLayout:
    """The layout with its grid reaching a fraction of a cell past the picture (the picture's
    heights stretched by it, at most 0.11 mm a side at 0.25 mm cells), chosen so that the outline's
    straight sides (at the picture's edge, or the frame's) keep at least a tenth of a cell from
    every grid line: a cut along a grid line leaves needle triangles."""
    def clearance(reach: float, half: float, count: int) -> float:
        cell = 2 * (half + reach) / (count - 1)
        offset = ((layout.frame_mm - reach) / cell) % 1.0
        return min(offset, 1.0 - offset) if layout.frame_mm > 0 else reach / cell

    reach = []
    for half, count in ((layout.width_mm / 2, layout.columns), (layout.length_mm / 2, layout.rows)):
        tries = [fraction * 2 * half / (count - 1) for fraction in (0.15, 0.25, 0.35, 0.45, 0.2, 0.3, 0.4)]
        enough = [value for value in tries if clearance(value, half, count) >= 0.1]
        reach.append(enough[0] if enough else max(tries, key=lambda value: clearance(value, half, count)))
    return replace(layout, reach_mm=(reach[0], reach[1]))


def arc_segments(radius_mm: float) -> int:
    """Corners of a circle of `radius_mm` whose sides are about `ARC_EDGE_MM` long (at least 16)."""
    return max(16, int(math.ceil(2 * math.pi * radius_mm / ARC_EDGE_MM)))


def rounded_rectangle(width_mm: float, length_mm: float, corner_mm: float) -> np.ndarray:
    """(N, 2) counter-clockwise corners of a rectangle centred on 0 with corners rounded by
    `corner_mm`, in plain float64: its straight sides lie exactly at +-width/2 and +-length/2."""
    half_x, half_y = width_mm / 2, length_mm / 2
    if corner_mm <= 0:
        return np.array([[-half_x, -half_y], [half_x, -half_y], [half_x, half_y], [-half_x, half_y]])
    steps = max(2, arc_segments(corner_mm) // 4)
    points = []
    for centre_x, centre_y, start in ((half_x - corner_mm, -half_y + corner_mm, -90.0),
                                      (half_x - corner_mm, half_y - corner_mm, 0.0),
                                      (-half_x + corner_mm, half_y - corner_mm, 90.0),
                                      (-half_x + corner_mm, -half_y + corner_mm, 180.0)):
        angles = np.radians(start + np.linspace(0.0, 90.0, steps + 1))
        points.append(np.column_stack([centre_x + corner_mm * np.cos(angles), centre_y + corner_mm * np.sin(angles)]))
    corners = np.concatenate(points)
    for axis, half in ((0, half_x), (1, half_y)):  # arc ends exactly on the straight sides
        side = np.abs(corners[:, axis]) > half - 1e-9
        corners[side, axis] = np.copysign(half, corners[side, axis])
    keep = np.any(np.abs(corners - np.roll(corners, -1, axis=0)) > 1e-9, axis=1)
    return corners[keep]


def prism(polygon: np.ndarray, bottom: float, top: float) -> manifold3d.Manifold:
    """The solid of a counter-clockwise polygon (N, 2) from z = bottom to z = top, its corners
    exactly as given (a CrossSection would round them to 1e-8 mm, close beside the print grid's
    own lines, where a cut leaves needle triangles)."""
    polygon = np.asarray(polygon, np.float64)
    count = len(polygon)
    caps = np.asarray(manifold3d.triangulate([polygon]), np.int64)
    ring = np.arange(count)
    after = np.roll(ring, -1)
    sides = np.concatenate([np.column_stack([ring, after, after + count]),
                            np.column_stack([ring, after + count, ring + count])])
    vertices = np.concatenate([np.column_stack([polygon, np.full(count, bottom)]),
                               np.column_stack([polygon, np.full(count, top)])])
    faces = np.concatenate([caps[:, ::-1], caps + count, sides])
    return manifold3d.Manifold(manifold3d.Mesh64(vert_properties=vertices, tri_verts=faces.astype(np.uint64)))
