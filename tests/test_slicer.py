"""Real slicers open our STL and 3MF solids (skipped where no slicer is installed).

Debian: `apt-get install prusa-slicer admesh`. PrusaSlicer's `--info` reports size, manifold
and volume as it reads the file; `--export-gcode` slices it for a printer.
"""

import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from ppd_core.mesh import main

PRUSA = shutil.which("prusa-slicer")
ADMESH = shutil.which("admesh")


@pytest.fixture(scope="module")
def solids(tmp_path_factory):
    """STL and 3MF of a 60 x 45 mm relief (a box before a wall, a hole of no depth)."""
    folder = tmp_path_factory.mktemp("slicer")
    photo = folder / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(photo)
    depth = np.full((48, 64), 2.0, np.float32)
    depth[10:35, 15:45] = 1.0
    depth[40:44, 5:9] = np.nan
    np.save(folder / "depth.npy", depth)
    assert main([str(photo), "--depth", str(folder / "depth.npy"), "--stl", "--3mf", "--width-mm", "60",
                 "--relief-mm", "4", "--base-mm", "1.5", "--quiet"]) == 0
    return folder / "photo.stl", folder / "photo.3mf"


def run(command, tmp_path):
    env = {**os.environ, "HOME": str(tmp_path)}  # PrusaSlicer keeps its settings under HOME
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.skipif(PRUSA is None, reason="prusa-slicer is not installed")
@pytest.mark.parametrize("kind", ["stl", "3mf"])
def test_prusa_slicer_reads_a_manifold_solid_of_the_asked_size(solids, kind, tmp_path):
    path = solids[0] if kind == "stl" else solids[1]
    info = dict(re.findall(r"^(\w+)\s*=\s*(.+?)\s*$", run([PRUSA, "--info", str(path)], tmp_path), re.M))
    assert info["manifold"] == "yes" and info["number_of_parts"] == "1"
    assert float(info["size_x"]) == pytest.approx(60.0, abs=1e-3)
    assert float(info["size_y"]) == pytest.approx(45.0, abs=1e-3)
    assert float(info["size_z"]) == pytest.approx(5.5, abs=1e-3)
    assert float(info["min_z"]) == pytest.approx(0.0, abs=1e-6)
    # base 60 x 45 x 1.5 plus the box's 30/64 x 25/48 of the top raised by 4 mm (edges blend)
    assert float(info["volume"]) == pytest.approx(60 * 45 * 1.5 + 60 * 45 * (30 / 64) * (25 / 48) * 4, rel=0.05)


@pytest.mark.skipif(PRUSA is None, reason="prusa-slicer is not installed")
def test_prusa_slicer_slices_the_3mf_into_gcode(solids, tmp_path):
    gcode = tmp_path / "photo.gcode"
    run([PRUSA, "--export-gcode", str(solids[1]), "--output", str(gcode)], tmp_path)
    layers = re.findall(r"^;Z:([\d.]+)", gcode.read_text(), re.M)
    assert float(layers[-1]) == pytest.approx(5.5, abs=0.2) and len(layers) > 15


@pytest.mark.skipif(ADMESH is None, reason="admesh is not installed")
def test_admesh_finds_nothing_to_repair_in_the_stl(solids, tmp_path):
    report = run([ADMESH, str(solids[0])], tmp_path)
    for field in ("Facets with 1 disconnected edge", "Degenerate facets", "Edges fixed", "Facets reversed",
                  "Backwards edges", "Normals fixed"):
        assert re.search(rf"{field}\s*:\s*0\b", report), field
    assert re.search(r"Number of parts\s*:\s*1\b", report)
