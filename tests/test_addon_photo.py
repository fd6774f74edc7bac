"""Where the worker's photo comes from: files (Blender-relative too) and loaded images of
every kind (on disk, packed, generated, painted and unsaved, sequences)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tests.blender_harness import addon, bpy, clear_scene, write_photo


@pytest.fixture
def photos():
    module = addon("scene.photo_source")
    clear_scene()
    settings = bpy.context.scene.depth_from_image
    yield module, settings
    settings = bpy.context.scene.depth_from_image  # a test may have loaded another file
    settings.photo_source, settings.photo_path, settings.photo_image = "FILE", "", None
    clear_scene()


def _png_pixels(path) -> np.ndarray:
    image = bpy.data.images.load(str(path))
    pixels = np.empty(image.size[0] * image.size[1] * 4, np.float32)
    image.pixels.foreach_get(pixels)
    bpy.data.images.remove(image)
    return pixels


def test_blender_relative_photo_path_is_made_absolute(photos, tmp_path):
    module, settings = photos
    (tmp_path / "shots").mkdir()
    photo = write_photo(tmp_path / "shots" / "porch.png", 8, 6)
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "scene.blend"))
    settings.photo_source, settings.photo_path = "FILE", "//shots/porch.png"
    found = module.resolve_photo(settings, str(tmp_path))
    assert found.path == str(photo) and os.path.isabs(found.path) and found.name == "porch"


def test_generated_image_is_written_from_its_pixels_and_left_unchanged(photos, tmp_path):
    module, settings = photos
    image = bpy.data.images.new("Sky Gradient", 12, 10)
    image.generated_type = "COLOR_GRID"
    images_before = len(bpy.data.images)
    settings.photo_source, settings.photo_image = "IMAGE", image

    found = module.resolve_photo(settings, str(tmp_path))

    assert Path(found.path).parent == tmp_path and found.path.endswith(".png") and found.image() == image
    want = np.empty(12 * 10 * 4, np.float32)
    image.pixels.foreach_get(want)
    np.testing.assert_allclose(_png_pixels(found.path), want, atol=0.5 / 255)
    assert (image.source, image.filepath, image.is_dirty) == ("GENERATED", "", False)
    assert len(bpy.data.images) == images_before


def test_painted_unsaved_image_sends_its_current_pixels(photos, tmp_path):
    module, settings = photos
    on_disk = write_photo(tmp_path / "wall.png", 8, 6, seed=1)
    image = bpy.data.images.load(str(on_disk))
    painted = np.full(8 * 6 * 4, 0.5, np.float32)
    painted[3::4] = 1.0
    image.pixels.foreach_set(painted)
    assert image.is_dirty
    settings.photo_source, settings.photo_image = "IMAGE", image
    run_folder = tmp_path / "run"
    run_folder.mkdir()
    found = module.resolve_photo(settings, str(run_folder))
    assert Path(found.path).parent == run_folder
    np.testing.assert_allclose(_png_pixels(found.path), painted, atol=1 / 255)
    assert image.filepath == str(on_disk) and image.is_dirty  # still the user's unsaved image


def test_saved_image_uses_its_file_and_missing_or_tiled_images_say_why(photos, tmp_path):
    module, settings = photos
    on_disk = write_photo(tmp_path / "porch.png", 8, 6)
    image = bpy.data.images.load(str(on_disk))
    settings.photo_source, settings.photo_image = "IMAGE", image
    assert module.resolve_photo(settings, str(tmp_path)).path == str(on_disk)
    image.source = "SEQUENCE"  # a clip: its folder's images are the frames (tests/test_addon_clip.py)
    found = module.resolve_photo(settings, str(tmp_path))
    assert found.clip and found.path == str(tmp_path)
    image.source = "TILED"
    with pytest.raises(module.PhotoError, match="Image 'porch.png' is a tiled image: choose a single photo"):
        module.resolve_photo(settings, str(tmp_path))
    missing = bpy.data.images.new("lost", 4, 4)
    missing.source, missing.filepath = "FILE", str(tmp_path / "gone.jpg")
    settings.photo_image = missing
    with pytest.raises(module.PhotoError, match=r"Image 'lost' has no file on disk \(.*gone.jpg\)"):
        module.resolve_photo(settings, str(tmp_path))


def test_relative_path_in_an_unsaved_file_says_to_save(photos, tmp_path):
    module, settings = photos
    if bpy.data.is_saved:
        bpy.ops.wm.read_homefile(use_empty=True)
    settings = bpy.context.scene.depth_from_image
    settings.photo_source, settings.photo_path = "FILE", "//porch.jpg"
    with pytest.raises(module.PhotoError, match="//porch.jpg is relative to the .blend file, which is not saved yet"):
        module.resolve_photo(settings, str(tmp_path))


def test_an_exr_image_is_sent_as_a_png_the_worker_can_read(photos, tmp_path):
    module, settings = photos
    maker = bpy.data.images.new("maker", 8, 6, float_buffer=True)
    linear = np.full(8 * 6 * 4, 0.2, np.float32)
    linear[3::4] = 1.0
    maker.pixels.foreach_set(linear)
    maker.filepath_raw, maker.file_format = str(tmp_path / "plate.exr"), "OPEN_EXR"
    maker.save()
    bpy.data.images.remove(maker)
    image = bpy.data.images.load(str(tmp_path / "plate.exr"))
    settings.photo_source, settings.photo_image = "IMAGE", image
    run_folder = tmp_path / "run"
    run_folder.mkdir()
    found = module.resolve_photo(settings, str(run_folder))
    assert found.path == str(run_folder / "plate.png")
    # A float image's pixels are scene-linear (how Blender wrote the EXR differs between
    # versions); the PNG holds their sRGB display values, as a photo does: 0.2 -> 0.484.
    linear = np.empty(8 * 6 * 4, np.float32)
    image.pixels.foreach_get(linear)
    assert image.is_float and 0.1 < linear[0] < 0.6
    want = module.srgb_from_linear(linear.reshape(-1, 4)[:, :3])
    np.testing.assert_allclose(_png_pixels(found.path).reshape(-1, 4)[:, :3], want, atol=1 / 255)
    assert module.srgb_from_linear(np.float32(0.2)) == pytest.approx(0.4845, abs=1e-3)
