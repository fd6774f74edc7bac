"""Pinhole camera intrinsics (OpenCV convention) and their conversions.

Pixel (x, y) (integer column, row) has its centre at the continuous image coordinate
(x + 0.5, y + 0.5); a principal point of (width / 2, height / 2) is the image centre.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Intrinsics:
    """Focal lengths and principal point in pixels of an image of `width` x `height`."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
