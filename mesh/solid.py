"""Printable solids: a relief from a depth map, or from the depth of an open scene mesh as the camera sees it.

Both come out watertight, consistently wound (normals outward) and manifold, in the print
frame: millimetres, z up, the relief facing +z, the flat base on z = 0, centred on x = y = 0.
"""

from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

from mesh.data import MeshData, MeshError
from mesh.limits import PRINT_MM

#: Default print resolution: grid cells of this size in millimetres.
DEFAULT_CELL_MM = 0.25


def relief_heights(depth: np.ndarray, reverse: bool = False) -> np.ndarray:
    """(H, W) heights in [0, 1] from a metric depth map: near is 1 (or far, with `reverse`).

    Log-depth is normalised between its 2nd and 98th percentiles (PPD's own normalisation),
    so a few outliers do not flatten the relief; invalid pixels (NaN, inf, <= 0) sit at 0.
    """
    depth = np.asarray(depth, dtype=np.float64)
    if depth.ndim != 2 or depth.size == 0:
        raise MeshError(f"a relief needs a non-empty 2-D depth map, got shape {depth.shape}")
    valid = np.isfinite(depth) & (depth > 0)
    if not valid.any():
        raise MeshError("the depth map has no valid (finite, positive) pixel to build a solid from")
    log_depth = np.log1p(np.where(valid, depth, 0.0))
    low, high = np.percentile(log_depth[valid], [2.0, 98.0])
    nearness = (high - log_depth) / (high - low) if high > low else np.ones_like(log_depth)
    heights = np.clip(nearness, 0.0, 1.0)
    if reverse:
        heights = 1.0 - heights
    return np.where(valid, heights, 0.0)


def print_grid_shape(shape: tuple[int, int], width_mm: float, cell_mm: float) -> tuple[int, int]:
    """(rows, columns) of the print grid: cells of about `cell_mm`, never finer than the map."""
    _check_cell(cell_mm)
    height, width = shape
    columns = int(max(2, min(width, round(width_mm / cell_mm) + 1)))
    rows = int(max(2, round(columns * height / width)))
    return rows, columns


def _check_cell(cell_mm: float) -> None:
    if not (np.isfinite(cell_mm) and cell_mm > 0):
        raise MeshError(f"the print cell size must be a positive number of mm, got {cell_mm}")


def heightfield_solid(top: np.ndarray, cell_mm: float, row_mm: Optional[float] = None) -> MeshData:
    """A closed solid over an (R, C) grid of top heights in mm (> 0): relief, walls, flat base.

    Columns are `cell_mm` apart, rows `row_mm` (default the same), so the solid is exactly
    (C - 1) * cell_mm by (R - 1) * row_mm. Grid row 0 is the back (+y) edge so that an image
    reads upright seen from above.
    """
    rows, columns = top.shape
    row_mm = cell_mm if row_mm is None else row_mm
    index = np.arange(rows * columns).reshape(rows, columns)
    xs = (np.arange(columns) - (columns - 1) / 2.0) * cell_mm
    ys = ((rows - 1) / 2.0 - np.arange(rows)) * row_mm
    gx, gy = np.meshgrid(xs, ys)
    top_vertices = np.column_stack([gx.ravel(), gy.ravel(), top.ravel()])

    tl, tr = index[:-1, :-1].ravel(), index[:-1, 1:].ravel()
    bl, br = index[1:, :-1].ravel(), index[1:, 1:].ravel()
    # Seen from +z, with row 0 at +y: (bl, br, tr) and (bl, tr, tl) are counter-clockwise.
    top_faces = np.concatenate([np.column_stack([bl, br, tr]), np.column_stack([bl, tr, tl])])

    # The boundary ring, counter-clockwise seen from +z (outside to the left of travel).
    ring = np.concatenate([
        index[-1, :],            # front edge, left to right
        index[-2::-1, -1],       # right edge, front to back
        index[0, -2::-1],        # back edge, right to left
        index[1:-1, 0],          # left edge, back to front (the corner closes the loop)
    ])
    count = len(ring)
    base_start = rows * columns
    base_vertices = np.column_stack([top_vertices[ring, 0], top_vertices[ring, 1], np.zeros(count)])
    centre = base_start + count
    a_top, b_top = ring, np.roll(ring, -1)
    a_base = base_start + np.arange(count)
    b_base = base_start + np.roll(np.arange(count), -1)
    walls = np.concatenate([np.column_stack([a_base, b_base, b_top]),
                            np.column_stack([a_base, b_top, a_top])])
    base = np.column_stack([b_base, a_base, np.full(count, centre)])  # faces -z
    vertices = np.concatenate([top_vertices, base_vertices, [[0.0, 0.0, 0.0]]])
    # Texture coordinates span the photo corner to corner; walls and base reuse the rim's.
    gu, gv = np.meshgrid(np.linspace(0.0, 1.0, columns), np.linspace(1.0, 0.0, rows))
    top_uvs = np.column_stack([gu.ravel(), gv.ravel()])
    uvs = np.concatenate([top_uvs, top_uvs[ring], [[0.5, 0.5]]])
    return MeshData(vertices=vertices, faces=np.concatenate([top_faces, walls, base]), uvs=uvs,
                    frame="print_mm")


def relief_solid(depth: np.ndarray, *, width_mm: float = 100.0, relief_mm: float = 5.0,
                 base_mm: float = 2.0, reverse: bool = False, cell_mm: float = DEFAULT_CELL_MM) -> MeshData:
    """A watertight print solid from a metric depth map (H, W), `width_mm` wide along x.

    The relief rises `relief_mm` above a `base_mm` thick flat base, near high (or far high
    with `reverse`, lithophane style). It is exactly `width_mm` by `width_mm * H / W` (the
    map's aspect, whatever the grid). The map is resampled to cells of about `cell_mm`. UVs map
    the photo onto the top. `mesh.relief_print` adds the relief options (frame, outline, hanger,
    curve, smoothing, budget, colours) to it.
    """
    check_print_size(width_mm, relief_mm, base_mm)
    heights = relief_heights(depth, reverse)
    rows, columns = print_grid_shape(heights.shape, width_mm, cell_mm)
    length_mm = width_mm * heights.shape[0] / heights.shape[1]
    heights = resampled_heights(heights, rows, columns)
    return heightfield_solid(base_mm + relief_mm * heights, width_mm / (columns - 1), length_mm / (rows - 1))


def resampled_heights(heights: np.ndarray, rows: int, columns: int) -> np.ndarray:
    """(rows, columns) float64 heights in [0, 1] area-resampled from `heights`, whose top stays 1."""
    if (rows, columns) != heights.shape:
        heights = cv2.resize(heights.astype(np.float32), (columns, rows), interpolation=cv2.INTER_AREA)
        # Area averaging lowers a near region narrower than a cell: the top is 1 again, so the
        # solid is exactly base + relief high.
        heights = heights / max(float(heights.max()), 1e-12) if heights.max() > 0 else heights
    return heights.astype(np.float64)


def check_print_size(width_mm: float, relief_mm: float, base_mm: float) -> None:
    """Raise MeshError unless width and base are within `PRINT_MM` and the relief is 0 up to
    its maximum (`mesh.limits`)."""
    low, high = PRINT_MM
    for name, value, least in (("print width", width_mm, low), ("relief height", relief_mm, 0.0),
                               ("base thickness", base_mm, low)):
        if not (np.isfinite(value) and least <= value <= high):
            raise MeshError(f"the {name} must be {least:g} to {high:g} mm, got {value}")


def mesh_depth(mesh: MeshData, intrinsics: tuple[float, float, float, float], width: int,
               height: int) -> np.ndarray:
    """Planar depth (height, width) of an OpenCV-frame mesh seen by the pinhole camera
    `intrinsics` (fx, fy, cx, cy in pixels of width x height); NaN where no surface is seen.

    Each pixel's ray through its centre has z = 1, so Open3D's hit distance is the depth.
    """
    import open3d as o3d  # heavy (~3 s to load): imported on first use

    if mesh.is_points or len(mesh.faces) == 0:
        raise MeshError("a point cloud cannot be closed into a solid; mesh it first")
    vertices = np.asarray(mesh.vertices, dtype=np.float32)
    if not np.isfinite(vertices).all():
        raise MeshError("the mesh has NaN or infinite vertices; it cannot be closed into a solid")
    fx, fy, cx, cy = intrinsics
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(vertices, np.asarray(mesh.faces, dtype=np.uint32))
    gx, gy = np.meshgrid((np.arange(width) + 0.5 - cx) / fx, (np.arange(height) + 0.5 - cy) / fy)
    zeros = np.zeros(gx.size)
    rays = np.column_stack([zeros, zeros, zeros, gx.ravel(), gy.ravel(), np.ones(gx.size)]).astype(np.float32)
    hits = scene.cast_rays(o3d.core.Tensor(rays))["t_hit"].numpy().reshape(height, width)
    return np.where(np.isfinite(hits), hits, np.nan).astype(np.float32)


def solid_from_mesh(mesh: MeshData, intrinsics: tuple[float, float, float, float], size: tuple[int, int], *,
                    width_mm: float = 100.0, relief_mm: float = 5.0, base_mm: float = 2.0,
                    cell_mm: float = DEFAULT_CELL_MM) -> MeshData:
    """A print solid of an open scene mesh (e.g. a Poisson surface): its depth as the camera
    sees it (`mesh_depth` on the (width, height) grid of `intrinsics`), made a relief exactly
    as `relief_solid` makes one. So the solid has the photo's footprint and the asked height
    whatever the mesh's topology and extent; where the camera sees no surface it is the base.
    """
    check_print_size(width_mm, relief_mm, base_mm)
    _check_cell(cell_mm)
    depth = mesh_depth(mesh, intrinsics, *size)
    return relief_solid(depth, width_mm=width_mm, relief_mm=relief_mm, base_mm=base_mm, cell_mm=cell_mm)
