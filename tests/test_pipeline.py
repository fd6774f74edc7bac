"""run_photo: the contract the CLI and the worker rely on."""

import json

import numpy as np
import pytest
from PIL import Image

from ppd_core.errors import BadInputError, Cancelled, OutputError
from ppd_core.options import JobOptions
from ppd_core.photo_depth import ModelCache
from ppd_core.pipeline import mesh_grid_size, run_photo
from ppd_core.progress import JOB_STAGES


@pytest.fixture
def photo_and_depth(tmp_path):
    rgb = np.random.default_rng(5).integers(0, 255, (30, 40, 3), dtype=np.uint8)
    photo = tmp_path / "photo.jpg"
    Image.fromarray(rgb).save(photo)
    depth = np.full((30, 40), 3.0, np.float32)
    depth[:, :20] = 1.5
    np.save(tmp_path / "depth.npy", depth)
    return photo, str(tmp_path / "depth.npy")


def test_stages_are_ordered_and_weights_sum_to_one():
    names = [name for name, _ in JOB_STAGES]
    assert names[0] == "load" and names[-1] == "export" and "diffusion" in names
    assert sum(weight for _, weight in JOB_STAGES) == pytest.approx(1.0)


def test_options_from_dict_accept_fields_and_refuse_unknown_keys():
    options = JobOptions.from_dict({"method": "poisson", "width_mm": 50.0, "steps": 2})
    assert options.method == "poisson" and options.width_mm == 50.0 and options.steps == 2
    with pytest.raises(BadInputError, match="colour"):
        JobOptions.from_dict({"colour": "red"})
    with pytest.raises(BadInputError, match="preset"):
        JobOptions.from_dict({"preset": "underwater"})
    assert JobOptions(preset="tabletop", far=2.0).depth_range() == (0.3, 2.0)


def test_mesh_grid_is_the_photo_or_shrunk_to_the_resolution():
    assert mesh_grid_size(1024, 768, 1024 * 768) == (1024, 768)
    width, height = mesh_grid_size(4000, 3000, 1024 * 768)
    assert abs(width * height - 1024 * 768) < 0.01 * 1024 * 768 and abs(width / height - 4 / 3) < 0.01


def test_stats_are_json_and_describe_each_output(photo_and_depth, tmp_path):
    photo, depth = photo_and_depth
    outputs = {"stl": tmp_path / "a.stl", "ply": tmp_path / "a.ply", "npz": tmp_path / "a.npz"}
    seen = []
    stats = run_photo(photo, outputs, JobOptions(depth_file=depth, width_mm=40.0, fov=60.0),
                      on_progress=lambda stage, fraction, message: seen.append(stage))
    json.dumps(stats)
    assert stats["outputs"] == {kind: str(path) for kind, path in outputs.items()}
    assert stats["watertight"] is True and stats["size_mm"][0] == pytest.approx(40.0, abs=0.01)
    assert stats["details"]["ply"]["watertight"] is None and "size_m" in stats["details"]["ply"]
    camera = stats["camera"]
    assert camera["width"] == 40 and camera["sensor_fit"] == "HORIZONTAL"
    assert camera["lens_mm"] == pytest.approx(36.0 / 2 / np.tan(np.radians(30.0)), rel=1e-6)
    assert [s for s in dict.fromkeys(seen)] == ["load", "model", "diffusion", "lift", "mesh", "export"]


def test_cancel_during_export_leaves_the_folder_as_it_was(photo_and_depth, tmp_path):
    photo, depth = photo_and_depth
    outputs = {"stl": tmp_path / "a.stl", "obj": tmp_path / "a.obj", "glb": tmp_path / "a.glb"}
    (tmp_path / "a.stl").write_bytes(b"the user's old file")  # as if overwriting with --force

    def cancel_late(stage, fraction, message):
        if stage == "export" and "a.glb" in message:
            raise Cancelled("user stopped")

    with pytest.raises(Cancelled):
        run_photo(photo, outputs, JobOptions(depth_file=depth), on_progress=cancel_late)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.stl", "depth.npy", "photo.jpg"]
    assert (tmp_path / "a.stl").read_bytes() == b"the user's old file"
    stats = run_photo(photo, outputs, JobOptions(depth_file=depth))
    assert sorted(stats["files"]) == sorted(str(tmp_path / n) for n in
                                            ("a.stl", "a.obj", "a.mtl", "a_texture.png", "a.glb"))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["a.stl", "a.obj", "a.mtl", "a_texture.png", "a.glb", "depth.npy", "photo.jpg"])


def test_model_cache_loads_once_per_settings(tmp_path, photo_and_depth):
    from tests.checkpoints import write_small_weights

    photo, _ = photo_and_depth
    weights = str(write_small_weights(tmp_path / "weights"))
    models = ModelCache()
    options = JobOptions(weights=weights, resolution=40 * 30, steps=1, solid=True)
    for name in ("a", "b"):
        run_photo(photo, {"stl": tmp_path / f"{name}.stl"}, options, models=models)
    assert models.loads == 1
    first = models.model
    models.get(JobOptions(weights=weights, device="cpu", precision="fp32"))
    assert models.loads == 2 and models.model is not first


def test_bad_output_kinds_and_geometry_requests(photo_and_depth, tmp_path):
    photo, depth = photo_and_depth
    with pytest.raises(BadInputError, match="outputs"):
        run_photo(photo, {"fbx": tmp_path / "a.fbx"}, JobOptions(depth_file=depth))
    with pytest.raises(BadInputError, match="--points"):
        run_photo(photo, {"obj": tmp_path / "a.obj"}, JobOptions(depth_file=depth, points=True))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["depth.npy", "photo.jpg"]


def test_a_shrunk_mesh_grid_keeps_its_points_on_the_true_surface(tmp_path):
    """A floor-like plane seen at 160x120, meshed on an 80x60 grid: every vertex on the plane."""
    from ppd_core.geometry.camera import intrinsics_from_fov

    width, height = 160, 120
    camera = intrinsics_from_fov(width, height, 60.0)
    normal, offset = np.array([0.0, -0.8, -0.6]), -2.0  # plane normal . X = offset
    u = (np.arange(width) + 0.5 - camera.cx) / camera.fx
    v = (np.arange(height) + 0.5 - camera.cy) / camera.fy
    rays = np.stack(np.broadcast_arrays(u[None, :], v[:, None], np.ones((height, width))), -1)
    depth = offset / (rays @ normal)  # exact depth of each pixel centre
    np.save(tmp_path / "plane.npy", depth.astype(np.float32))
    photo = tmp_path / "plane.png"
    Image.fromarray(np.full((height, width, 3), 128, np.uint8)).save(photo)
    options = JobOptions(depth_file=str(tmp_path / "plane.npy"), fov=60.0, resolution=80 * 60)
    run_photo(photo, {"npz": tmp_path / "plane.npz"}, options)
    with np.load(tmp_path / "plane.npz") as data:
        vertices = data["vertices"].astype(np.float64)
    assert len(vertices) > 0.9 * 80 * 60
    assert np.abs(vertices @ normal - offset).max() < 1e-3  # metres; half a pixel off was ~1 cm


def test_a_write_error_names_the_users_file_not_the_staging_copy(photo_and_depth, tmp_path, monkeypatch):
    import errno
    import pathlib

    photo, depth = photo_and_depth

    def no_space(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pathlib.Path, "write_bytes", no_space)
    with pytest.raises(OutputError) as failure:
        run_photo(photo, {"stl": tmp_path / "a.stl"}, JobOptions(depth_file=depth))
    assert str(failure.value) == f"{tmp_path / 'a.stl'}: cannot write (No space left on device)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["depth.npy", "photo.jpg"]


def test_options_of_the_wrong_type_are_clear_errors():
    for values, message in (({"steps": "4"}, "steps must be a whole number"),
                            ({"width_mm": None}, "width_mm must be a number"),
                            ({"points": "yes"}, "points must be true or false"),
                            ({"near": True}, "near must be a number or null"),
                            ({"decimate": 1.5}, "decimate must be a whole number or null")):
        with pytest.raises(BadInputError, match=message):
            JobOptions.from_dict(values)
    options = JobOptions.from_dict({"width_mm": np.float32(50), "steps": np.int64(2), "fov": 60})
    assert options.width_mm == 50 and options.steps == 2


def test_run_photo_never_writes_over_its_inputs(photo_and_depth, tmp_path):
    photo, depth = photo_and_depth
    before = photo.read_bytes(), (tmp_path / "depth.npy").read_bytes()
    for outputs in ({"depth_png": photo}, {"stl": tmp_path / "a.stl", "npz": tmp_path / "depth.npy"}):
        with pytest.raises(OutputError, match="refusing to overwrite the (photo itself|depth file)"):
            run_photo(photo, outputs, JobOptions(depth_file=depth))
    assert (photo.read_bytes(), (tmp_path / "depth.npy").read_bytes()) == before
    assert not (tmp_path / "a.stl").exists()
    reference = tmp_path / "lidar.png"
    reference.write_bytes(b"the user's scan")
    with pytest.raises(OutputError, match="refusing to overwrite the metric reference"):
        run_photo(photo, {"depth_png": reference}, JobOptions(align_to=str(reference)))
    assert reference.read_bytes() == b"the user's scan"
