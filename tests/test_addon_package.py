"""Packaging of the Blender extension: manifest, zip, install, enable, register/unregister."""

from __future__ import annotations

import importlib.util
import shutil
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.blender_harness import MODULE, REPO, addon, build_zip, bpy, installed_zip

WHEEL = "wheels/depth_from_image-{version}-py3-none-any.whl"


def test_manifest_fields_and_version_in_step_with_the_package():
    import ppd_core

    manifest = tomllib.loads((REPO / "blender_manifest.toml").read_text())
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert manifest["version"] == ppd_core.__version__ and project["dynamic"] == ["version"]
    assert manifest["name"] == "Depth from Image" and manifest["type"] == "add-on"
    assert manifest["blender_version_min"] == "4.2.0"
    assert manifest["license"] == ["SPDX:" + project["license"]]
    assert set(manifest["permissions"]) == {"files", "network"}


def test_zip_holds_the_addon_code_and_a_wheel_of_this_checkout(tmp_path):
    import ppd_core

    zip_path = build_zip(str(tmp_path))  # the build validates the staged folder and the zip
    wheel_name = WHEEL.format(version=ppd_core.__version__)
    with zipfile.ZipFile(zip_path) as archive:
        names = set(archive.namelist())
        manifest = tomllib.loads(archive.read("blender_manifest.toml").decode())
        with zipfile.ZipFile(archive.open(wheel_name)) as wheel:
            client = wheel.read("ppd_core/client.py")
            packaged = set(wheel.namelist())
    addon_files = {path.name for path in (REPO / "addon").glob("*.py")} - {"build.py"}
    assert names == {"blender_manifest.toml", wheel_name, *addon_files}
    assert manifest["wheels"] == ["./" + wheel_name]
    assert client == (REPO / "ppd_core" / "client.py").read_bytes()
    assert {"ppd_core/options.py", "ppd_core/files/result_file.py", "mesh/limits.py"} <= packaged
    assert zip_path.stat().st_size < 400_000


def test_blender_unpacks_the_wheel_so_the_addon_imports_its_client_there():
    """The add-on's `import ppd_core.client` must work in Blender, where only the wheel has it:
    a plain Python given just Blender's extension site-packages imports the client from there."""
    import subprocess
    import sys

    installed_zip()
    site = Path(bpy.utils.user_resource("EXTENSIONS")) / ".local" / "lib"
    found = sorted(site.glob("python3.*/site-packages/ppd_core/client.py"))
    assert found, f"no ppd_core in {site}"
    script = (f"import sys; sys.path.insert(0, {str(found[0].parents[1])!r}); "
              "import ppd_core.client as client, ppd_core.options; print(client.__file__)")
    done = subprocess.run([sys.executable, "-I", "-S", "-c", script], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(found[0])


def _load_build_script():
    spec = importlib.util.spec_from_file_location("ppd_addon_build", REPO / "addon" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_build_refuses_a_manifest_blender_rejects(tmp_path):
    build = _load_build_script()
    fake_repo = tmp_path / "repo"
    for name in ("addon", "ppd_core", "mesh"):
        shutil.copytree(REPO / name, fake_repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", fake_repo / "pyproject.toml")
    shutil.copy(REPO / "README.md", fake_repo / "README.md")
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
