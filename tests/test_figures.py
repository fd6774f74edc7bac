"""docs/figures/make_figures.py runs offline on the CPU and writes every figure at its size."""

import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from benchmarks.edge_quality import METHODS

FIGURES = Path(__file__).resolve().parents[1] / "docs" / "figures"
SIZES = {"flow.png": (1572, 310), "flying_points.png": (960, 400 * math.ceil(len(METHODS) / 2)),
         "print.png": (800, 520),  # the flying points: two panels a row, one per lifting method
         **{f"relief_{name}.png": (480, 410) for name in ("frame", "corners", "curved", "silhouette", "colour")},
         **{f"relief_{name}.png": (960, 410) for name in ("hanger", "smooth", "budget")}}  # two panels side by side


@pytest.mark.skipif(importlib.util.find_spec("bpy") is None, reason="bpy (Blender as a module) renders the figures")
@pytest.mark.slow
def test_the_script_writes_every_figure_at_its_size(tmp_path):
    # Its own process: bpy must not load into the test process before the add-on tests set it up.
    done = subprocess.run([sys.executable, str(FIGURES / "make_figures.py"), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(SIZES)
    for name, size in SIZES.items():
        assert 10_000 < (tmp_path / name).stat().st_size < 300_000
        assert Image.open(tmp_path / name).size == size


def test_the_docs_show_the_figures_the_script_makes():
    assert {path.name for path in FIGURES.glob("*.png")} == set(SIZES)
    for name, size in SIZES.items():
        assert Image.open(FIGURES / name).size == size
