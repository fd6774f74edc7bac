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
BLENDER_WHEEL = "wheels/depth_from_image_blender-{version}-py3-none-any.whl"


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
    blender_wheel = BLENDER_WHEEL.format(version=ppd_core.__version__)
    with zipfile.ZipFile(zip_path) as archive:
        names = set(archive.namelist())
        manifest = tomllib.loads(archive.read("blender_manifest.toml").decode())
        with zipfile.ZipFile(archive.open(wheel_name)) as wheel:
            client = wheel.read("ppd_core/client.py")
            packaged = set(wheel.namelist())
        with zipfile.ZipFile(archive.open(blender_wheel)) as wheel:
            for_blender = {name: wheel.read(name) for name in wheel.namelist()}
    addon_files = {path.relative_to(REPO / "addon").as_posix() for path in (REPO / "addon").rglob("*.py")
                   if "__pycache__" not in path.parts} - {"build.py"}
    assert {"backend/tasks.py", "scene/importer.py"} <= addon_files
    assert names == {"blender_manifest.toml", wheel_name, blender_wheel, *addon_files}
    assert manifest["wheels"] == ["./" + blender_wheel]  # Blender unpacks only this one
    assert client == (REPO / "ppd_core" / "client.py").read_bytes()
    assert {"ppd_core/options.py", "ppd_core/files/result_file.py", "mesh/limits.py"} <= packaged  # the backend's
    # Blender's wheel: no top-level name but ppd_core (and its dist-info); mesh rides inside it.
    assert {name.split("/")[0] for name in for_blender} == {"ppd_core", f"depth_from_image_blender-"
                                                           f"{ppd_core.__version__}.dist-info"}
    assert {"ppd_core/_mesh/limits.py", "ppd_core/_mesh/data.py", "ppd_core/client.py"} <= set(for_blender)
    assert "ppd_core/pipeline.py" not in for_blender and "ppd_core/model/weights.py" not in for_blender
    assert b"from ppd_core._mesh.limits import" in for_blender["ppd_core/options.py"]
    assert for_blender["ppd_core/client.py"] == client
    assert zip_path.stat().st_size < 500_000


def test_blender_unpacks_its_wheel_and_the_addons_modules_import_from_it_beside_another_mesh(tmp_path):
    """The add-on's imports must work in Blender, where only the wheel has them, and must not
    meet another extension's top-level `mesh` in the shared site-packages: a plain Python given
    Blender's extension site-packages after a decoy `mesh` (which fails on import) imports every
    listed module from the wheel, numpy from elsewhere, and never touches the decoy."""
    import subprocess
    import sys

    import numpy

    installed_zip()
    build = _load_build_script()
    site = Path(bpy.utils.user_resource("EXTENSIONS")) / ".local" / "lib"
    found = sorted(site.glob("python3.*/site-packages/ppd_core/client.py"))
    assert found, f"no ppd_core in {site}"
    packages = found[0].parents[1]
    assert not (packages / "mesh").exists()
    decoy = tmp_path / "decoy" / "mesh"
    decoy.mkdir(parents=True)
    (decoy / "__init__.py").write_text("raise ImportError('another extension owns this mesh')\n")
    # numpy's site-packages last: -S skips its .pth files, so this checkout's editable install is not seen.
    script = (f"import sys; sys.path[:0] = [{str(decoy.parent)!r}, {str(packages)!r}]; "
              f"sys.path.append({str(Path(numpy.__file__).parents[1])!r}); import importlib; "
              f"modules = [importlib.import_module(name) for name in {build.BLENDER_MODULES!r}]; "
              "assert 'mesh' not in sys.modules, 'the decoy mesh was imported'; "
              "print('\\n'.join(module.__file__ for module in modules))")
    done = subprocess.run([sys.executable, "-I", "-S", "-c", script], capture_output=True, text=True, check=False,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    files = done.stdout.split()
    assert len(files) == len(build.BLENDER_MODULES) and all(file.startswith(str(packages)) for file in files)


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
