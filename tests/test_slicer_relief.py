"""PrusaSlicer reads and slices each relief option's solid, and a painted colour relief with tool changes.

Skipped where no slicer is installed (Debian: `apt-get install prusa-slicer`). Each solid is
made by the command from a depth map (`ppd-mesh photo.png --depth depth.npy --stl ...`);
`--info` must find it manifold, in one part, of the size the option promises, and
`--export-gcode` must slice it to its top.
"""

import math
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from mesh.painted_3mf import read_painted_threemf
from mesh.relief_layout import picture_layout, reaching_layout
from ppd_core.mesh import main
from tests.test_slicer import run

PRUSA = shutil.which("prusa-slicer")
pytestmark = pytest.mark.skipif(PRUSA is None, reason="prusa-slicer is not installed")

SIZE = (96, 128)  # the depth map and photo, 4:3
BASE = ["--width-mm", "60", "--relief-mm", "4", "--base-mm", "1.5", "--quiet", "--force"]
SKY_COLUMNS, SKY_ROWS = 32, 24  # the silhouette's depth map has no depth left of and above these


def depth_map(sky: bool = False) -> np.ndarray:
    """A near box before a far wall (and, with `sky`, no depth along the left and top)."""
    depth = np.full(SIZE, 2.0, np.float32)
    depth[20:70, 30:90] = 1.0
    if sky:
        depth[:, :SKY_COLUMNS] = np.nan
        depth[:SKY_ROWS, :] = np.nan
    return depth


def quadrant_photo() -> np.ndarray:
    """White, red, blue and black quadrants."""
    rgb = np.zeros((*SIZE, 3), np.uint8)
    h, w = SIZE[0] // 2, SIZE[1] // 2
    rgb[:h, :w], rgb[:h, w:], rgb[h:, :w], rgb[h:, w:] = (235, 235, 230), (200, 30, 35), (30, 60, 200), (20, 20, 20)
    return rgb


def make(folder, flags, *, sky=False, kind="stl"):
    Image.fromarray(quadrant_photo()).save(folder / "photo.png")
    np.save(folder / "depth.npy", depth_map(sky))
    assert main([str(folder / "photo.png"), "--depth", str(folder / "depth.npy"), f"--{kind}", *BASE, *flags]) == 0
    return folder / f"photo.{kind}"


def info(path, tmp_path) -> dict:
    found = dict(re.findall(r"^(\w+)\s*=\s*(.+?)\s*$", run([PRUSA, "--info", str(path)], tmp_path), re.M))
    assert found["manifold"] == "yes" and found["number_of_parts"] == "1"
    return found


def size_of(found) -> tuple:
    return tuple(float(found[f"size_{axis}"]) for axis in "xyz")


def sliced_top(path, tmp_path, extra=()) -> str:
    gcode = tmp_path / "out.gcode"
    run([PRUSA, "--export-gcode", str(path), "--output", str(gcode), *extra], tmp_path)
    return gcode.read_text()


def top_layer(gcode: str) -> float:
    return float(re.findall(r"^;Z:([\d.]+)", gcode, re.M)[-1])


PICTURE_LENGTH = 60.0 * SIZE[0] / SIZE[1]
HALF = 30.0 / 60.0  # half the bend, in radians, of a 60 mm panel on a 60 mm radius


@pytest.mark.parametrize("name, flags, size", [
    ("framed", ["--frame-mm", "5", "--frame-height-mm", "6", "--corner-mm", "4"],
     (60.0, 50.0 * SIZE[0] / SIZE[1] + 10.0, 7.5)),
    # bent: the far wall's base (1.5 mm) at the ends, the near box (5.5 mm) in the middle at the front
    ("curved", ["--curve-radius-mm", "60"],
     (2 * 61.5 * math.sin(HALF), 5.5 + 60.0 * (1 - math.cos(HALF)), PICTURE_LENGTH)),
    ("with a hole", ["--hanger", "hole"], (60.0, PICTURE_LENGTH, 5.5)),
    ("budgeted", ["--max-mb", "0.05"], (60.0, PICTURE_LENGTH, 5.5)),
])
def test_each_option_slices_watertight_at_its_size(name, flags, size, tmp_path):
    path = make(tmp_path, flags)
    found = info(path, tmp_path)
    assert size_of(found) == pytest.approx(size, abs=0.01), name
    assert float(found["min_z"]) == pytest.approx(0.0, abs=1e-6)
    assert top_layer(sliced_top(path, tmp_path)) == pytest.approx(size[2], abs=0.2)
    if name == "budgeted":
        assert path.stat().st_size <= 50_000 and int(found["number_of_facets"]) <= 998


def test_silhouette_cut_slices_at_the_size_of_the_pixels_with_depth(tmp_path):
    path = make(tmp_path, ["--silhouette"], sky=True)
    found = info(path, tmp_path)
    layout = reaching_layout(picture_layout(SIZE, 60.0, 0.0, 0.25))
    (cell_x, cell_y), (half_x, half_y) = layout.cell, layout.half_extent
    # From half a grid step before the first point with depth (nudged a tenth right and down) to the
    # picture's right and bottom edges.
    left = -half_x + (SKY_COLUMNS - 0.4) * cell_x
    top = half_y - (SKY_ROWS - 0.4) * cell_y
    assert size_of(found) == pytest.approx((30.0 - left, top + PICTURE_LENGTH / 2, 5.5), abs=0.01)
    assert top_layer(sliced_top(path, tmp_path)) == pytest.approx(5.5, abs=0.2)


MMU = ["--nozzle-diameter", "0.4,0.4,0.4,0.4", "--single-extruder-multi-material", "--wipe-tower",
       "--use-relative-e-distances"]
"""A four-filament printer (PrusaSlicer's MMU: one nozzle, four filaments, a wipe tower)."""


def test_a_four_colour_relief_slices_with_tool_changes_and_reads_back_painted(tmp_path):
    path = make(tmp_path, ["--filaments", "4"], kind="3mf")
    found = info(path, tmp_path)
    assert size_of(found) == pytest.approx((60.0, PICTURE_LENGTH, 5.5), abs=0.01)
    gcode = sliced_top(path, tmp_path, MMU)
    assert {"T1", "T2", "T3"} <= set(re.findall(r"^(T\d)\s*$", gcode, re.M))
    vertices, faces, filaments = read_painted_threemf(path.read_bytes())
    corners = vertices[faces]
    normal_z = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])[:, 2]
    top = normal_z > 1e-9
    assert top.sum() > 0.9 * len(faces) and set(np.unique(filaments[top])) == {1, 2, 3, 4}
    assert (filaments[~top] == 0).all()  # sides and base: the object's own filament, the first
