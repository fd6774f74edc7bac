"""Cancel lands within a block: the networks ask the progress callback again before every
transformer block (DiT, DINOv2, MoGe-2) and between attention head groups on the CPU, so a
callback raising `Cancelled` stops even the released-size network within about a second."""

import threading
import time

import numpy as np
import pytest
import torch

from ppd_core.errors import Cancelled
from ppd_core.model.cancel import cancel_points, poll
from ppd_core.model.inference import DepthModel
from ppd_core.model.ppd import PixelPerfectDepth, PPDConfig
from tests.checkpoints import small_model, small_moge
from tests.test_precision import released_size

CPU = torch.device("cpu")


class CancelAfter:
    """A progress callback that raises `Cancelled` from the `polls`-th call on, counting calls."""

    def __init__(self, polls: int) -> None:
        self.polls = polls
        self.calls = 0

    def __call__(self, stage: str = "", fraction: float = 0.0, message: str = "") -> None:
        self.calls += 1
        if self.calls >= self.polls:
            raise Cancelled("cancelled by request")


def blocks_run(model: torch.nn.Module) -> list:
    """Appends each transformer or residual block to the returned list as it finishes."""
    from ppd_core.model.dinov2 import Block
    from ppd_core.model.dit import DiTBlock
    from ppd_core.model.moge2_convstack import ResidualConvBlock

    done = []
    for module in model.modules():
        if isinstance(module, (Block, DiTBlock, ResidualConvBlock)):
            module.register_forward_hook(lambda block, inputs, output: done.append(block))
    return done


def test_every_block_of_every_network_is_a_cancellation_point():
    """Counting calls: the check is asked before each block (and more), and a cancel at the
    k-th ask leaves the block then about to run, and every later one, unrun."""
    model = PixelPerfectDepth(small_model().config, sem_encoder=None)
    image, noise = torch.rand((1, 3, 48, 64)), torch.randn((1, 1, 48, 64))
    done = blocks_run(model)
    counter = CancelAfter(10**9)
    with cancel_points(counter):
        model.sample(image, noise, steps=2)
    blocks_per_sample = len(done)
    assert blocks_per_sample == model.config.encoder.depth + 2 * model.config.dit.depth
    assert counter.calls >= blocks_per_sample
    for polls in (1, 2, counter.calls):
        done.clear()
        with pytest.raises(Cancelled), cancel_points(CancelAfter(polls)):
            model.sample(image, noise, steps=2)
        assert len(done) < blocks_per_sample

    moge = small_moge()
    done = blocks_run(moge)
    counter = CancelAfter(10**9)
    with torch.inference_mode(), cancel_points(counter):
        moge.forward_grid(image, 3, 4)
    assert counter.calls >= len(done) > 0
    done.clear()
    with pytest.raises(Cancelled), cancel_points(CancelAfter(counter.calls)):  # the very last point: a conv block
        moge.infer(image[0], num_tokens=12)
    assert len(done) > 0


def test_cancellation_points_change_no_number():
    """Attention split into head groups between the points is the same arithmetic, bit for bit."""
    model = small_model()
    image, noise = torch.rand((1, 3, 48, 64)), torch.randn((1, 1, 48, 64))
    plain = model.sample(image, noise, steps=2)
    with cancel_points(lambda: None):
        assert torch.equal(model.sample(image, noise, steps=2), plain)
    poll()  # outside `cancel_points`: nothing to ask, nothing raised


def test_cancel_of_the_released_size_network_at_1024x768_on_the_cpu_lands_within_2_s():
    """The released DA2 layout (random weights, built on the meta device): cancelled during
    its encoder, whose blocks on 3072 tokens take about a second each on a 2-core CPU."""
    with torch.device("meta"):
        network = PixelPerfectDepth(PPDConfig())
    model = DepthModel(released_size(network), CPU, "fp32")
    rgb = np.random.default_rng(0).integers(0, 256, (768, 1024, 3), dtype=np.uint8)
    asked = threading.Event()
    pressed: list[float] = []

    def on_progress(stage: str, fraction: float, message: str) -> None:
        if stage == "encode" and not pressed:
            threading.Timer(0.5, lambda: (pressed.append(time.perf_counter()), asked.set())).start()
        if asked.is_set():
            raise Cancelled("cancelled by request")

    with pytest.raises(Cancelled):
        model.estimate(rgb, steps=8, resolution=1024 * 768, on_progress=on_progress)
    answered = time.perf_counter()
    assert pressed and answered - pressed[0] < 2.0, f"the cancel took {answered - pressed[0]:.1f} s"
