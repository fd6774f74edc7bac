"""What the summary says about scale, camera and the outputs: never a scale, camera or size the
result does not have; each source named, a fit with its quality, a guess or a poor fit warned
of; a saved result only for its own photo."""

import json

import numpy as np
import pytest
from PIL import Image

from ppd_core.mesh import main

H, W = 48, 64


@pytest.fixture
def photo(tmp_path):
    rgb = np.random.default_rng(3).integers(0, 255, (H, W, 3), dtype=np.uint8)
    path = tmp_path / "photo.png"
    Image.fromarray(rgb).save(path)
    return path


def relative(depth: np.ndarray) -> np.ndarray:
    """PPD's p of a metric depth map: log(1 + depth) normalised to its 2nd..98th percentiles."""
    log_depth = np.log1p(depth)
    low, high = np.percentile(log_depth, [2, 98])
    return ((log_depth - low) / (high - low)).astype(np.float32)


def scene_depth() -> np.ndarray:
    depth = np.full((H, W), 3.0, np.float32)
    depth[10:35, 15:45] = 1.5
    depth += np.linspace(0, 0.5, W, dtype=np.float32)[None]
    return depth


def summary(capsys, *argv) -> tuple[int, str]:
    code = main([*map(str, argv), "--quiet"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return code, captured.out


def test_a_metric_depth_file_is_its_own_scale_and_the_default_camera_a_guess(photo, tmp_path, capsys):
    np.save(tmp_path / "d.npy", scene_depth())
    _, out = summary(capsys, photo, "--depth", tmp_path / "d.npy", "--glb")
    assert "depth scale: depth file (metres); camera: default 60 degrees (a guess)" in out
    assert "warning" not in out and "guessed scale" not in out


def test_a_disparity_file_without_a_range_is_inverse_metres(photo, tmp_path, capsys):
    np.save(tmp_path / "d.npy", 1.0 / scene_depth())
    _, out = summary(capsys, photo, "--depth", tmp_path / "d.npy", "--depth-kind", "disparity", "--ply",
                     "--fov", "50")
    assert "depth scale: depth file (disparity, 1/m); camera: given field of view" in out and "warning" not in out


def test_normalised_depth_without_a_range_says_its_size_is_a_guess(photo, tmp_path, capsys):
    np.save(tmp_path / "p.npy", relative(scene_depth()))
    _, out = summary(capsys, photo, "--depth", tmp_path / "p.npy", "--depth-kind", "normalized", "--ply")
    assert "depth scale: indoor range 0.8-10 m, a guess: normalised depth has no scale of its own" in out
    assert " m at a guessed scale, watertight n/a (open)" in out
    assert "  warning: the scale is a guess (normalised depth has no scale of its own)" in out
    _, out = summary(capsys, photo, "--depth", tmp_path / "p.npy", "--depth-kind", "normalized", "--ply",
                     "--near", "1", "--far", "4", "--force")
    assert "depth scale: depth range 1-4 m (as given)" in out and "warning" not in out


def test_a_fit_says_how_much_of_the_reference_agrees_and_warns_when_little_does(photo, tmp_path, capsys):
    truth = scene_depth()
    np.save(tmp_path / "p.npy", relative(truth))
    np.save(tmp_path / "lidar.npy", truth)
    common = [photo, "--depth", tmp_path / "p.npy", "--depth-kind", "normalized", "--npz", "--force"]
    _, out = summary(capsys, *common, "--align-to", tmp_path / "lidar.npy")
    assert f"depth scale: fit to {tmp_path / 'lidar.npy'}: 100% of its pixels within 10%;" in out
    assert "warning" not in out
    with np.load(photo.with_suffix(".npz")) as data:
        fit = json.loads(str(data["depth_info"]))["fit"]
    assert fit["agreement"] == 1.0 and fit["tolerance"] == 0.1
    # a reference of another scene: the fit collapses, and the summary says so
    other = np.random.default_rng(0).uniform(1.0, 30.0, (H, W)).astype(np.float32)
    np.save(tmp_path / "other.npy", other)
    _, out = summary(capsys, *common, "--align-to", tmp_path / "other.npy")
    line = next(line for line in out.splitlines() if "depth scale:" in line)
    agreement = int(line.split(": ")[2].split("%")[0])
    assert agreement < 50
    assert f"  warning: the fit to {tmp_path / 'other.npy'} is poor (only {agreement}% of its pixels" in out


def test_a_point_cloud_is_counted_in_points(photo, tmp_path, capsys):
    np.save(tmp_path / "d.npy", scene_depth())
    _, out = summary(capsys, photo, "--depth", tmp_path / "d.npy", "--ply", "--points")
    (line,) = [line for line in out.splitlines() if line.startswith(str(photo.with_suffix(".ply")))]
    assert line.endswith(" m") and " points, " in line and "faces" not in line and "watertight" not in line


def test_a_saved_result_of_another_photo_is_refused(photo, tmp_path, capsys):
    np.save(tmp_path / "d.npy", scene_depth())
    summary(capsys, photo, "--depth", tmp_path / "d.npy", "--npz")
    saved = photo.with_suffix(".npz")
    same_size = tmp_path / "same_size.png"
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(same_size)
    code = main([str(same_size), "--depth", str(saved), "--stl", "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and f"{saved} was made from another photo (photo.png, other pixels)" in err
    larger = tmp_path / "larger.png"
    Image.fromarray(np.zeros((2 * H, 2 * W, 3), np.uint8)).save(larger)
    code = main([str(larger), "--depth", str(saved), "--stl", "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and f"(photo.png, {W}x{H}), not {larger} ({2 * W}x{2 * H})" in err
    assert not same_size.with_suffix(".stl").exists() and not larger.with_suffix(".stl").exists()
    renamed = tmp_path / "renamed.png"
    renamed.write_bytes(photo.read_bytes())  # the same pixels under another name: its own result
    _, out = summary(capsys, renamed, "--depth", saved, "--stl")
    assert "depth scale: saved result (depth file (metres))" in out and "warning" not in out


def test_a_result_without_a_fingerprint_under_another_name_is_used_with_a_warning(photo, tmp_path, capsys):
    """Results written before the fingerprint existed: the size must match, the name is checked."""
    np.save(tmp_path / "d.npy", scene_depth())
    summary(capsys, photo, "--depth", tmp_path / "d.npy", "--npz")
    with np.load(photo.with_suffix(".npz")) as data:
        arrays = {key: data[key] for key in data.files}
    info = json.loads(str(arrays["depth_info"]))
    info["photo"] = {"name": "elsewhere.png"}
    arrays["depth_info"] = np.array(json.dumps(info))
    old = tmp_path / "old.npz"
    np.savez(old, **arrays)
    _, out = summary(capsys, photo, "--depth", old, "--stl")
    assert f"  warning: {old} was made from elsewhere.png, not photo.png, and holds no fingerprint" in out


def test_the_summary_says_how_much_of_the_networks_depth_was_clipped():
    from ppd_core.summary import depth_line

    info = {"scale": "fit to MoGe-2: 90% of its pixels within 10%", "camera": "EXIF", "clipped_px": 1234,
            "clipped_share": 0.0157}
    assert "; 1234 px (1.6%) of the network's depth outside its trained range, clipped" in depth_line(info)
    assert "clipped" not in depth_line({**info, "clipped_px": 0})


def test_the_readme_lists_the_photo_types_the_command_reads():
    import re
    from pathlib import Path

    from ppd_core.options import PHOTO_SUFFIXES

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    listed = re.search(r"A folder gives its `([^`]+)` files", readme).group(1).split()
    assert tuple(listed) == PHOTO_SUFFIXES
