"""The Print Solid panel's relief options reach the worker as the command's options, and a colour
relief comes into Blender with one material per filament, each face the material of its filament."""

from __future__ import annotations

import numpy as np
import pytest

from tests.blender_harness import DrawSelf, addon, bpy, prefs

SHAPE = {"frame_mm": 4.0, "frame_matches_relief": False, "frame_height_mm": 3.0, "corner_mm": 5.0,
         "hanger": "keyhole", "curved": True, "curve_radius_mm": 120.0, "smooth_mm": 0.5, "silhouette": True,
         "use_budget": True, "max_mb": 8.0, "colour_relief": True, "filament_count": 5,
         "base_mm": 5.0}


@pytest.fixture
def solid_settings():
    addon()
    settings = bpy.context.scene.depth_from_image
    names = ["output", "filament_colours", *SHAPE]
    saved = {name: getattr(settings, name) for name in names}
    settings.output = "SOLID"
    yield settings
    for name, value in saved.items():
        setattr(settings, name, value)


def test_every_relief_option_of_the_panel_is_the_commands_option(solid_settings):
    options_module = pytest.importorskip("ppd_core.options")
    properties = addon("properties")
    for name, value in SHAPE.items():
        setattr(solid_settings, name, value)
    options = properties.job_options(solid_settings, prefs())
    assert {key: options[key] for key in ("frame_mm", "frame_height_mm", "corner_mm", "hanger", "curve_radius_mm",
                                          "smooth_mm", "silhouette", "max_mb", "filaments")} == pytest.approx(
        {"frame_mm": 4.0, "frame_height_mm": 3.0, "corner_mm": 5.0, "hanger": "keyhole", "curve_radius_mm": 120.0,
         "smooth_mm": 0.5, "silhouette": True, "max_mb": 8.0, "filaments": "5"})
    options["resolution"] = 256 * 192
    options_module.JobOptions(**options).validate()
    solid_settings.filament_colours = " white, black ,#2060C0"
    assert properties.job_options(solid_settings, prefs())["filaments"] == "white,black,#2060C0"
    options_module.JobOptions(**{**options, "filaments": "white,black,#2060C0"}).validate()


def test_unticked_options_are_not_sent_and_a_mesh_gets_none(solid_settings):
    properties = addon("properties")
    for name in ("curved", "use_budget", "colour_relief", "frame_matches_relief"):
        setattr(solid_settings, name, name == "frame_matches_relief")
    options = properties.job_options(solid_settings, prefs())
    assert not {"curve_radius_mm", "max_mb", "filaments", "frame_height_mm"} & set(options)
    solid_settings.output = "MESH"
    assert "frame_mm" not in properties.job_options(solid_settings, prefs())


def test_the_panel_shows_the_relief_options_for_a_print_solid_only(solid_settings):
    panel = addon("panel").VIEW3D_PT_depth_from_image
    for name, value in SHAPE.items():
        setattr(solid_settings, name, value)

    def shown():
        drawer = DrawSelf(None)
        panel.draw(drawer, bpy.context)
        return {entry[1] for entry in drawer.layout.log if entry[0] == "prop"}

    relief = {"frame_mm", "frame_height_mm", "corner_mm", "hanger", "curve_radius_mm", "smooth_mm", "silhouette",
              "max_mb", "filament_count", "filament_colours"}
    assert relief <= shown()
    solid_settings.output = "MESH"
    assert not relief & shown()


def test_a_colour_relief_comes_in_with_its_filament_colours(importer, tmp_path):
    from mesh.relief_print import ReliefSpec, relief_print
    from ppd_core.files.result_file import result_bytes
    from ppd_core.geometry.camera import Intrinsics, camera_record

    depth = np.full((24, 32), 2.0, np.float32)
    depth[6:18, 8:24] = 1.0
    rgb = np.zeros((24, 32, 3), np.uint8)
    rgb[:, :16], rgb[:, 16:] = (230, 230, 225), (200, 30, 35)
    solid = relief_print(depth, rgb, ReliefSpec(width_mm=32.0, filaments="white,red,blue"))
    camera = camera_record(Intrinsics(30.0, 30.0, 16.0, 12.0, 32, 24))
    path = tmp_path / "relief.npz"
    path.write_bytes(result_bytes(solid, "solid", camera, ""))
    obj = importer.import_result(bpy.context.scene, str(path), name="relief").objects[0]
    names = [material.name for material in obj.data.materials]
    assert names == ["relief filament 1 white", "relief filament 2 red", "relief filament 3 blue"]
    materials = addon("scene.materials")
    for material, colour in zip(obj.data.materials, solid.paint.colors):
        assert tuple(material.diffuse_color)[:3] == pytest.approx(materials.srgb_to_linear(colour), abs=1e-6)
    index = np.empty(len(obj.data.polygons), np.int32)
    obj.data.polygons.foreach_get("material_index", index)
    np.testing.assert_array_equal(index, np.maximum(solid.paint.faces, 0))
    assert set(np.unique(index)) == {0, 1}  # nothing blue in the photo: its slot stays, unused


@pytest.fixture
def backend_python(monkeypatch):
    """Export for Printing writes with the backend: this checkout's, in WORKER_PYTHON."""
    from tests.blender_harness import REPO, WORKER_PYTHON

    monkeypatch.setenv("PYTHONPATH", str(REPO))
    saved, prefs().python = prefs().python, WORKER_PYTHON
    yield
    prefs().python = saved


def test_export_for_printing_keeps_a_colour_reliefs_filaments_in_its_3mf(importer, tmp_path, backend_python):
    from mesh.painted_3mf import read_painted_threemf
    from mesh.relief_print import ReliefSpec, relief_print
    from ppd_core.files.result_file import result_bytes
    from ppd_core.geometry.camera import Intrinsics, camera_record
    from tests.blender_harness import drain_timers

    depth = np.full((24, 32), 2.0, np.float32)
    depth[6:18, 8:24] = 1.0
    rgb = np.zeros((24, 32, 3), np.uint8)
    rgb[:12], rgb[12:, :16], rgb[12:, 16:] = (230, 230, 225), (200, 30, 35), (30, 60, 200)
    solid = relief_print(depth, rgb, ReliefSpec(width_mm=32.0, filaments="3"))
    path = tmp_path / "relief.npz"
    path.write_bytes(result_bytes(solid, "solid", camera_record(Intrinsics(30.0, 30.0, 16.0, 12.0, 32, 24)), ""))
    importer.import_result(bpy.context.scene, str(path), name="relief", view_layer=bpy.context.view_layer)
    state = addon("state")
    target = tmp_path / "relief.3mf"
    assert bpy.ops.depth_from_image.export_print(filepath=str(target), file_format="3MF") == {"FINISHED"}
    drain_timers(120)
    assert state.NOTES["export_ok"], state.NOTES["export"]
    vertices, faces, filaments = read_painted_threemf(target.read_bytes())
    np.testing.assert_allclose(vertices, solid.vertices, atol=1e-4)  # millimetres, as written
    # Every face keeps its filament; sides and base now name the first one outright.
    np.testing.assert_array_equal(filaments, np.maximum(solid.paint.faces, 0) + 1)
