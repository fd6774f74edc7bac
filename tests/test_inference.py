"""DepthModel: loading through the real loader, preprocessing, seeds, progress, cancel."""

import numpy as np
import pytest
import torch

from ppd_core.errors import BadInputError, Cancelled
from ppd_core.model.device import auto_precision
from ppd_core.model.inference import DepthModel
from tests.checkpoints import write_small_weights


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return DepthModel.load(write_small_weights(tmp_path_factory.mktemp("w")))


@pytest.fixture(scope="module")
def photo():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)


def test_cpu_defaults(model):
    assert model.device.type == "cpu" and model.precision == auto_precision(torch.device("cpu"))[0]


def test_working_size_follows_resolution(model, photo):
    depth = model.predict(photo, steps=2, resolution=64 * 48)
    assert depth.shape == (48, 64) and depth.dtype == np.float32 and np.isfinite(depth).all()


def test_a_photo_thousands_of_times_longer_than_wide_keeps_the_asked_area():
    """The short side's 16 px floor must not let the long one run on (1 x 100000 asked 4.5 MP)."""
    from ppd_core.model.inference import working_size

    for resolution in (256, 64 * 48, 1024 * 768, 3 * 1024 * 1024):
        for height, width in ((1, 100_000), (100_000, 1), (1, 1), (3, 40_000), (2, 5_000)):
            H, W, _ = working_size(height, width, resolution)
            assert H % 16 == W % 16 == 0 and min(H, W) >= 16 and H * W <= 2 * resolution, (height, width, resolution)
    assert working_size(3024, 4032) == (768, 1024, True)  # ordinary photos are sized as before


def test_pil_image_in(model, photo):
    from PIL import Image

    from_pil = model.predict(Image.fromarray(photo), steps=1, resolution=64 * 48)
    assert np.array_equal(from_pil, model.predict(photo, steps=1, resolution=64 * 48))


def test_seed_makes_it_repeatable(model, photo):
    a = model.predict(photo, steps=2, resolution=64 * 48, seed=5)
    b = model.predict(photo, steps=2, resolution=64 * 48, seed=5)
    c = model.predict(photo, steps=2, resolution=64 * 48, seed=6)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def changes(events: list) -> list:
    """The events without repeats: the networks repeat the last report at each block, to ask for a cancel."""
    return [event for number, event in enumerate(events) if number == 0 or event != events[number - 1]]


def test_progress_per_stage_and_step(model, photo):
    events = []
    model.predict(photo, steps=3, resolution=64 * 48, on_progress=lambda *e: events.append(e))
    diffusion = [f for stage, f, _ in changes(events) if stage == "diffusion"]
    assert diffusion == pytest.approx([0, 1 / 3, 2 / 3, 1])
    assert events[0][0] == "encode" and len(events) > len(changes(events))


def test_cancel_from_the_callback_stops_the_run(model, photo):
    steps_seen = []

    def cancel_after_first_step(stage, fraction, message):
        if stage == "diffusion":
            steps_seen.append(fraction)
            if fraction > 0:
                raise Cancelled("stop")

    with pytest.raises(Cancelled):
        model.predict(photo, steps=4, resolution=64 * 48, on_progress=cancel_after_first_step)
    assert changes(steps_seen) == [0, 0.25]


@pytest.mark.parametrize(
    "image,kwargs",
    [
        (np.zeros((10, 10), np.uint8), {}),
        (np.zeros((10, 10, 3), np.float32), {}),
        (np.zeros((10, 10, 3), np.uint8), {"steps": 0}),
        (np.zeros((10, 10, 3), np.uint8), {"resolution": 10}),
    ],
)
def test_bad_input(model, image, kwargs):
    with pytest.raises(BadInputError):
        model.predict(image, **kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_absent_device_is_a_clear_error(tmp_path):
    with pytest.raises(BadInputError, match="cuda"):
        DepthModel.load(write_small_weights(tmp_path), device="cuda")
    with pytest.raises(BadInputError, match="precision"):
        DepthModel.load(tmp_path, precision="fp8")


def test_reduced_precision_autocast_stays_close_to_fp32(model, photo, tmp_path):
    reference = DepthModel.load(write_small_weights(tmp_path), precision="fp32").predict(
        photo, steps=2, resolution=64 * 48)
    bf16 = DepthModel.load(write_small_weights(tmp_path), precision="bf16")
    assert bf16.precision == "bf16"
    low = bf16.predict(photo, steps=2, resolution=64 * 48)
    assert low.dtype == np.float32
    assert 0 < np.abs(low - reference).max() < 0.05


def test_resolution_has_a_ceiling(model, photo):
    with pytest.raises(BadInputError, match="256..3145728 pixels"):
        model.predict(photo, resolution=10**8)
