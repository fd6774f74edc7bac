"""The backend's print export (Blender's Export for Printing): arrays in millimetres to STL
and 3MF through mesh.export, all or none, with the slicer checks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh

from ppd_core.errors import BadInputError
from ppd_core.print_export import export_solid, main, read_solid

REPO = Path(__file__).resolve().parents[1]


def _box_npz(path: Path, size=(100.0, 66.5, 7.0)) -> Path:
    box = trimesh.creation.box(extents=size)
    box.apply_translation(np.array(size) / 2)
    np.savez(path, vertices=box.vertices.astype(np.float32), faces=box.faces.astype(np.int32))
    return path


def test_the_solid_is_written_in_millimetres_and_checked(tmp_path):
    npz = _box_npz(tmp_path / "solid.npz")
    done = subprocess.run([sys.executable, "-m", "ppd_core.print_export", str(npz), str(tmp_path / "a.stl"),
                           str(tmp_path / "a.3mf"), "--json"], capture_output=True, text=True, cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout)
    assert outcome["files"] == [str(tmp_path / "a.stl"), str(tmp_path / "a.3mf")]
    assert outcome["size_mm"] == pytest.approx([100.0, 66.5, 7.0]) and outcome["printable"]
    assert outcome["check"].startswith("100.00 x 66.50 x 7.00 mm")
    import pymeshlab

    for name in ("a.stl", "a.3mf"):
        meshes = pymeshlab.MeshSet()
        meshes.load_new_mesh(str(tmp_path / name))
        box = meshes.current_mesh().bounding_box()
        assert [box.dim_x(), box.dim_y(), box.dim_z()] == pytest.approx([100.0, 66.5, 7.0], abs=1e-3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.3mf", "a.stl", "solid.npz"]  # no staging left


def test_bad_input_is_one_line_and_nothing_is_written(tmp_path, capsys):
    npz = _box_npz(tmp_path / "solid.npz")
    with pytest.raises(BadInputError, match=r"a print file ends in \.stl or \.3mf"):
        export_solid(read_solid(npz), [tmp_path / "a.obj"])
    (tmp_path / "junk.npz").write_bytes(b"not an npz")
    assert main([str(tmp_path / "junk.npz"), str(tmp_path / "b.stl")]) == 1
    assert capsys.readouterr().err.startswith(f"error: {tmp_path / 'junk.npz'}: not a solid's arrays")
    np.savez(tmp_path / "flat.npz", vertices=np.zeros((3, 3), np.float32), faces=np.zeros((0, 3), np.int32))
    with pytest.raises(BadInputError, match="no triangles"):
        read_solid(tmp_path / "flat.npz")
    # A target in a folder that does not exist: neither file is written (all or none).
    assert main([str(npz), str(tmp_path / "c.stl"), str(tmp_path / "gone" / "c.3mf")]) == 1
    assert "gone" in capsys.readouterr().err
    assert not (tmp_path / "c.stl").exists()
