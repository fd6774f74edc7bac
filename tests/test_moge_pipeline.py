"""Both PPD variants end to end with small random weights through the real loaders:
photo -> MoGe-2 + PPD -> metric depth fitted to MoGe-2 -> sky mask -> points, mesh, solid."""

import json

import numpy as np
import pytest
from PIL import Image

from ppd_core.mesh import main
from ppd_core.model.inference import DepthModel
from tests.checkpoints import write_small_moge, write_small_ppd_moge, write_small_weights

H, W = 48, 64
SMALL = ["--resolution", str(W * H), "--steps", "1", "--quiet"]


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("photo") / "photo.png"
    Image.fromarray(np.random.default_rng(5).integers(0, 256, (H, W, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def moge_weights(tmp_path_factory):
    return write_small_ppd_moge(tmp_path_factory.mktemp("moge"))


@pytest.fixture(scope="module")
def da2_moge_weights(tmp_path_factory):
    folder = write_small_weights(tmp_path_factory.mktemp("da2"))
    return write_small_moge(folder)


def test_moge_semantics_gives_scale_camera_and_sky_mask_in_one_encoder_pass(moge_weights, photo, tmp_path, capsys):
    model = DepthModel.load(moge_weights, device="cpu", precision="fp32")
    assert model.geometry_model is model.network.sem_encoder and "MoGe-2 semantics" in model.description
    calls = []
    model.geometry_model.register_forward_pre_hook(lambda *a: calls.append("forward"))
    original = model.geometry_model.encode
    model.geometry_model.encode = lambda *a: calls.append("encode") or original(*a)
    estimate = model.estimate(np.asarray(Image.open(photo)), steps=1, resolution=W * H)
    assert calls == ["encode"]  # the semantic prompt and the geometry from one encoder pass
    geometry = estimate.geometry
    assert geometry.tokens == (H // 16, W // 16) and geometry.mask.shape == estimate.p.shape == (H, W)
    assert np.isfinite(geometry.depth[geometry.mask]).all() and np.isinf(geometry.depth[~geometry.mask]).all()

    code = main([str(photo), "--weights", str(moge_weights), "--ply", "--points", "-o", str(tmp_path), *SMALL])
    out = capsys.readouterr().out
    assert code == 0 and "depth scale: fit to MoGe-2: " in out and "camera: MoGe-2" in out and "MoGe-2 semantics" in out


def test_depth_is_the_fit_to_moge_and_the_mask_removes_sky(moge_weights, photo, tmp_path):
    from ppd_core.files.depth_file import read_depth_file
    from ppd_core.geometry.align import LogDepthFit, metric_from_fit
    from ppd_core.options import JobOptions
    from ppd_core.photo_depth import ModelCache
    from ppd_core.pipeline import run_photo

    models = ModelCache()
    options = JobOptions(weights=str(moge_weights), resolution=W * H, steps=1, points=True)
    outputs = {"npz": tmp_path / "p.npz", "depth_png": tmp_path / "p_depth.png"}
    stats = run_photo(photo, outputs, options, models=models)
    estimate = next(iter(models.estimates.values()))
    mask = estimate.geometry.mask
    assert 0 < np.count_nonzero(~mask) == stats["depth"]["masked_px"]  # the random MoGe-2 leaves some out
    fit = stats["depth"]["fit"]
    expected = metric_from_fit(estimate.p, LogDepthFit(fit["a"], fit["b"], 0.0, 0, fit["method"]),
                               max_depth=float(estimate.geometry.depth[mask].max()))
    written = read_depth_file(outputs["depth_png"], "metric")  # millimetres, the grid is the working size here
    assert np.isnan(written[~mask]).all() and np.isfinite(written[mask]).all()
    np.testing.assert_allclose(written[mask], expected[mask], atol=6e-4)
    with np.load(outputs["npz"]) as data:
        assert len(data["vertices"]) <= np.count_nonzero(mask)


def test_depth_anything_semantics_with_moge_geometry_and_a_given_fov(da2_moge_weights, photo, tmp_path, capsys):
    code = main([str(photo), "--weights", str(da2_moge_weights), "--npz", "--fov", "50", "-o", str(tmp_path), *SMALL])
    out = capsys.readouterr().out
    assert code == 0 and "Depth Anything V2 semantics and MoGe-2 geometry" in out
    assert "depth scale: fit to MoGe-2: " in out and "camera: given field of view" in out
    with np.load(tmp_path / "photo.npz") as data:
        fx = float(data["intrinsics"][0])
    assert fx == pytest.approx(W / (2 * np.tan(np.radians(25.0))))


def test_without_moge_the_scale_is_a_said_guess_and_an_explicit_moge2_scale_refuses(tmp_path, photo, capsys):
    weights = write_small_weights(tmp_path / "w")
    assert main([str(photo), "--weights", str(weights), "--ply", "--points", "-o", str(tmp_path), *SMALL]) == 0
    out = capsys.readouterr().out
    assert "depth scale: indoor range 0.8-10 m, a guess: no MoGe-2 weights;" in out
    assert "  warning: the scale is a guess (no MoGe-2 weights): sizes in metres are not measured" in out
    assert " m at a guessed scale" in out and "no MoGe-2 (no metric scale or sky mask of its own)" in out
    code = main([str(photo), "--weights", str(weights), "--ply", "--scale-from", "moge2", "--force",
                 "-o", str(tmp_path), *SMALL])
    err = capsys.readouterr().err
    assert code == 1 and "--scale-from moge2: no MoGe-2 weights" in err and "ppd-weights download" in err


def test_a_given_range_wins_over_moge_and_moge2_needs_its_weights(da2_moge_weights, photo, tmp_path, capsys):
    assert main([str(photo), "--weights", str(da2_moge_weights), "--npz", "--preset", "tabletop",
                 "-o", str(tmp_path), *SMALL]) == 0
    out = capsys.readouterr().out
    assert "depth scale: tabletop range 0.3-1.5 m (as given);" in out and "warning" not in out
    code = main([str(photo), "--weights", str(da2_moge_weights), "--npz", "--semantics", "moge2", "--force",
                 "-o", str(tmp_path), *SMALL])
    assert code == 1 and "lacks ppd_moge.pth" in capsys.readouterr().err


def test_the_official_moge_pass_runs_a_second_pass(moge_weights, photo):
    model = DepthModel.load(moge_weights, device="cpu", precision="fp32")
    rgb = np.asarray(Image.open(photo))
    shared = model.estimate(rgb, steps=1, resolution=W * H).geometry
    official = model.estimate(rgb, steps=1, resolution=W * H, moge_pass="official").geometry
    assert shared.tokens == (3, 4) and official.tokens[0] * official.tokens[1] > 3000


def test_the_worker_reports_the_variant_and_the_sources(moge_weights, photo, tmp_path):
    import sys

    from ppd_core.client import WorkerClient

    with WorkerClient(sys.executable, env={"HF_HUB_OFFLINE": "1"}) as client:
        client.start()
        job = client.submit({"photo": str(photo), "outputs": {"npz": str(tmp_path / "w.npz")},
                             "options": {"weights": str(moge_weights), "resolution": W * H, "steps": 1}})
        result = None
        for _ in range(1200):
            events = [e for e in client.poll() if e.get("id") == job and e["type"] in ("result", "error")]
            if events:
                result = events[0]
                break
            import time

            time.sleep(0.05)
    assert result is not None and result["type"] == "result", json.dumps(result)
    assert "MoGe-2 semantics" in result["stats"]["depth"]["model"] and result["stats"]["depth"]["camera"] == "MoGe-2"


def test_when_moge_trusts_too_few_pixels_auto_says_it_guessed_and_an_explicit_moge2_refuses(
        da2_moge_weights, photo, tmp_path, capsys, monkeypatch):
    from ppd_core import photo_depth

    monkeypatch.setattr(photo_depth, "MIN_MASKED_PIXELS", H * W + 1)  # more than any mask holds: all sky
    common = [str(photo), "--weights", str(da2_moge_weights), "--npz", "-o", str(tmp_path), *SMALL]
    assert main(common) == 0
    assert "a guess: MoGe-2 trusts fewer than" in capsys.readouterr().out
    assert main([*common, "--force", "--scale-from", "moge2"]) == 1
    assert "MoGe-2 trusts fewer than" in capsys.readouterr().err
