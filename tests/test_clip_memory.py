"""A clip of a few hundred frames through the real clip path (decode, network windows, one scale,
per-frame lift, mesh and write, the depth video) holds no more memory than a clip of thirty.

The network is a stand-in (the tiny random one would take minutes for 300 frames); everything
around it is the product's. Memory is the rise of the whole process's resident size over the
run (FFmpeg's and torch's buffers too), in a fresh interpreter per clip length.

Slow (about 25 s): 330 frames lifted, meshed and written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.clip_scenes import write_clip_video
from ppd_core.clip import ClipRun, plan_clip, run_clip
from ppd_core.model.precision_check import PrecisionChoice
from ppd_core.model.video_inference import VideoModel
from ppd_core.options import JobOptions

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT, NETWORK = 128, 96, (32, 32)  # 300 frames kept with their depths would be 40 MB


class SmoothDepthNetwork:
    """Stands in for the video network: a tilted plane whose tilt follows each frame's brightness."""

    device = torch.device("cpu")

    def __init__(self) -> None:
        from types import SimpleNamespace

        self.dit_video = SimpleNamespace(config=SimpleNamespace(input_size=NETWORK, hidden_size=0, depth=0))

    def sample_window(self, frames, noise, steps=4, *, on_step=None):
        ramp = torch.linspace(0.2, 0.8, NETWORK[0])[None, None, :, None]
        return ramp * (0.5 + frames[:, :1].mean(dim=(2, 3), keepdim=True))


def clip_frames(count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    return [np.roll(base, k, axis=1) for k in range(count)]


def run(count: int, folder: Path) -> int:
    """Run a clip of `count` frames through the clip path into `folder`; return the frames written."""
    video = write_clip_video(folder / f"clip{count}.mkv", clip_frames(count))
    model = VideoModel(SmoothDepthNetwork(), None, torch.device("cpu"), PrecisionChoice("fp32", "a test"))
    options = JobOptions(preset="indoor")
    plan = plan_clip(video, ["ply"], options)
    return run_clip(ClipRun(plan, options, model))["written"]


def resident_mb() -> float:
    """This process's resident size now (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def measured_run(count: int, folder: Path) -> float:
    """Run a clip of `count` frames; return how far the resident size rose above where it started
    (sampled every 5 ms: the peak, FFmpeg's and torch's buffers included)."""
    import ppd_core.pipeline  # noqa: F401  (the stages' imports, loaded before the start is taken)

    start, peak, done = resident_mb(), [0.0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], resident_mb())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        assert run(count, folder) == count
    finally:
        done.set()
        sampler.join()
    return max(peak[0], resident_mb()) - start


def rise_mb(count: int, folder: Path) -> float:
    """`measured_run` in a fresh interpreter."""
    code = ("import json; from pathlib import Path; from tests.test_clip_memory import measured_run; "
            f"print(json.dumps(measured_run({count}, Path({str(folder)!r}))))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_process_memory_does_not_grow_with_the_clip(tmp_path):
    (tmp_path / "short").mkdir()
    (tmp_path / "long").mkdir()
    short = rise_mb(30, tmp_path / "short")
    long = rise_mb(300, tmp_path / "long")
    print(f"resident size rose {short:.0f} MB for 30 frames, {long:.0f} MB for 300")
    assert long <= short + 15, (short, long)
