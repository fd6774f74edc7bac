"""The loaded video model (PPVD) with MoGe-2 beside it, on its device and precision: what a clip runs on.

`VideoModel.depths` streams a clip's frames through `ppd_core.video.iter_video_depth` (one window
in memory) under the chosen precision; `VideoModel.geometry` is MoGe-2's metric depth, mask and
camera of one frame, which the clip's one scale is fitted to (`ppd_core.clip_scale`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Union

import numpy as np
import torch

from ..options import DEFAULT_RESOLUTION, RESOLUTIONS
from ..progress import ProgressCallback, report
from ..video import NETWORK_SIZE, STRIDE, WINDOW, WindowState, iter_video_depth
from .cancel import RepeatingProgress, cancel_points
from .checkpoint import hold_weights, load_moge2
from .checkpoint_video import load_video_depth
from .device import DTYPES, autocast, resolve_device
from .inference import MoGeGeometry, image_to_tensor, resize_for_network
from .moge2 import MoGe2, token_grid, tokens_for_level
from .ppvd import PixelPerfectVideoDepth
from .precision_check import PrecisionChoice, choose_precision
from .video_weights import VideoFiles, find_video_weights

RELEASED_WINDOW_FLOP = 247.1e12
"""One window of the released networks at 512x512 and 4 steps: Pi3 once and the DiT four times
(SPEC_PPVD section 11); a window after the first gives `STRIDE` new frames."""
RELEASED_DIT = (1024, 24)  # the released DiT's width and depth: the FLOP count above is for it
PROBE_SHAPE = (2048, 1024, 4096)  # tokens x width x MLP width: a DiT MLP matmul, about 17 GFLOP


@dataclass
class VideoModel:
    """The video network, MoGe-2 (None without moge2.pt) and where they run."""

    network: PixelPerfectVideoDepth
    moge2: Optional[MoGe2]
    device: torch.device
    precision_choice: PrecisionChoice
    files: Optional[VideoFiles] = None

    @property
    def precision(self) -> str:
        return self.precision_choice.precision

    @property
    def size(self) -> tuple[int, int]:
        """The network's frame size (512x512 released): every frame is squashed to it."""
        return tuple(self.network.dit_video.config.input_size)

    @classmethod
    def load(cls, weights: Union[str, Path, None] = None, device: str = "auto", precision: str = "auto",
             on_progress: Optional[ProgressCallback] = None) -> VideoModel:
        """Find the video files (`find_video_weights`: never a download) and load them strictly."""
        torch_device = resolve_device(device)
        report(on_progress, "model", 0.0, "finding the video weights")
        files = find_video_weights(weights)
        report(on_progress, "model", 0.3, f"loading {files.ppvd.name} and {files.pi3.name}")
        network = load_video_depth(files.ppvd, files.pi3)
        moge = load_moge2(files.moge2) if files.moge2 is not None else None
        networks = [("ppvd", network)] + ([("moge2", moge)] if moge is not None else [])
        report(on_progress, "model", 0.8, "choosing the precision")
        choice = choose_precision(precision, torch_device, networks)
        for _, net in networks:
            hold_weights(net, DTYPES[choice.precision]).to(torch_device)
        report(on_progress, "model", 1.0,
               f"{files.describe()}, on {torch_device.type} ({choice.precision}: {choice.why})")
        return cls(network, moge, torch_device, choice, files)

    def depths(self, frames_rgb_u8: Iterable[np.ndarray], *, steps: int = 4, seed: int = 0,
               frame_count: Optional[int] = None, progress: Optional[ProgressCallback] = None,
               resume: Optional[WindowState] = None,
               on_window: Optional[Callable[[WindowState], None]] = None) -> Iterator[Optional[np.ndarray]]:
        """Each frame's normalised depth p (H0, W0) float32, in window 0's affine frame, as its window
        finishes (None for the frames of windows `resume` skips; see `iter_video_depth`)."""
        noise = torch.randn((WINDOW, 1, *self.size), generator=torch.Generator().manual_seed(int(seed) % 2**63))
        with autocast(self.device, self.precision):
            yield from iter_video_depth(self.network, frames_rgb_u8, noise=noise, steps=steps, size=self.size,
                                        progress=progress, frame_count=frame_count, resume=resume,
                                        on_window=on_window)

    def geometry(self, rgb: np.ndarray, fov_x: Optional[float] = None,
                 progress: Optional[ProgressCallback] = None) -> MoGeGeometry:
        """MoGe-2's metric depth, mask and normalised camera of one frame, at a working size no larger than
        the frame (at most the official 3600 tokens)."""
        height, width = rgb.shape[:2]
        resolution = max(RESOLUTIONS[0], min(height * width, DEFAULT_RESOLUTION))
        image = image_to_tensor(resize_for_network(rgb, resolution)).to(self.device)
        num_tokens = tokens_for_level(9, self.moge2.num_tokens_range)
        checks = RepeatingProgress(progress)
        with torch.inference_mode(), cancel_points(checks.check):
            depth, mask, intrinsics = self.moge2.infer(image, num_tokens, fov_x=fov_x)
        return MoGeGeometry(depth, mask, intrinsics, token_grid(*image.shape[-2:], num_tokens))

    def seconds_per_frame(self) -> Optional[float]:
        """A floor on the seconds per new frame (13 per window) of the released networks here: their
        FLOPs at the speed of one large matmul in the run's precision (attention and the small
        layers run slower). None for networks of other sizes: the first window tells."""
        config = self.network.dit_video.config
        if (config.hidden_size, config.depth) != RELEASED_DIT or self.size != NETWORK_SIZE:
            return None
        return RELEASED_WINDOW_FLOP / STRIDE / matmul_rate(self.device, DTYPES[self.precision])


def matmul_rate(device: torch.device, dtype: torch.dtype) -> float:
    """FLOP per second of a DiT-sized matmul on `device` in `dtype` (best of 3 after a warm-up)."""
    rows, inner, cols = PROBE_SHAPE
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(rows, inner, generator=generator).to(device=device, dtype=dtype)
    b = torch.randn(inner, cols, generator=generator).to(device=device, dtype=dtype)
    best = math.inf
    with torch.no_grad():
        for round_ in range(4):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            a @ b
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if round_:  # the first builds the kernel
                best = min(best, time.perf_counter() - start)
    return 2.0 * rows * inner * cols / best
