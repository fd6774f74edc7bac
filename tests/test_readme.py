"""README's Python example runs as written (with small random weights as PPD_WEIGHTS)."""

import re
from pathlib import Path

import numpy as np
from PIL import Image

from tests.checkpoints import write_small_weights

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_python_example_runs_as_written(tmp_path, monkeypatch):
    section = README.read_text(encoding="utf-8").split("## Python and Open3D", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    rgb = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "photo.jpg")
    monkeypatch.setenv("PPD_WEIGHTS", str(write_small_weights(tmp_path / "weights")))
    monkeypatch.chdir(tmp_path)
    names: dict = {}
    exec(compile(code, str(README), "exec"), names)
    assert names["depth"].shape == (96, 128) and np.isfinite(names["depth"]).mean() > 0.9
    assert len(names["pcd"].points) == len(names["cloud"]) > 0 and names["pcd"].has_normals()
    assert len(names["surface"].faces) > 0
