"""True size from a metric reference: `--align-to` gives PPD's relative depth its scale.

A rendered scene's exact depth becomes a PPD-like p (a log-affine map); a quarter-resolution
"LiDAR" of the same scene carries 3 % noise, 10 % gross outliers (x0.3..x3) and holes. The
command must rebuild the scene at its true size.
"""

import numpy as np
import pytest
from PIL import Image

from benchmarks.alignment import corrupt, far_background_scene, relative_depth
from benchmarks.scenes import make_scene
from ppd_core.geometry.camera import project
from ppd_core.mesh import main

WIDTH, HEIGHT, FOV = 160, 120, 55.0
SCENES = {"boxes": lambda: make_scene("boxes"), "wall_floor": lambda: make_scene("wall_floor"),
          "far_background": far_background_scene}


@pytest.mark.parametrize("name", list(SCENES))
def test_align_to_a_noisy_quarter_resolution_reference_gives_the_true_size(name, tmp_path, capsys):
    rendering = SCENES[name]().render(WIDTH, HEIGHT, hfov_deg=FOV)
    truth = rendering.depth.astype(np.float64)
    Image.fromarray(rendering.rgb).save(tmp_path / "scene.png")
    np.save(tmp_path / "p.npy", relative_depth(truth))
    small = truth.reshape(HEIGHT // 4, 4, WIDTH // 4, 4).mean(axis=(1, 3))
    np.save(tmp_path / "lidar.npy", corrupt(small, np.random.default_rng(7)))
    code = main([str(tmp_path / "scene.png"), "--depth", str(tmp_path / "p.npy"), "--depth-kind", "normalized",
                 "--align-to", str(tmp_path / "lidar.npy"), "--fov", str(FOV), "--npz", "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert "depth scale: fit to" in capsys.readouterr().out
    with np.load(tmp_path / "scene.npz") as data:
        vertices = data["vertices"].astype(np.float64)
    pixels = np.floor(project(vertices, rendering.intrinsics)).astype(int)
    true_z = truth[pixels[:, 1], pixels[:, 0]]
    ratio = vertices[:, 2] / true_z
    assert abs(np.median(ratio) - 1.0) < 0.01  # scale error under 1 %
    assert np.mean(np.abs(ratio - 1.0) < 0.01) >= 0.95  # 95 % of the surface within 1 % of its true distance
    assert len(vertices) > 0.8 * WIDTH * HEIGHT


def test_align_to_needs_relative_depth(tmp_path, capsys):
    Image.fromarray(np.zeros((12, 16, 3), np.uint8)).save(tmp_path / "scene.png")
    np.save(tmp_path / "d.npy", np.ones((12, 16), np.float32))
    code = main([str(tmp_path / "scene.png"), "--depth", str(tmp_path / "d.npy"), "--align-to",
                 str(tmp_path / "d.npy"), "--npz"])
    assert code == 2 and "--align-to scales relative depth" in capsys.readouterr().err
