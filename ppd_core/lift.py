"""Depth map + intrinsics (+ photo) -> an edge-clean point cloud in the OpenCV camera frame."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class LiftResult:
    """A lifted point cloud and the per-pixel masks it came from.

    points:        (N, 3) float32, OpenCV camera frame (x right, y down, z forward), metres
    colors:        (N, 3) uint8 RGB (grey 128 when no photo was given)
    normals:       (N, 3) float32 unit vectors, oriented toward the camera
    pixel_index:   (N,) int64 flat index y * width + x into the depth map's grid
    valid:         (H, W) bool, pixels with a finite positive depth that kept a point
    discontinuity: (H, W) bool, the depth-discontinuity mask (the mesher cuts triangles here)
    """

    points: np.ndarray
    colors: np.ndarray
    normals: np.ndarray
    pixel_index: np.ndarray
    valid: np.ndarray
    discontinuity: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of the depth map the points were lifted from."""
        return self.valid.shape
