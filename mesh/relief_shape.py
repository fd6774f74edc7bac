"""A relief's shape beyond its rectangle: a frame, rounded corners, the photo's silhouette as the
outline, a hanging hole or keyhole, and the heights' smoothing.

The picture's heights lie on a grid that reaches past the outline (a frame band at the frame's
height, the picture's edge heights beyond it); the closed heightfield solid of that grid is cut
by the outline extruded through it, and the hangers are cut out of it, with manifold3d. No
cutter face lies in a face of the solid, so the result is watertight and manifold even as a
slicer reads it, merging vertices by position (faces that merely touch leave zero-width seams).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Optional

import cv2
import manifold3d
import numpy as np
from scipy.ndimage import distance_transform_edt

from mesh.data import MeshData, MeshError
from mesh.print_options import (HANGER_WALL_MM, HOLE_MM, KEYHOLE_HEAD_MM, KEYHOLE_HEAD_ROOM_MM, KEYHOLE_LIP_MM,
                                KEYHOLE_SHANK_MM, KEYHOLE_SLOT_MM)
from mesh.solid import heightfield_solid, print_grid_shape, relief_heights, resampled_heights

SMOOTH_STEP = 0.05
"""Smoothing keeps height steps well above this share of the relief (the guided filter's
epsilon is its square): a depth edge stays a step, sensor grain goes."""
SILHOUETTE_DETAIL_MM = 1.0
"""A silhouette keeps no part and no gap narrower than this: a 0.4 mm nozzle prints neither."""
SILHOUETTE_PART_MM2 = 25.0
"""Pieces of a silhouette smaller than this (a 5 x 5 mm square) are left out: specks of depth."""
ARC_EDGE_MM = 0.3
"""Rounded corners and holes are polygons with edges about this long: finer than a nozzle."""
OUTLINE_TOLERANCE_MM = 1e-3
"""An outline drops corners closer than this to the line through their neighbours: offsetting
leaves near-duplicate corners, and a cut along an edge of zero length leaves needle triangles."""
KEYHOLE_ENTRY_MM = 10.0
"""The keyhole's round opening: wider than the head room above the lip, so their sides cross
instead of touching."""


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
    """The layout with its grid reaching a fraction of a cell past the picture, chosen so that the
    outline's straight sides (at the picture's edge, or the frame's) keep at least a tenth of a
    cell from every grid line: a cut along a grid line leaves needle triangles."""
    def clearance(reach: float, half: float, count: int) -> float:
        cell = 2 * (half + reach) / (count - 1)
        offset = ((layout.frame_mm - reach) / cell) % 1.0
        return min(offset, 1.0 - offset) if layout.frame_mm > 0 else reach / cell

    reach = []
    for half, count in ((layout.width_mm / 2, layout.columns), (layout.length_mm / 2, layout.rows)):
        base = 2 * half / (count - 1)
        tries = [fraction * base for fraction in (0.25, 0.4, 0.15, 0.33, 0.45)]
        reach.append(max(tries, key=lambda value: min(clearance(value, half, count), 0.25)))
    return replace(layout, reach_mm=(reach[0], reach[1]))


def picture_heights(depth: np.ndarray, layout: PictureLayout, *, silhouette: bool = False, smooth_mm: float = 0.0,
                    reverse: bool = False) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """(heights (rows, columns) in [0, 1] with a top of exactly 1, the grid points with depth or
    None). For a silhouette, pixels without depth take their nearest pixel's height first, so the
    cut-out edge does not sag toward the base."""
    heights = relief_heights(depth, reverse)
    inside = None
    if silhouette:
        valid = np.isfinite(depth) & (depth > 0)
        if not valid.all():
            nearest = distance_transform_edt(~valid, return_distances=False, return_indices=True)
            heights = heights[tuple(nearest)]
        inside = cv2.resize(valid.astype(np.float32), (layout.columns, layout.rows),
                            interpolation=cv2.INTER_AREA) >= 0.5
    heights = resampled_heights(heights, layout.rows, layout.columns)
    if smooth_mm > 0:
        heights = smoothed(heights, smooth_mm / min(layout.cell))
    return heights, inside


def smoothed(heights: np.ndarray, radius_px: float) -> np.ndarray:
    """Heights smoothed over `radius_px` by a self-guided filter (He, Sun and Tang 2010): each
    window's linear fit to itself, so flat grain is averaged away and steps well above
    `SMOOTH_STEP` of the relief stay steps. The top is 1 again afterwards."""
    size = (2 * max(1, int(round(radius_px))) + 1,) * 2
    image = heights.astype(np.float32)
    mean = cv2.blur(image, size, borderType=cv2.BORDER_REFLECT)
    variance = cv2.blur(image * image, size, borderType=cv2.BORDER_REFLECT) - mean * mean
    gain = variance / (variance + SMOOTH_STEP**2)
    offset = mean - gain * mean
    result = cv2.blur(gain, size, borderType=cv2.BORDER_REFLECT) * image + cv2.blur(offset, size,
                                                                                    borderType=cv2.BORDER_REFLECT)
    result = np.clip(result, 0.0, None)
    return (result / max(float(result.max()), 1e-12)).astype(np.float64)


def _segments(radius_mm: float) -> int:
    return max(16, int(math.ceil(2 * math.pi * radius_mm / ARC_EDGE_MM)))


def rounded_rectangle(width_mm: float, length_mm: float, corner_mm: float) -> np.ndarray:
    """(N, 2) counter-clockwise corners of a rectangle centred on 0 with corners rounded by
    `corner_mm`, in plain float64: its straight sides lie exactly at +-width/2 and +-length/2."""
    half_x, half_y = width_mm / 2, length_mm / 2
    if corner_mm <= 0:
        return np.array([[-half_x, -half_y], [half_x, -half_y], [half_x, half_y], [-half_x, half_y]])
    steps = max(2, _segments(corner_mm) // 4)
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


def silhouette_outline(layout: PictureLayout, inside: np.ndarray) -> manifold3d.CrossSection:
    """The outline of the grid points with depth, half a grid step out from them (where depth
    ends), without parts or gaps narrower than `SILHOUETTE_DETAIL_MM` and without specks.

    It is nudged a tenth of a grid step right and down, so that no side runs along a grid line
    and no corner lies on a grid cell's diagonal (a cut there leaves needle triangles)."""
    contours, _ = cv2.findContours(inside.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    polygons = []
    for contour in contours:
        contour = cv2.approxPolyDP(contour, 0.7, True).reshape(-1, 2)
        if len(contour) >= 3:
            polygons.append(layout.grid_points(contour[:, 1].astype(np.float64), contour[:, 0].astype(np.float64)))
    half = SILHOUETTE_DETAIL_MM / 2
    segments = _segments(half)
    outline = (manifold3d.CrossSection(polygons, manifold3d.FillRule.EvenOdd)
               .offset(0.5 * min(layout.cell), manifold3d.JoinType.Miter)
               .translate((0.1 * layout.cell[0], -0.1 * layout.cell[1]))
               .offset(-half, circular_segments=segments).offset(half, circular_segments=segments)
               .offset(half, circular_segments=segments).offset(-half, circular_segments=segments))
    parts = [part.simplify(OUTLINE_TOLERANCE_MM) for part in outline.decompose() if part.area() >= SILHOUETTE_PART_MM2]
    if not parts:
        raise MeshError("the photo has no region with depth large enough to cut a silhouette from "
                        f"(at least {SILHOUETTE_PART_MM2:g} mm^2 on the print)")
    return manifold3d.CrossSection.compose(parts)


def silhouette_with_frame(silhouette: manifold3d.CrossSection, frame_mm: float,
                          corner_mm: float) -> manifold3d.CrossSection:
    """A silhouette's whole outline: grown by the frame, its convex corners rounded."""
    outline = silhouette.offset(frame_mm, circular_segments=_segments(frame_mm)) if frame_mm > 0 else silhouette
    if corner_mm > 0:
        segments = _segments(corner_mm)
        outline = outline.offset(-corner_mm, circular_segments=segments).offset(corner_mm, circular_segments=segments)
        if outline.is_empty():
            raise MeshError(f"corners rounded by {corner_mm:g} mm leave nothing of the silhouette")
    return outline.simplify(OUTLINE_TOLERANCE_MM)


def inside_outline(outline: manifold3d.CrossSection, layout: PictureLayout) -> np.ndarray:
    """(rows, columns) bool: the picture's grid points inside `outline` (rasterised on the grid)."""
    canvas = np.zeros((layout.rows, layout.columns), np.uint8)
    (cell_x, cell_y), (half_x, half_y) = layout.cell, layout.half_extent
    shift = 4  # sub-pixel vertices: coordinates in 1/16 of a grid step
    for fill in (1, 0):  # outer contours (counter-clockwise) first, then the holes in them
        for polygon in outline.to_polygons():
            polygon = np.asarray(polygon)
            x, y = polygon[:, 0], polygon[:, 1]
            area = 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
            if (area > 0) == bool(fill):
                points = np.column_stack([(x + half_x) / cell_x, (half_y - y) / cell_y])
                cv2.fillPoly(canvas, [np.round(points * (1 << shift)).astype(np.int32)], fill, cv2.LINE_8, shift)
    return canvas.astype(bool)


def framed_grid(top_mm: np.ndarray, layout: PictureLayout, inside: np.ndarray,
                frame_top_mm: float) -> tuple[np.ndarray, tuple[int, int]]:
    """(the heights grid reaching past the frame's outer edge, its margin (rows, columns) on each
    side): the picture's heights inside, the frame's top in the frame band, and beyond the
    picture's edge its edge heights, for an outline cut to pass through."""
    cell_x, cell_y = layout.cell
    margin = (int(math.ceil(layout.frame_mm / cell_y)) + 2, int(math.ceil(layout.frame_mm / cell_x)) + 2)
    pad = ((margin[0], margin[0]), (margin[1], margin[1]))
    grid = np.pad(top_mm, pad, mode="edge")
    if layout.frame_mm > 0:
        grid[~np.pad(inside, pad, constant_values=False)] = frame_top_mm
    return grid, margin


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
        return manifold3d.Manifold.cylinder(top_mm + 2.0, radius, circular_segments=_segments(radius)).translate(
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
    count = 4 * max(4, _segments(radius) // 4)
    angles = (np.arange(count) + 0.5) * (2 * np.pi / count)
    return np.column_stack([x + radius * np.cos(angles), y + radius * np.sin(angles)])


def _slot(x: float, y: float, half_width: float) -> np.ndarray:
    """A keyhole slot `2 half_width` wide from `KEYHOLE_SLOT_MM` below (x, y) up to it, its top
    end rounded about (x, y): counter-clockwise corners."""
    steps = max(4, _segments(half_width) // 2)
    angles = np.linspace(0.0, np.pi, steps + 1)
    arc = np.column_stack([x + half_width * np.cos(angles), y + half_width * np.sin(angles)])
    arc[0, 1] = arc[-1, 1] = y
    bottom = y - KEYHOLE_SLOT_MM
    return np.concatenate([[[x - half_width, bottom], [x + half_width, bottom]], arc])


def to_manifold(mesh: MeshData) -> manifold3d.Manifold:
    """A manifold3d solid of a closed mesh; MeshError when it is not one."""
    solid = manifold3d.Manifold(manifold3d.Mesh64(vert_properties=mesh.vertices.astype(np.float64),
                                                  tri_verts=mesh.faces.astype(np.uint64)))
    if solid.status() != manifold3d.Error.NoError:
        raise MeshError(f"the relief is not a closed solid ({solid.status()})")
    return solid


def from_manifold(solid: manifold3d.Manifold) -> MeshData:
    """The print-frame mesh of a manifold3d solid, its vertices welded where manifold3d kept
    copies (positions with different properties)."""
    mesh = solid.to_mesh64()
    vertices = np.asarray(mesh.vert_properties)[:, :3]
    faces = np.asarray(mesh.tri_verts).astype(np.int64)
    merge_from, merge_to = np.asarray(mesh.merge_from_vert), np.asarray(mesh.merge_to_vert)
    if len(merge_from):
        target = np.arange(len(vertices))
        target[merge_from.astype(np.int64)] = merge_to.astype(np.int64)
        faces = target[faces]
    used, faces = np.unique(faces, return_inverse=True)
    if not len(used):
        raise MeshError("nothing is left of the relief after cutting its outline")
    return MeshData(vertices=vertices[used], faces=faces.reshape(-1, 3), frame="print_mm")


def shaped_solid(top_mm: np.ndarray, layout: PictureLayout, inside: Optional[np.ndarray], *, corner_mm: float,
                 frame_top_mm: float, hanger: str) -> MeshData:
    """The closed relief of the picture's heights `top_mm` (mm above the bed) cut to its outline
    (the silhouette of `inside`, else the rectangle), framed, its corners rounded, its hanger cut.
    The whole print is never wider or longer than the picture and its frame."""
    frame = layout.frame_mm
    box = rounded_rectangle(layout.width_mm + 2 * frame, layout.length_mm + 2 * frame,
                            corner_mm if inside is None or inside.all() else 0.0)
    band = np.ones_like(top_mm, bool)
    if inside is None or inside.all():
        outline = manifold3d.CrossSection([box])
    else:
        silhouette = silhouette_outline(layout, inside)
        band = inside_outline(silhouette, layout)
        outline = silhouette_with_frame(silhouette, frame, corner_mm) ^ manifold3d.CrossSection([box])
    grid, _ = framed_grid(top_mm, layout, band, frame_top_mm)
    height = float(grid.max()) + 2.0
    cutter = prism(box, -1.0, height)
    if inside is not None and not inside.all():
        cutter = cutter ^ manifold3d.Manifold.extrude(outline, height + 1.0).translate((0.0, 0.0, -1.5))
    solid = to_manifold(heightfield_solid(grid, *layout.cell)) ^ cutter
    hole = hanger_cutter(hanger, outline, layout, height)
    if hole is not None:
        solid = solid - hole
    return from_manifold(solid)
