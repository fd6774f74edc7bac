"""Fixtures shared by several test modules."""

from __future__ import annotations

import pytest

try:  # Blender before Open3D, whatever test runs first: both bundle Embree, and bpy fails to load
    import tests.blender_harness  # noqa: F401  (rtcGetSceneTraversable) once Open3D's copy is loaded
except pytest.skip.Exception:  # no bpy (not Python 3.11): the add-on tests skip themselves
    pass


@pytest.fixture(autouse=True, scope="session")
def precision_cache(tmp_path_factory):
    """The bf16 accuracy verdicts go to a folder of this run, not the user's cache (workers inherit it)."""
    patch = pytest.MonkeyPatch()
    patch.setenv("PPD_CACHE_DIR", str(tmp_path_factory.mktemp("ppd_cache")))
    yield
    patch.undo()


@pytest.fixture
def importer():
    """The Blender add-on's importer module, with an empty scene before and after the test."""
    from tests.blender_harness import addon, clear_scene

    module = addon("scene.importer")
    clear_scene()
    yield module
    clear_scene()


@pytest.fixture
def session():
    """The Blender add-on's session module: an empty scene, no run left over, before and after."""
    from tests.blender_harness import addon, bpy, clear_scene, drive

    module = addon("session")
    clear_scene()
    state = bpy.context.window_manager.depth_from_image
    state.last_error = state.last_result = ""
    yield module
    module.SESSION.request_cancel()
    drive(module)
    clear_scene()


@pytest.fixture(scope="session")
def small_weights(tmp_path_factory):
    """`ppd.pth` of the small random network (tests/checkpoints.py), written once per run."""
    from tests.checkpoints import write_small_weights

    return write_small_weights(tmp_path_factory.mktemp("small_weights"))
