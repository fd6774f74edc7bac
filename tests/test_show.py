"""--show: a window where a display exists; where none does (as on the test machines), one
line, and the outputs are written all the same."""

import os
import subprocess
import sys

import numpy as np
import open3d as o3d
import pytest
from PIL import Image

from ppd_core.files.output_check import output_problem
from ppd_core.mesh import main
from ppd_core.viewer import display_problem, load_geometry, show_outputs, shown_output

H, W = 48, 64


@pytest.fixture
def scene(tmp_path):
    photo = tmp_path / "a.png"
    Image.fromarray(np.random.default_rng(4).integers(0, 255, (H, W, 3), dtype=np.uint8)).save(photo)
    depth = np.full((H, W), 2.0, np.float32)
    depth[10:35, 15:45] = 1.0
    np.save(tmp_path / "depth.npy", depth)
    return photo, tmp_path / "depth.npy"


def without_display(monkeypatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="a desktop there always has a display")
def test_without_a_display_show_says_so_once_and_the_outputs_are_written(scene, tmp_path, monkeypatch, capsys):
    photo, depth = scene
    without_display(monkeypatch)
    assert main([str(photo), "--depth", str(depth), "--stl", "--glb", "--show", "--quiet"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["ppd-mesh: --show: no display here (DISPLAY and WAYLAND_DISPLAY are not set); "
                   "the outputs are written as usual"]
    assert output_problem("stl", tmp_path / "a.stl") is None and output_problem("glb", tmp_path / "a.glb") is None


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="X displays are a Linux matter")
def test_a_display_named_but_not_answering_is_no_display(monkeypatch):
    without_display(monkeypatch)
    monkeypatch.setenv("DISPLAY", ":97531")  # no X server listens there
    assert display_problem() == "no display answers at DISPLAY=:97531"
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-97531")
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/nonexistent")
    assert display_problem() == "no display answers at DISPLAY=:97531 or WAYLAND_DISPLAY=wayland-97531"


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="needs a machine without a display")
def test_the_viewer_refuses_a_window_open3d_cannot_show_instead_of_waiting_for_ever(scene, tmp_path):
    photo, depth = scene
    assert main([str(photo), "--depth", str(depth), "--stl", "--quiet"]) == 0
    env = {key: value for key, value in os.environ.items() if key not in ("DISPLAY", "WAYLAND_DISPLAY")}
    child = subprocess.run([sys.executable, "-m", "ppd_core.viewer", "stl", str(tmp_path / "a.stl")], env=env,
                           capture_output=True, text=True, timeout=120)  # Open3D's offscreen run() never returns
    assert child.returncode == 3, child.stderr
    assert child.stderr.strip().splitlines()[-1] in ("Open3D found no display to open a window on",
                                                     "Open3D cannot open a window here")


def test_every_output_the_window_can_show_loads_with_its_triangles_or_points(scene, tmp_path):
    photo, depth = scene
    kinds = ["--stl", "--3mf", "--ply", "--obj", "--glb", "--npz"]
    assert main([str(photo), "--depth", str(depth), *kinds, "--no-solid", "--quiet", "-o", str(tmp_path / "m")]) == 0
    counts = {}
    for flag in kinds:
        kind = flag[2:]
        geometry = load_geometry(kind, str(tmp_path / "m" / f"a.{kind}"))
        assert isinstance(geometry, o3d.geometry.TriangleMesh) and geometry.has_vertex_normals(), kind
        counts[kind] = len(geometry.triangles)
    assert len(set(counts.values())) == 1 and counts["stl"] > 0, counts  # the same scene mesh in every file
    assert load_geometry("glb", str(tmp_path / "m" / "a.glb")).has_textures()
    assert main([str(photo), "--depth", str(depth), "--points", "--ply", "--quiet", "-o", str(tmp_path / "p")]) == 0
    cloud = load_geometry("ply", str(tmp_path / "p" / "a.ply"))
    assert isinstance(cloud, o3d.geometry.PointCloud) and len(cloud.points) > 0


def test_the_first_shape_output_is_shown_and_a_depth_map_alone_is_said_to_have_none():
    assert shown_output({"depth_png": "a_depth.png", "stl": "a.stl", "glb": "a.glb"}) == ("stl", "a.stl")
    outputs = {"depth_exr": "a_depth.exr", "preview": "a_preview.png"}
    assert shown_output(outputs) is None
    assert show_outputs(outputs) == ("nothing to look at among --depth-exr, --preview (a mesh, solid or point "
                                     "cloud output is shown)")
