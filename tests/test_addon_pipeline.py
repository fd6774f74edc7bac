"""The importer against real pipeline output of every kind, made by the CLI from a photo
and a depth file (no network needed): grid mesh, Poisson mesh, point cloud, print solid; and
the print solid's two ways out in millimetres (Export for Printing, Blender's STL exporter)."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest

from tests.blender_harness import (
    REPO,
    WORKER_PYTHON,
    addon,
    bpy,
    drain_timers,
    prefs,
    projected_pixels,
    render_through_camera,
    worker_env,
    write_photo,
)

WIDTH, HEIGHT = 64, 48
RUNS = {"mesh": [], "poisson": ["--method", "poisson"], "points": ["--points"], "solid": ["--solid"]}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """photo.png, its depth (a box 1.2 m away before a wall at 2 m) and one NPZ per kind."""
    addon()
    folder = tmp_path_factory.mktemp("cli")
    photo = write_photo(folder / "photo.png", WIDTH, HEIGHT, seed=11)
    depth = np.full((HEIGHT, WIDTH), 2.0, np.float32)
    depth[12:36, 16:48] = 1.2
    np.save(folder / "depth.npy", depth)
    made = {"photo": photo, "depth": folder / "depth.npy"}
    for kind, extra in RUNS.items():
        npz = folder / f"{kind}.npz"
        command = [WORKER_PYTHON, "-m", "ppd_core.mesh", str(photo), "--depth", str(folder / "depth.npy"),
                   "--depth-kind", "metric", "--fov", "60", "--npz", "-o", str(npz), "--quiet", *extra]
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=worker_env(), check=False)
        if done.returncode != 0 and "No module named" in done.stderr:
            pytest.skip(f"the CLI cannot run here: {done.stderr.strip().splitlines()[-1]}")
        assert done.returncode == 0, done.stderr
        made[kind] = npz
    return made


def _loop_uvs_and_vertices(mesh):
    loops = np.empty(len(mesh.loops), np.int32)
    mesh.loops.foreach_get("vertex_index", loops)
    uv = np.empty(len(mesh.loops) * 2, np.float32)
    mesh.uv_layers["UVMap"].data.foreach_get("uv", uv)
    return loops, uv.reshape(-1, 2)


def _assert_vertices_on_their_uv_pixels(scene, result, picks=40):
    obj = result.objects[0]
    loops, uv = _loop_uvs_and_vertices(obj.data)
    assert 0.0 <= uv.min() and uv.max() <= 1.0
    chosen = np.linspace(0, len(loops) - 1, picks).astype(int)
    want = np.stack([uv[chosen, 0] * WIDTH, (1.0 - uv[chosen, 1]) * HEIGHT], 1)
    got = projected_pixels(scene, result.camera, obj, loops[chosen])
    assert np.abs(got - want).max() < 0.5


@pytest.mark.parametrize("shading, shader", [("EMISSION", "EMISSION"), ("PRINCIPLED", "BSDF_PRINCIPLED")])
def test_grid_mesh_from_the_cli(importer, outputs, shading, shader):
    scene = bpy.context.scene
    result = importer.import_result(scene, str(outputs["mesh"]), name="photo", shading=shading)
    with np.load(outputs["mesh"]) as data:
        vertices, faces = len(data["vertices"]), len(data["faces"])
    mesh = result.objects[0].data
    assert (len(mesh.vertices), len(mesh.polygons)) == (vertices, faces)
    nodes = mesh.materials[0].node_tree.nodes
    texture = next(node for node in nodes if node.type == "TEX_IMAGE")
    assert bpy.path.abspath(texture.image.filepath) == str(outputs["photo"])
    assert any(node.type == shader for node in nodes)
    assert (scene.render.resolution_x, scene.render.resolution_y) == (WIDTH, HEIGHT)
    _assert_vertices_on_their_uv_pixels(scene, result)


def test_grid_mesh_renders_as_the_photo(importer, outputs, tmp_path):
    scene = bpy.context.scene
    result = importer.import_result(scene, str(outputs["mesh"]), name="photo")
    texture = next(n for n in result.objects[0].data.materials[0].node_tree.nodes if n.type == "TEX_IMAGE")
    texture.interpolation = "Closest"
    rendered = render_through_camera(scene, tmp_path / "render.png")
    photo = bpy.data.images.load(str(outputs["photo"]), check_existing=True)
    want = np.empty(WIDTH * HEIGHT * 4, np.float32)
    photo.pixels.foreach_get(want)
    want = want.reshape(HEIGHT, WIDTH, 4)[::-1, :, :3]
    close = np.abs(rendered - want).max(-1) < 3 / 255
    # The mesher cuts the surface at the box's depth edges: pixels within 2 px of an edge
    # may show the background. Every other pixel shows exactly its own photo pixel.
    depth = np.load(outputs["depth"])
    near_edge = np.zeros_like(close)
    for dy in range(-2, 3):
        for dx in range(-2, 3):
            near_edge |= np.roll(depth, (dy, dx), (0, 1)) != depth
    inner = np.zeros_like(close)
    inner[1:-1, 1:-1] = True
    assert close[inner & ~near_edge].all() and (inner & ~near_edge).mean() > 0.75


def test_poisson_mesh_from_the_cli(importer, outputs):
    scene = bpy.context.scene
    result = importer.import_result(scene, str(outputs["poisson"]), name="photo")
    with np.load(outputs["poisson"]) as data:
        assert len(result.objects[0].data.vertices) == len(data["vertices"])
    assert result.objects[0].data.materials[0].node_tree.nodes.get("Image Texture") is not None
    _assert_vertices_on_their_uv_pixels(scene, result)


def test_point_cloud_from_the_cli(importer, outputs):
    scene = bpy.context.scene
    result = importer.import_result(scene, str(outputs["points"]), name="photo")
    with np.load(outputs["points"]) as data:
        colors = data["colors"]
    obj = result.objects[0]
    assert obj.name == "photo points" and len(obj.data.vertices) == len(colors) and not obj.data.polygons
    got = np.empty(len(colors) * 4, np.float32)
    obj.data.color_attributes["Col"].data.foreach_get("color_srgb", got)
    np.testing.assert_allclose(got.reshape(-1, 4)[:, :3] * 255, colors, atol=0.6)
    depsgraph = bpy.context.evaluated_depsgraph_get()
    clouds = [i.object.data for i in depsgraph.object_instances
              if i.object.original == obj and i.object.type == "POINTCLOUD"]
    assert len(clouds) == 1 and len(clouds[0].points) == len(colors) and "Col" in clouds[0].attributes
    assert scene.unit_settings.scale_length == pytest.approx(1.0)


def test_print_solid_from_the_cli(importer, outputs):
    scene = bpy.context.scene
    result = importer.import_result(scene, str(outputs["solid"]), name="photo")
    obj = result.objects[0]
    assert obj.name == "photo solid" and result.camera is None and tuple(obj.scale) == pytest.approx((0.001,) * 3)
    xs = np.empty(len(obj.data.vertices) * 3, np.float32)
    obj.data.vertices.foreach_get("co", xs)
    assert np.ptp(xs.reshape(-1, 3)[:, 0]) == pytest.approx(100.0, abs=0.05)  # the CLI's default width
    assert scene.unit_settings.scale_length == pytest.approx(1.0)  # the scene's units are left alone
    assert any(node.type == "ATTRIBUTE" and node.attribute_name == "Col"
               for node in obj.data.materials[0].node_tree.nodes)


def slicer_size(path, tmp_path) -> list:
    """The size (mm) a slicer reads from an STL or 3MF: PrusaSlicer's --info where installed,
    else the file's own triangles (binary STL) or vertices (3MF) read back here."""
    prusa = shutil.which("prusa-slicer")
    if prusa:
        done = subprocess.run([prusa, "--info", str(path)], capture_output=True, text=True, timeout=120,
                              env={**__import__("os").environ, "HOME": str(tmp_path)}, check=True)
        info = dict(re.findall(r"^(\w+)\s*=\s*(.+?)\s*$", done.stdout, re.M))
        return [float(info[f"size_{axis}"]) for axis in "xyz"]
    import trimesh

    return list(trimesh.load(path, force="mesh").extents)


@pytest.fixture
def backend_python(monkeypatch):
    """Export for Printing writes with the backend: this checkout's, in WORKER_PYTHON."""
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    p = prefs()
    saved, p.python = p.python, WORKER_PYTHON
    yield
    prefs().python = saved


def test_export_for_printing_writes_millimetres_a_slicer_reads_in_a_metre_scene(importer, outputs, tmp_path,
                                                                                backend_python):
    scene = bpy.context.scene
    assert scene.unit_settings.scale_length == pytest.approx(1.0)
    # Imported as the add-on does: the solid becomes the selection and the active object.
    solid = importer.import_result(scene, str(outputs["solid"]), name="photo",
                                   view_layer=bpy.context.view_layer).objects[0]
    assert tuple(solid.scale) == pytest.approx((0.001,) * 3)  # 0.1 units wide in this metre scene
    state = addon("state")
    for kind in ("STL", "3MF"):
        target = tmp_path / f"photo.{kind.lower()}"
        assert bpy.ops.depth_from_image.export_print(filepath=str(target), file_format=kind) == {"FINISHED"}
        drain_timers(120)
        assert state.NOTES["export_ok"], state.NOTES["export"]
        assert state.NOTES["export"].startswith(f"photo.{kind.lower()}: 100.00 x ")
        assert "watertight yes" in state.NOTES["export"]
        assert slicer_size(target, tmp_path)[0] == pytest.approx(100.0, abs=0.01)
    # Blender's own STL exporter with its defaults writes Blender units: 0.1 here (docs/blender.md says so).
    bpy.ops.wm.stl_export(filepath=str(tmp_path / "blender.stl"), export_selected_objects=True)
    assert slicer_size(tmp_path / "blender.stl", tmp_path)[0] == pytest.approx(0.1, abs=1e-4)


def test_blenders_stl_exporter_writes_millimetres_in_a_millimetre_scene_as_documented(importer, outputs, tmp_path):
    """docs/blender.md: make the scene a millimetre one (Unit Scale 0.001, Length Millimeters)
    before importing; the solid then comes in at scale 1, and Blender's STL exporter with its
    defaults (and the 3D-Print Toolbox) read millimetres."""
    scene = bpy.context.scene
    units = scene.unit_settings
    saved = (units.system, units.scale_length, units.length_unit)
    units.system, units.scale_length, units.length_unit = "METRIC", 0.001, "MILLIMETERS"
    try:
        solid = importer.import_result(scene, str(outputs["solid"]), name="photo",
                                       view_layer=bpy.context.view_layer).objects[0]
        assert tuple(solid.scale) == pytest.approx((1.0,) * 3)
        assert solid.dimensions.x == pytest.approx(100.0, abs=0.01)  # what Blender shows: 100 mm
        bpy.ops.wm.stl_export(filepath=str(tmp_path / "blender.stl"), export_selected_objects=True)
        assert slicer_size(tmp_path / "blender.stl", tmp_path)[0] == pytest.approx(100.0, abs=0.01)
    finally:
        units.system, units.scale_length, units.length_unit = saved
