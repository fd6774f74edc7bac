"""--preview: a small PNG per photo next to its outputs, the result seen from an oblique angle
(the shaded depth for depth maps, or when that fails); from a depth file and from the small model."""

import logging

import numpy as np
import pytest
from PIL import Image

from ppd_core.files import preview
from ppd_core.mesh import main
from ppd_core.options import JobOptions
from ppd_core.pipeline import run_photo

H, W = 48, 64
PREVIEW = (512, 384)  # a 64x48 photo's preview: 512 px on its longest side


@pytest.fixture
def scene(tmp_path):
    """A photo (colour gradients) and a metric depth map with a box in front of a tilted wall."""
    y, x = np.mgrid[0:H, 0:W]
    photo = tmp_path / "photo.png"
    Image.fromarray(np.stack([x * 4, y * 5, 255 - x * 2], -1).astype(np.uint8)).save(photo)
    depth = (2.0 + 0.01 * x).astype(np.float32)
    depth[12:36, 16:44] = 1.0
    np.save(tmp_path / "depth.npy", depth)
    return photo, tmp_path / "depth.npy"


def assert_a_picture(path, size=PREVIEW):
    """The preview exists, has `size` and is not blank (more than one colour)."""
    image = Image.open(path)
    assert image.size == size and image.mode == "RGB"
    assert len(np.unique(np.asarray(image).reshape(-1, 3), axis=0)) > 1


@pytest.mark.parametrize("outputs", [["--npz"], ["--ply", "--points"], ["--stl"]], ids=["mesh", "points", "solid"])
def test_preview_of_a_depth_file_sits_next_to_the_photo(scene, capsys, outputs):
    photo, depth = scene
    assert main([str(photo), "--depth", str(depth), "--preview", *outputs, "--quiet"]) == 0
    assert_a_picture(photo.with_name("photo_preview.png"))
    assert "photo_preview.png: preview 512x384 px (oblique view)" in capsys.readouterr().out


def test_preview_with_the_small_model(scene, tmp_path, capsys):
    from tests.checkpoints import write_small_weights

    photo, _ = scene
    weights = write_small_weights(tmp_path / "weights")
    # A random network's depth is noise, so a solid (a scene mesh would be all cut).
    code = main([str(photo), "--weights", str(weights), "--preview", "--solid", "--resolution", str(W * H),
                 "--steps", "2", "--preset", "tabletop", "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert_a_picture(photo.with_name("photo_preview.png"))


def test_preview_shows_the_other_outputs_geometry():
    options = JobOptions()
    assert options.geometry_for("preview") == "mesh"
    assert options.geometry_for("preview", ["preview", "stl", "npz"]) == "solid"
    assert options.geometry_for("preview", ["npz", "stl"]) == "mesh"
    assert options.geometry_for("preview", ["depth_png"]) == "depth"
    assert options.geometry_for("preview", ["depth_png", "stl"]) == "solid"
    assert JobOptions(points=True).geometry_for("preview", ["ply"]) == "points"


def test_when_the_view_fails_the_preview_is_the_shaded_depth_and_it_is_said_once(scene, tmp_path, monkeypatch,
                                                                                  caplog):
    photo, depth = scene

    def broken(shape, size):
        raise RuntimeError("no Embree here")

    monkeypatch.setattr(preview, "render_oblique", broken)
    monkeypatch.setattr(preview, "_renderer_problem", None)
    options = JobOptions(depth_file=str(depth))
    with caplog.at_level(logging.WARNING, logger="ppd_core.files.preview"):
        for name in ("first", "second"):
            stats = run_photo(photo, {"preview": tmp_path / f"{name}.png", "stl": tmp_path / f"{name}.stl"}, options)
            assert stats["details"]["preview"] == {"size_px": list(PREVIEW), "renderer": "shaded depth"}
            assert_a_picture(tmp_path / f"{name}.png")
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1 and "RuntimeError: no Embree here" in warnings[0] and "shaded depth" in warnings[0]


def test_the_shaded_depth_has_the_photos_colours_dark_edges_and_no_depth_as_background():
    from ppd_core.geometry.camera import camera_record, intrinsics_from_fov

    camera = camera_record(intrinsics_from_fov(W, H, 60.0))
    depth = np.full((H, W), 2.0, np.float32)
    depth[:, 40:] = 1.0
    depth[:, :8] = np.nan
    rgb = np.full((H, W, 3), (200, 100, 50), np.uint8)
    picture = preview.shaded_depth(depth, rgb, camera, (W, H)).astype(int)
    assert (picture[:, :8] == preview.BACKGROUND).all()
    flat = picture[H // 2, 20]
    assert flat[0] > flat[1] > flat[2] > 0  # the photo's colour, shaded
    assert picture[H // 2, 39:41].sum(axis=1).min() < 0.8 * flat.sum()  # the depth step is a dark line
