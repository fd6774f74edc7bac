"""Photo in, PPD depth out: the high-level call that the pipeline, CLI and worker use."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional, Union

import math

import cv2
import numpy as np
import torch

from ..errors import BadInputError
from ..options import DEFAULT_RESOLUTION, check_option
from ..progress import ProgressCallback, report
from .checkpoint import load_pixel_perfect_depth
from .device import autocast, resolve_device, resolve_precision
from .ppd import PixelPerfectDepth, timesteps
from .weights import find_weights

if TYPE_CHECKING:  # for annotations only
    import PIL.Image


def working_size(height: int, width: int, resolution: int = DEFAULT_RESOLUTION) -> tuple[int, int, bool]:
    """(H, W, shrink) of the network input for a photo: area ≈ `resolution`, multiples of 16.

    `shrink` is the official choice of interpolation: True (INTER_AREA) when the scale is
    below 1, else INTER_CUBIC, decided on the overall scale, not per axis.
    """
    scale = math.sqrt(resolution / (height * width))
    H = max(16, int(round(height * scale / 16)) * 16)
    W = max(16, int(round(width * scale / 16)) * 16)
    return H, W, scale < 1


def resize_for_network(rgb: np.ndarray, resolution: int = DEFAULT_RESOLUTION) -> np.ndarray:
    """uint8 (h, w, 3) -> uint8 (H, W, 3) at the working size, with OpenCV INTER_AREA/INTER_CUBIC
    (the official PPD preprocessing: keep the aspect, ~1024x768 pixels, sides multiples of 16)."""
    H, W, shrink = working_size(rgb.shape[0], rgb.shape[1], resolution)
    return cv2.resize(rgb, (W, H), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)


def image_to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) RGB -> float32 (1, 3, H, W) in [0, 1], computed as the reference does (x / 255. in float64)."""
    chw = (np.ascontiguousarray(rgb, dtype=np.uint8) / 255.0).astype(np.float32).transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(chw))[None]


class DepthModel:
    """A loaded PixelPerfectDepth with its device and precision; reuse it across photos."""

    def __init__(self, network: PixelPerfectDepth, device: torch.device, precision: str, source: str = ""):
        self.network = network
        self.device = device
        self.precision = precision
        self.source = source

    @classmethod
    def load(
        cls,
        weights: Union[str, Path, None] = None,
        device: str = "auto",
        precision: str = "auto",
        *,
        download: Optional[bool] = None,
        on_progress: Optional[ProgressCallback] = None,
    ) -> "DepthModel":
        """Find the weights (folder, `PPD_WEIGHTS`, HF cache, download) and load them.

        Raises WeightsMissingError when they are nowhere to be found and CheckpointError
        when a file does not fit the network.
        """
        torch_device = resolve_device(device)
        chosen = resolve_precision(precision, torch_device)
        report(on_progress, "model", 0.0, "finding weights")
        files = find_weights(weights, download=download, on_progress=on_progress)
        report(on_progress, "model", 0.5, f"loading {files.ppd.name}")
        network = load_pixel_perfect_depth(files.ppd, files.encoder, torch_device)
        report(on_progress, "model", 1.0, f"model ready on {torch_device.type} ({chosen})")
        return cls(network, torch_device, chosen, source=str(files.ppd.parent))

    def predict(
        self,
        rgb: Union[np.ndarray, "PIL.Image.Image"],
        steps: int = 4,
        resolution: int = DEFAULT_RESOLUTION,
        seed: int = 0,
        on_progress: Optional[ProgressCallback] = None,
    ) -> np.ndarray:
        """Normalised log-depth `p` (h, w) float32 of an (H, W, 3) uint8 RGB photo (or a PIL image).

        The working size keeps the photo's aspect at about `resolution` pixels (multiples of
        16); lower it for speed on a CPU. `p` is 0 near the 2nd and 1 near the 98th
        percentile of log(1 + depth); larger is farther. The noise comes from a CPU
        generator seeded with `seed`, so results repeat on every device.
        """
        if hasattr(rgb, "convert"):  # a PIL image
            rgb = np.asarray(rgb.convert("RGB"))
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise BadInputError(f"expected an (H, W, 3) uint8 RGB image, got {rgb.dtype} {rgb.shape}")
        check_option("steps", steps)
        check_option("resolution", resolution)
        image = image_to_tensor(resize_for_network(rgb, resolution)).to(self.device)
        generator = torch.Generator(device="cpu").manual_seed(int(seed))
        noise = torch.randn((1, 1, *image.shape[-2:]), generator=generator).to(self.device)
        schedule = timesteps(steps)

        def on_step(done: int, total: int) -> None:
            report(on_progress, "diffusion", done / total, f"diffusion step {done}/{total}")

        with torch.inference_mode(), autocast(self.device, self.precision):
            report(on_progress, "encode", 0.0, "semantic encoder")
            semantics = self.network.sem_encoder.forward_semantics(image)
            report(on_progress, "encode", 1.0, "semantic encoder done")
            report(on_progress, "diffusion", 0.0, f"diffusion step 0/{len(schedule)}")
            depth = self.network.sample(image, noise, schedule=schedule, semantics=semantics, on_step=on_step)
        return depth[0, 0].float().cpu().numpy()
