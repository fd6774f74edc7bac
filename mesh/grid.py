"""Grid triangulation of a lifted pixel grid: two triangles per pixel quad, cut at edges.

Each pixel quad (x, y)-(x+1, y+1) whose four pixels kept a point gives two triangles,
split along the (x+1, y)-(x, y+1) diagonal. A triangle is dropped when its relative depth
span (max z / min z - 1) exceeds `max_jump`: it would bridge a depth edge that the lifter's
discontinuity mask (whose pixels kept no point) did not cut. The photo is the texture: UVs
come from pixel centres.
"""

from __future__ import annotations

import numpy as np

from mesh.data import MeshData, PixelCloud, pixel_uvs

#: Default relative depth span above which a triangle is taken to cross a depth edge.
DEFAULT_MAX_JUMP = 0.05
#: The span grows to this many standard deviations of the depth's own pixel noise: the
#: depth range of three grainy samples is not an edge (a predicted map is never noise-free).
NOISE_SPANS = 5.0


def relative_noise(disparity: np.ndarray, valid: np.ndarray) -> float:
    """Robust estimate of the per-pixel relative noise of a disparity map.

    The row-wise second difference vanishes on planes (disparity is affine there), so its
    median absolute value, relative to the disparity, measures the grain; edges are too rare
    to move the median. Scaled to the standard deviation of i.i.d. Gaussian noise.
    """
    if disparity.shape[1] < 3:
        return 0.0
    bend = np.abs(disparity[:, :-2] - 2.0 * disparity[:, 1:-1] + disparity[:, 2:]) / disparity[:, 1:-1]
    usable = valid[:, :-2] & valid[:, 1:-1] & valid[:, 2:]
    if not usable.any():
        return 0.0
    return float(np.median(bend[usable])) / (0.6745 * np.sqrt(6.0))


def grid_faces(index_map: np.ndarray, depth_map: np.ndarray, max_jump: float = DEFAULT_MAX_JUMP) -> np.ndarray:
    """(F, 3) int32 triangles over a pixel grid, counter-clockwise seen from the camera.

    index_map: (H, W) int32 vertex index per pixel, -1 where the pixel has no point
    depth_map: (H, W) float z per pixel (ignored where index_map is -1)
    """
    tl, tr = index_map[:-1, :-1], index_map[:-1, 1:]
    bl, br = index_map[1:, :-1], index_map[1:, 1:]
    z = np.where(index_map >= 0, depth_map, np.float32(np.nan)).astype(np.float32, copy=False)
    ztl, ztr, zbl, zbr = z[:-1, :-1], z[:-1, 1:], z[1:, :-1], z[1:, 1:]

    # With x right, y down and z forward, (tl, bl, tr) and (tr, bl, br) have normals
    # pointing at the camera (-z).
    triangles = (
        ((tl, bl, tr), (ztl, zbl, ztr)),
        ((tr, bl, br), (ztr, zbl, zbr)),
    )
    faces = []
    with np.errstate(invalid="ignore", divide="ignore"):
        for corners, depths in triangles:
            zmin = np.fmin(np.fmin(depths[0], depths[1]), depths[2])
            zmax = np.fmax(np.fmax(depths[0], depths[1]), depths[2])
            span = zmax / zmin - 1.0
            present = (corners[0] >= 0) & (corners[1] >= 0) & (corners[2] >= 0) & (zmin > 0)
            keep = present & (span <= max_jump)
            faces.append(np.stack([c[keep] for c in corners], axis=1))
    return np.concatenate(faces).astype(np.int32, copy=False)


def compact(mesh: MeshData) -> MeshData:
    """The same mesh without vertices that no face uses."""
    used = np.zeros(len(mesh.vertices), dtype=bool)
    used[mesh.faces.ravel()] = True
    if used.all():
        return mesh
    kept = np.flatnonzero(used)
    remap = np.cumsum(used, dtype=np.int32) - 1

    def pick(values):  # np.take gathers rows several times faster than a boolean mask
        return None if values is None else np.take(values, kept, axis=0)

    return MeshData(vertices=pick(mesh.vertices), faces=np.take(remap, mesh.faces),
                    uvs=pick(mesh.uvs), colors=pick(mesh.colors), normals=pick(mesh.normals),
                    frame=mesh.frame)


def grid_mesh(lift: PixelCloud, max_jump: float = DEFAULT_MAX_JUMP) -> MeshData:
    """Triangulate a lifted point grid into a textured mesh in the OpenCV camera frame.

    Vertices are the lifted points (unused ones removed), with vertex colours, normals and
    UVs into the photo the depth map was made for. On grainy depth the span limit is raised to
    NOISE_SPANS times the map's noise level, so the grain does not punch holes in surfaces.
    """
    height, width = lift.shape
    points = np.asarray(lift.points, dtype=np.float32)
    index_map = np.full(height * width, -1, dtype=np.int32)
    index_map[lift.pixel_index] = np.arange(len(points), dtype=np.int32)
    depth_map = np.zeros(height * width, dtype=np.float32)
    depth_map[lift.pixel_index] = points[:, 2]
    depth_map = depth_map.reshape(height, width)
    valid = index_map.reshape(height, width) >= 0
    with np.errstate(divide="ignore"):
        noise = relative_noise(np.where(valid, 1.0 / depth_map, 1.0), valid)
    floor = NOISE_SPANS * noise
    faces = grid_faces(index_map.reshape(height, width), depth_map, max(max_jump, floor))
    mesh = MeshData(vertices=points, faces=faces, uvs=pixel_uvs(lift.pixel_index, (height, width)),
                    colors=lift.colors, normals=lift.normals)
    return compact(mesh)
