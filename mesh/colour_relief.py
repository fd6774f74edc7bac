"""A colour relief: the photo's colours reduced to a few filaments, each top triangle painted with one.

Colours are compared in CIELAB (OpenCV's conversion), where straight distances follow how
different two colours look far better than in RGB: a count of filaments is found by k-means
there (OpenCV), a list of the user's own filaments is matched by the nearest colour. The
result is made printable on the picture's print grid: no strip narrower than a nozzle, no
island smaller than `MIN_ISLAND_MM` square; their cells join the regions around them.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from scipy.ndimage import distance_transform_edt

from mesh.data import MeshData, MeshError, Paint
from mesh.print_options import FILAMENT_COLOURS, filament_list
from mesh.relief_layout import PictureLayout

NOZZLE_MM = 0.4
"""The usual nozzle: a line of one colour narrower than this cannot be printed."""
MIN_ISLAND_MM = 2 * NOZZLE_MM
"""An island of one colour must cover at least a square this wide (two extrusion widths)."""
KMEANS_SAMPLES = 40_000
"""k-means runs on this many pixels at most (a fixed random choice); every pixel then takes its
nearest centre."""
TOP_NORMAL_Z = 1e-3
"""A face is on top when its normal points up by more than this (steps of a relief are steep
but never vertical; sides, hole walls and the base are)."""


def lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (L 0..100, a and b about -127..127) of sRGB uint8 colours (..., 3)."""
    rgb = np.asarray(rgb, dtype=np.uint8)
    flat = rgb.reshape(1, -1, 3).astype(np.float32) / 255.0
    return cv2.cvtColor(flat, cv2.COLOR_RGB2Lab).reshape(rgb.shape).astype(np.float32)


def srgb(lab_colours: np.ndarray) -> np.ndarray:
    """sRGB uint8 (K, 3) of CIELAB colours (K, 3)."""
    rgb = cv2.cvtColor(np.asarray(lab_colours, np.float32).reshape(1, -1, 3), cv2.COLOR_Lab2RGB).reshape(-1, 3)
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)


def nearest_name(colour: np.ndarray) -> str:
    """The named filament colour (`FILAMENT_COLOURS`) nearest `colour` (sRGB) in CIELAB."""
    names = list(FILAMENT_COLOURS)
    table = np.array([[int(FILAMENT_COLOURS[n][i:i + 2], 16) for i in (1, 3, 5)] for n in names], np.uint8)
    distance = np.linalg.norm(lab(table) - lab(np.asarray(colour, np.uint8)[None]), axis=1)
    return names[int(np.argmin(distance))]


def hex_colour(colour: np.ndarray) -> str:
    return "#" + "".join(f"{int(v):02x}" for v in colour)


def _nearest_centre(pixels: np.ndarray, centres: np.ndarray) -> np.ndarray:
    distance = ((pixels[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
    return np.argmin(distance, axis=1)


def quantised(rgb: np.ndarray, filaments: str) -> tuple[np.ndarray, np.ndarray, tuple]:
    """(labels (H, W) int, filament colours (K, 3) uint8, names) of an sRGB image for `filaments`:
    a count ("4": k-means in CIELAB, the commonest colour first, colours no pixel took left out)
    or the user's colours in their slot order ("white,black,#2060c0": each pixel the nearest)."""
    try:
        count, named = filament_list(filaments)
    except ValueError as error:
        raise MeshError(str(error)) from None
    height, width = rgb.shape[:2]
    pixels = lab(rgb).reshape(-1, 3)
    if named:
        colours = np.array([colour for _, colour in named], np.uint8)
        labels = _nearest_centre(pixels, lab(colours))
        return labels.reshape(height, width), colours, tuple(name for name, _ in named)
    sample = pixels
    if len(pixels) > KMEANS_SAMPLES:
        sample = pixels[np.random.default_rng(0).choice(len(pixels), KMEANS_SAMPLES, replace=False)]
    count = min(count, len(np.unique(sample.round(1), axis=0)))
    cv2.setRNGSeed(0)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 50, 0.05)
    _, _, centres = cv2.kmeans(np.ascontiguousarray(sample), count, None, criteria, 3, cv2.KMEANS_PP_CENTERS)
    labels = _nearest_centre(pixels, centres)
    frequency = np.bincount(labels, minlength=len(centres))
    order = [k for k in np.argsort(-frequency, kind="stable") if frequency[k] > 0]
    relabel = np.full(len(centres), -1)
    relabel[order] = np.arange(len(order))
    colours = srgb(centres[order])
    return relabel[labels].reshape(height, width), colours, tuple(f"near {nearest_name(c)}" for c in colours)


def printable_labels(labels: np.ndarray, cell_mm: tuple[float, float]) -> np.ndarray:
    """`labels` on a grid of cells `cell_mm` (x, y) wide, made printable: strips narrower than
    `NOZZLE_MM` go to the nearest region that stays, then every island (4-connected) smaller
    than `MIN_ISLAND_MM` square joins the region it borders most, until none is left."""
    labels = np.asarray(labels).copy()
    kernel = np.ones((math.ceil(NOZZLE_MM / cell_mm[1] - 1e-9), math.ceil(NOZZLE_MM / cell_mm[0] - 1e-9)), np.uint8)
    if kernel.size > 1:
        thin = np.zeros(labels.shape, bool)
        for label in np.unique(labels):
            mask = (labels == label).astype(np.uint8)
            thin |= mask.astype(bool) & ~cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel,
                                                          borderType=cv2.BORDER_REPLICATE).astype(bool)
        if thin.any() and not thin.all():
            nearest = distance_transform_edt(thin, return_distances=False, return_indices=True)
            labels = labels[tuple(nearest)]
    least = math.ceil(MIN_ISLAND_MM**2 / (cell_mm[0] * cell_mm[1]) - 1e-9)
    while _merge_islands(labels, least):
        pass
    return labels


def _merge_islands(labels: np.ndarray, least: int) -> bool:
    """Give each island of fewer than `least` cells the label most common around it, in place;
    True when one was merged. Each merge joins two regions, so repeating this ends."""
    cross = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], np.uint8)
    merged = False
    for label in np.unique(labels):
        _, parts, stats, _ = cv2.connectedComponentsWithStats((labels == label).astype(np.uint8), connectivity=4)
        for part in np.flatnonzero(stats[1:, cv2.CC_STAT_AREA] < least) + 1:
            x, y, width, height = stats[part, :4]
            rows = slice(max(y - 1, 0), y + height + 1)
            columns = slice(max(x - 1, 0), x + width + 1)
            island = parts[rows, columns] == part
            around = labels[rows, columns][cv2.dilate(island.astype(np.uint8), cross).astype(bool) & ~island]
            around = around[around != label]
            if around.size:
                labels[rows, columns][island] = np.bincount(around).argmax()
                merged = True
    return merged


def paint_relief(flat_vertices: np.ndarray, solid: MeshData, rgb: np.ndarray, layout: PictureLayout,
                 filaments: str) -> Paint:
    """The paint of a relief whose vertices, laid flat (the picture's frame: x, y in mm on the
    picture, z up), are `flat_vertices`: every top face takes the filament of the picture's
    cell under its centre (the frame's top, the first filament); sides and base stay unpainted."""
    columns, rows = layout.columns - 1, layout.rows - 1
    cells = cv2.resize(np.ascontiguousarray(rgb[..., :3], np.uint8), (columns, rows), interpolation=cv2.INTER_AREA)
    labels, colours, names = quantised(cells, filaments)
    labels = printable_labels(labels, layout.cell)
    corners = np.asarray(flat_vertices, np.float64)[solid.faces]
    normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    top = normals[:, 2] > TOP_NORMAL_Z * np.maximum(np.linalg.norm(normals, axis=1), 1e-30)
    centre = corners.mean(axis=1)
    row, column = layout.grid_cells(centre)
    on_picture = (column >= 0) & (column < columns) & (row >= 0) & (row < rows)
    faces = np.full(len(solid.faces), -1, np.int16)
    faces[top] = 0
    picked = top & on_picture
    faces[picked] = labels[row[picked], column[picked]]
    return Paint(faces=faces, colors=colours, names=names)
