"""The print solid of a depth map with every relief option: `relief_print(depth, rgb, ReliefSpec(...))`.

In order: the picture's heights (smoothed if asked), its outline (rectangle or silhouette),
frame, rounded corners and hanger (`mesh.relief_shape`), the bend of a curved panel
(`mesh.relief_bend`), a triangle budget (`mesh.decimate.decimate_solid`), and the colours of
a multi-material print (`mesh.colour_relief`). With none of them it is exactly `relief_solid`.
Every result is watertight, consistently wound and manifold, in exact millimetres.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from mesh.colour_relief import paint_relief
from mesh.data import MeshData, MeshError
from mesh.decimate import decimate_solid
from mesh.print_options import HANGERS, shape_problem
from mesh.relief_bend import Bend, bend_panel
from mesh.relief_layout import PictureLayout, picture_layout, reaching_layout
from mesh.relief_shape import picture_heights, shaped_solid
from mesh.solid import DEFAULT_CELL_MM, check_print_size, heightfield_solid

STL_HEADER_BYTES, STL_TRIANGLE_BYTES = 84, 50


@dataclass(frozen=True)
class ReliefSpec:
    """What the print solid should be (sizes in mm; see `ppd_core.options` for each option's words)."""

    width_mm: float = 100.0
    relief_mm: float = 5.0
    base_mm: float = 2.0
    frame_mm: float = 0.0                     # a frame this wide around the picture, inside width_mm
    frame_height_mm: Optional[float] = None   # its top above the base; None: the relief's full height
    corner_mm: float = 0.0                    # radius of the outline's rounded corners
    hanger: str = "none"                      # "none", "hole" or "keyhole"
    curve_radius_mm: Optional[float] = None   # None: flat; else a standing panel bent to this radius
    smooth_mm: float = 0.0                    # edge-keeping smoothing over about this distance
    silhouette: bool = False                  # cut along the photo's region with depth
    max_faces: Optional[int] = None           # a triangle budget (edge-keeping decimation)
    filaments: Optional[str] = None           # "4" or "white,black,red": a painted multi-material solid
    reverse: bool = False                     # far high (a lithophane) instead of near high
    cell_mm: float = DEFAULT_CELL_MM

    @property
    def shaped(self) -> bool:
        """True when the outline is more than the picture's rectangle, or a hanger is cut."""
        return self.frame_mm > 0 or self.corner_mm > 0 or self.silhouette or self.hanger != "none"


def stl_face_budget(megabytes: float) -> int:
    """The most triangles a binary STL of `megabytes` (10^6 bytes) holds."""
    return max(1, int((megabytes * 1e6 - STL_HEADER_BYTES) // STL_TRIANGLE_BYTES))


def check_spec(spec: ReliefSpec) -> None:
    """MeshError for sizes or shapes no solid can have (what needs no depth map)."""
    check_print_size(spec.width_mm, spec.relief_mm, spec.base_mm)
    if spec.hanger not in HANGERS:
        raise MeshError(f"hanger {spec.hanger!r} is not one of {', '.join(HANGERS)}")
    for name, value in (("frame width", spec.frame_mm), ("frame height", spec.frame_height_mm or 0.0),
                        ("corner radius", spec.corner_mm), ("smoothing", spec.smooth_mm)):
        if not (np.isfinite(value) and value >= 0):
            raise MeshError(f"the {name} must be 0 or more mm, got {value}")
    if spec.curve_radius_mm is not None and not (np.isfinite(spec.curve_radius_mm) and spec.curve_radius_mm > 0):
        raise MeshError(f"the curve radius must be a positive number of mm, got {spec.curve_radius_mm}")
    problem = shape_problem(width_mm=spec.width_mm, base_mm=spec.base_mm, frame_mm=spec.frame_mm,
                            corner_mm=spec.corner_mm, hanger=spec.hanger, curve_radius_mm=spec.curve_radius_mm)
    if problem:
        raise MeshError(problem)


def _flat_points(solid: MeshData, bend: Optional[Bend]) -> np.ndarray:
    """The solid's vertices as they lie on the flat relief (a curved panel's, unbent)."""
    return solid.vertices.astype(np.float64) if bend is None else bend.undo(solid.vertices)


def picture_uvs(flat: np.ndarray, layout: PictureLayout) -> np.ndarray:
    """Texture coordinates (v up) of flat relief points: where on the picture they lie."""
    half_x, half_y = layout.half_extent
    u = (flat[:, 0] + half_x) / (2 * half_x)
    v = (flat[:, 1] + half_y) / (2 * half_y)
    return np.clip(np.column_stack([u, v]), 0.0, 1.0).astype(np.float32)


def relief_print(depth: np.ndarray, rgb: Optional[np.ndarray] = None, spec: ReliefSpec = ReliefSpec(),
                 on_progress: Optional[Callable[[float, str], None]] = None) -> MeshData:
    """The print solid of a metric depth map (H, W) with every option of `spec`; `rgb` is the
    photo (any size, the map's aspect), needed for `spec.filaments`. `on_progress(fraction,
    message)` hears of each step."""
    def say(fraction: float, message: str) -> None:
        if on_progress is not None:
            on_progress(fraction, message)

    check_spec(spec)
    if spec.filaments is not None and rgb is None:
        raise MeshError("a colour relief needs the photo's colours")
    depth = np.asarray(depth)
    if depth.ndim != 2 or min(depth.shape) < 2:
        raise MeshError(f"a relief needs a 2-D depth map of at least 2x2 pixels, got shape {depth.shape}")
    layout = picture_layout(depth.shape, spec.width_mm, spec.frame_mm, spec.cell_mm)
    if spec.shaped:
        layout = reaching_layout(layout)
    say(0.0, "relief heights")
    heights, inside = picture_heights(depth, layout, silhouette=spec.silhouette, smooth_mm=spec.smooth_mm,
                                      reverse=spec.reverse)
    top_mm = spec.base_mm + spec.relief_mm * heights
    if spec.shaped:
        say(0.2, "outline, frame and hanger")
        frame_height = spec.relief_mm if spec.frame_height_mm is None else spec.frame_height_mm
        solid = shaped_solid(top_mm, layout, inside, corner_mm=spec.corner_mm, hanger=spec.hanger,
                             frame_top_mm=spec.base_mm + frame_height)
    else:
        solid = heightfield_solid(top_mm, *layout.cell)
    bend = None
    if spec.curve_radius_mm is not None:
        say(0.5, f"bending to a {spec.curve_radius_mm:g} mm radius")
        solid, bend = bend_panel(solid, spec.curve_radius_mm)
    if spec.max_faces is not None and spec.max_faces < len(solid.faces):
        say(0.6, f"decimating to {spec.max_faces} triangles")
        solid = decimate_solid(solid, spec.max_faces)
    changed = spec.shaped or bend is not None or solid.uvs is None
    if changed or spec.filaments is not None:
        flat = _flat_points(solid, bend)
        if changed:
            solid.uvs = picture_uvs(flat, layout)
        if spec.filaments is not None:
            say(0.8, "colours to filaments")
            solid.paint = paint_relief(flat, solid, rgb, layout, spec.filaments)
    say(1.0, "print solid ready")
    return solid
