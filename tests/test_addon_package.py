"""Packaging of the Blender extension: manifest, zip, install, enable, register/unregister."""

from __future__ import annotations

import importlib.util
import tomllib
import zipfile

import pytest

from tests.test_addon_harness import MODULE, REPO, addon, build_zip, bpy, installed_zip

EXPECTED_FILES = {
    "blender_manifest.toml", "__init__.py", "ppd_client.py", "backend_setup.py", "importer.py",
    "interpreters.py", "materials.py", "operators.py", "panel.py", "photo_source.py", "preferences.py",
    "properties.py", "runner.py", "scene_camera.py", "ui_text.py",
}


def test_manifest_fields_and_version_in_step_with_pyproject():
    manifest = tomllib.loads((REPO / "blender_manifest.toml").read_text())
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert manifest["version"] == project["version"]
    assert manifest["name"] == "Depth from Image" and manifest["type"] == "add-on"
    assert manifest["blender_version_min"] == "4.2.0"
    assert manifest["license"] == ["SPDX:" + project["license"]]
    assert set(manifest["permissions"]) == {"files", "network"}


def test_zip_holds_only_the_addon_code_and_the_client(tmp_path):
    zip_path = build_zip(str(tmp_path))  # the build validates the staged folder and the zip
    with zipfile.ZipFile(zip_path) as archive:
        names = set(archive.namelist())
        client = archive.read("ppd_client.py")
    assert names == EXPECTED_FILES
    assert client == (REPO / "ppd_core" / "client.py").read_bytes()
    assert zip_path.stat().st_size < 200_000


def _load_build_script():
    spec = importlib.util.spec_from_file_location("ppd_addon_build", REPO / "addon" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_build_refuses_a_manifest_blender_rejects(tmp_path):
    build = _load_build_script()
    fake_repo = tmp_path / "repo"
    (fake_repo / "addon").mkdir(parents=True)
    (fake_repo / "ppd_core").mkdir()
    (fake_repo / "ppd_core" / "client.py").write_text("")
    (fake_repo / "addon" / "__init__.py").write_text("")
    manifest = (REPO / "blender_manifest.toml").read_text()
    # Blender's validator wants taglines without closing punctuation.
    (fake_repo / "blender_manifest.toml").write_text(manifest.replace('solid"', 'solid."', 1))
    with pytest.raises(build.BuildError, match="tagline"):
        build.build(str(tmp_path / "out"), repo_root=str(fake_repo))
    assert not list((tmp_path / "out").glob("*.zip"))


def test_installed_extension_is_enabled_with_panel_and_operators():
    import addon_utils

    installed_zip()
    addon()
    assert addon_utils.check(MODULE) == (True, True)
    panel = bpy.types.VIEW3D_PT_depth_from_image
    assert (panel.bl_space_type, panel.bl_region_type, panel.bl_category) == ("VIEW_3D", "UI", "Depth")
    assert bpy.ops.depth_from_image.run.idname() == "DEPTH_FROM_IMAGE_OT_run"
    assert bpy.context.scene.depth_from_image.create_camera is True
    preferences = bpy.context.preferences.addons[MODULE].preferences
    assert type(preferences).bl_rna.properties["device"].default == "auto"  # other tests may set it


def _registered_state() -> dict:
    return {
        "types": sorted(name for name in dir(bpy.types) if "depth_from_image" in name.lower()
                        or name.startswith("DEPTH_")),
        "scene_prop": hasattr(bpy.types.Scene, "depth_from_image"),
        "wm_prop": hasattr(bpy.types.WindowManager, "depth_from_image"),
        "load_pre": [h.__module__ for h in bpy.app.handlers.load_pre if h.__module__.startswith(MODULE)],
    }


def test_register_unregister_twice_without_leaks():
    addon()
    enabled = _registered_state()
    assert enabled["scene_prop"] and enabled["wm_prop"] and len(enabled["load_pre"]) == 1
    assert "VIEW3D_PT_depth_from_image" in enabled["types"] and len(enabled["types"]) >= 8
    for _ in range(2):
        bpy.ops.preferences.addon_disable(module=MODULE)
        assert _registered_state() == {"types": [], "scene_prop": False, "wm_prop": False, "load_pre": []}
        bpy.ops.preferences.addon_enable(module=MODULE)
        assert _registered_state() == enabled
