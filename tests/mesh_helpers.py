"""Synthetic lifted grids for the mesh tests (exact pinhole lift of a given depth map)."""

from __future__ import annotations

from typing import Optional

import numpy as np

from mesh.data import PixelCloud


def lift_depth(depth: np.ndarray, focal: float = 100.0, discontinuity: Optional[np.ndarray] = None,
               colors: Optional[np.ndarray] = None) -> PixelCloud:
    """Lift every finite, positive pixel of `depth` through a centred pinhole camera."""
    height, width = depth.shape
    valid = np.isfinite(depth) & (depth > 0)
    y, x = np.nonzero(valid)
    z = depth[y, x]
    points = np.column_stack([(x + 0.5 - width / 2) / focal * z, (y + 0.5 - height / 2) / focal * z, z])
    if colors is None:
        colors = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1),
                           np.full_like(x, 128)], axis=1)
    else:
        colors = colors[y, x]
    normals = np.tile(np.float32([0.0, 0.0, -1.0]), (len(z), 1))
    return PixelCloud(points=points.astype(np.float32), colors=colors.astype(np.uint8), normals=normals,
                      pixel_index=(y * width + x).astype(np.int64), valid=valid,
                      discontinuity=np.zeros_like(valid) if discontinuity is None else discontinuity)


def step_depth(height: int = 48, width: int = 64, near: float = 1.0, far: float = 3.0, column: int = 32) -> np.ndarray:
    """A fronto-parallel plane at `near` left of `column` and at `far` from it on."""
    depth = np.full((height, width), near, dtype=np.float64)
    depth[:, column:] = far
    return depth
