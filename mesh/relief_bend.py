"""A curved panel: a flat relief bent around a vertical cylinder, standing as it is printed.

The flat relief's back (z = 0) becomes a cylinder of the given radius, its relief facing out
(toward -y, the front of a slicer's bed), its picture's top up (+z). Bending is a smooth map
that keeps orientation, so the solid stays closed and outward-wound; its long edges (the base's,
the walls') are split first (manifold3d), so that no straight edge strays from the arc by more
than `CHORD_MM`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mesh.data import MeshData
from mesh.relief_shape import from_manifold, to_manifold

CHORD_MM = 0.01
"""How far a straight edge of the bent panel may lie inside its arc (the sagitta)."""


@dataclass(frozen=True)
class Bend:
    """The map from the flat relief (x along the width, y up the picture, z out of it) to the
    standing curved panel, centred on x = y = 0 and standing on z = 0."""

    radius_mm: float
    shift: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Flat (N, 3) points bent onto the panel."""
        points = np.asarray(points, dtype=np.float64)
        angle = points[:, 0] / self.radius_mm
        radius = self.radius_mm + points[:, 2]
        bent = np.column_stack([radius * np.sin(angle), self.radius_mm - radius * np.cos(angle), points[:, 1]])
        return bent + np.asarray(self.shift)

    def undo(self, points: np.ndarray) -> np.ndarray:
        """Panel (N, 3) points back in the flat relief's frame."""
        bent = np.asarray(points, dtype=np.float64) - np.asarray(self.shift)
        across = self.radius_mm - bent[:, 1]
        return np.column_stack([self.radius_mm * np.arctan2(bent[:, 0], across), bent[:, 2],
                                np.hypot(bent[:, 0], across) - self.radius_mm])


def bend_panel(solid: MeshData, radius_mm: float) -> tuple[MeshData, Bend]:
    """(the flat print solid bent into a standing panel whose back has radius `radius_mm`, the
    `Bend` that maps flat points onto it)."""
    edge = math.sqrt(8.0 * radius_mm * CHORD_MM)  # the chord whose sagitta is CHORD_MM
    fine = to_manifold(solid).refine_to_length(edge)
    bent = fine.warp_batch(Bend(radius_mm).apply)
    x0, y0, z0, x1, y1, _ = bent.bounding_box()
    bend = Bend(radius_mm, (-0.5 * (x0 + x1), -0.5 * (y0 + y1), -z0))
    return from_manifold(bent.translate(bend.shift)), bend
