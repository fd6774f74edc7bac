"""A relief's shape beyond its rectangle: a frame, rounded corners, the photo's silhouette as the
outline, a hanger (`mesh.relief_hanger`), and the heights' smoothing.

The picture's heights lie on a grid that reaches past the outline (a frame band at the frame's
height, the picture's edge heights beyond it); the closed heightfield solid of that grid is cut
by the outline's prism, and the hanger is cut out of it, with manifold3d. No cutter face lies in
a face of the solid, nor a cutter side on a grid line (`mesh.relief_layout`), so the result is
watertight and manifold even as a slicer reads it, merging vertices by position.
"""

from __future__ import annotations

import math
from typing import Optional

import cv2
import manifold3d
import numpy as np
from scipy.ndimage import distance_transform_edt

from mesh.data import MeshData, MeshError
from mesh.relief_hanger import hanger_cutter
from mesh.relief_layout import PictureLayout, arc_segments, prism, rounded_rectangle
from mesh.solid import heightfield_solid, relief_heights, resampled_heights

SMOOTH_STEP = 0.05
"""Smoothing keeps height steps well above this share of the relief (the guided filter's
epsilon is its square): a depth edge stays a step, sensor grain goes."""
SILHOUETTE_DETAIL_MM = 1.0
"""A silhouette keeps no part and no gap narrower than this: a 0.4 mm nozzle prints neither."""
SILHOUETTE_PART_MM2 = 25.0
"""Pieces of a silhouette smaller than this (a 5 x 5 mm square) are left out: specks of depth."""
OUTLINE_TOLERANCE_MM = 1e-3
"""An outline drops corners closer than this to the line through their neighbours: offsetting
leaves near-duplicate corners, and a cut along an edge of zero length leaves needle triangles."""
LONGEST_EDGE_MM = 5.0
"""manifold3d joins the flat sides, base and frame of a cut solid into a few long, thin
triangles; they are split again to this length, as PrusaSlicer's seam placement casts rays
against them and takes ten times as long on slivers (9 s instead of 0.8 s for a 60 mm relief)."""


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
    mean_gain = cv2.blur(gain, size, borderType=cv2.BORDER_REFLECT)
    result = np.clip(mean_gain * image + cv2.blur(offset, size, borderType=cv2.BORDER_REFLECT), 0.0, None)
    return (result / max(float(result.max()), 1e-12)).astype(np.float64)


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
    segments = arc_segments(half)
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
    outline = silhouette.offset(frame_mm, circular_segments=arc_segments(frame_mm)) if frame_mm > 0 else silhouette
    if corner_mm > 0:
        segments = arc_segments(corner_mm)
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


def framed_grid(top_mm: np.ndarray, layout: PictureLayout, inside: np.ndarray, frame_top_mm: float) -> np.ndarray:
    """The heights grid reaching two cells past the frame's outer edge: the picture's heights
    `inside`, the frame's top in the frame band, and beyond the picture's edge its edge
    heights, for an outline cut to pass through."""
    cell_x, cell_y = layout.cell
    margin = (int(math.ceil(layout.frame_mm / cell_y)) + 2, int(math.ceil(layout.frame_mm / cell_x)) + 2)
    pad = ((margin[0], margin[0]), (margin[1], margin[1]))
    grid = np.pad(top_mm, pad, mode="edge")
    if layout.frame_mm > 0:
        grid[~np.pad(inside, pad, constant_values=False)] = frame_top_mm
    return grid


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
    rectangle = inside is None or bool(inside.all())
    box = rounded_rectangle(layout.width_mm + 2 * frame, layout.length_mm + 2 * frame, corner_mm if rectangle else 0.0)
    outline = manifold3d.CrossSection([box])  # where the hanger goes
    band = np.ones_like(top_mm, bool)
    if not rectangle:
        silhouette = silhouette_outline(layout, inside)
        band = inside_outline(silhouette, layout)
        shape = silhouette_with_frame(silhouette, frame, corner_mm)
        outline = shape ^ outline
    grid = framed_grid(top_mm, layout, band, frame_top_mm)
    height = float(grid.max()) + 2.0
    cutter = prism(box, -1.0, height)
    if not rectangle:  # the silhouette's own prism, clipped by the exact box in 3D (not rounded in 2D)
        cutter = cutter ^ manifold3d.Manifold.extrude(shape, height + 1.0).translate((0.0, 0.0, -1.5))
    solid = to_manifold(heightfield_solid(grid, *layout.cell)) ^ cutter
    hole = hanger_cutter(hanger, outline, layout, height)
    if hole is not None:
        solid = solid - hole
    return from_manifold(solid.refine_to_length(LONGEST_EDGE_MM))
