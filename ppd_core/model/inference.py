"""Photo in, PPD depth (and MoGe-2 geometry) out: the high-level call the pipeline, CLI and worker use."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Union

import cv2
import numpy as np
import torch

from ..errors import BadInputError
from ..options import DEFAULT_RESOLUTION, check_option
from ..progress import ProgressCallback, report
from .cancel import RepeatingProgress, cancel_points
from .checkpoint import hold_weights, load_moge2, load_pixel_perfect_depth, load_ppd_moge
from .device import DTYPES, autocast, compile_mode, compile_network, resolve_device
from .precision_check import PrecisionChoice, choose_precision
from .moge2 import MoGe2, token_grid, tokens_for_level
from .ppd import PixelPerfectDepth, timesteps
from .weights import find_weights

if TYPE_CHECKING:  # for annotations only
    import PIL.Image


def working_size(height: int, width: int, resolution: int = DEFAULT_RESOLUTION) -> tuple[int, int, bool]:
    """(H, W, shrink) of the network input for a photo: area ≈ `resolution`, multiples of 16.

    `shrink` is the official choice of interpolation: True (INTER_AREA) when the scale is
    below 1, else INTER_CUBIC, decided on the overall scale, not per axis. A photo thousands
    of times longer than wide (its short side held at 16) has its long side cut back to the
    area, not left at many times it (a 1 x 100000 photo asked for 4.5 MP at the default).
    """
    scale = math.sqrt(resolution / (height * width))
    H = max(16, int(round(height * scale / 16)) * 16)
    W = max(16, int(round(width * scale / 16)) * 16)
    if H * W > 2 * resolution:  # rounding alone stays under 1.8x; this is the 16 px floor
        H, W = min(H, max(16, resolution // W // 16 * 16)), min(W, max(16, resolution // H // 16 * 16))
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


@dataclass
class MoGeGeometry:
    """MoGe-2's metric geometry of the working-size image."""

    depth: np.ndarray         # (H, W) float32 metres, +inf outside the mask
    mask: np.ndarray          # (H, W) bool: a surface MoGe-2 trusts (not sky, not invalid)
    intrinsics: np.ndarray    # (3, 3) normalised: fx, cx by the width; fy, cy by the height
    tokens: tuple[int, int]   # the token grid it was computed on


@dataclass
class DepthEstimate:
    """What the networks say about one photo, at the working size (multiples of 16)."""

    p: np.ndarray                       # (H, W) float32 normalised log(1 + depth)
    geometry: Optional[MoGeGeometry]    # None without MoGe-2


class DepthModel:
    """The loaded networks with their device and precision; reuse it across photos.

    `network` is the PixelPerfectDepth; `geometry_model` the MoGe-2 that gives metric depth,
    focal length and the validity mask (the network's own semantic encoder with MoGe-2
    semantics, a separate network with Depth Anything V2 semantics, None without moge2.pt).
    """

    def __init__(self, network: PixelPerfectDepth, device: torch.device, precision: Union[str, PrecisionChoice],
                 source: str = "", geometry_model: Optional[MoGe2] = None, description: str = "",
                 compiled: str = "off"):
        self.network = network
        self.device = device
        self.precision_choice = precision if isinstance(precision, PrecisionChoice) else PrecisionChoice(
            precision, "as asked")
        self.precision = self.precision_choice.precision
        self.source = source
        self.geometry_model = geometry_model
        self.description = description
        self.compiled = compiled
        self._compiled_sizes: set[tuple[int, int]] = set()

    @classmethod
    def load(
        cls,
        weights: Union[str, Path, None] = None,
        device: str = "auto",
        precision: str = "auto",
        *,
        semantics: str = "auto",
        geometry: bool = True,
        download: Optional[bool] = None,
        torch_compile: Optional[str] = None,
        on_progress: Optional[ProgressCallback] = None,
    ) -> DepthModel:
        """Find the weights (folder, `PPD_WEIGHTS`, HF cache, download) and load them.

        `semantics` "auto", "moge2" or "da2" (see `find_weights`); `geometry` False skips a
        separate MoGe-2. In bf16 or fp16 the Linear and Conv weights are held in that dtype
        (half the memory of fp32). `torch_compile` "off", "blocks" or "graphs" (default: $PPD_COMPILE,
        else "off"; CUDA only, see `compile_network`). Raises WeightsMissingError when files
        are nowhere to be found and CheckpointError when a file does not fit its network.
        """
        torch_device = resolve_device(device)
        check_option("precision", precision)
        compiled = compile_mode(torch_compile, torch_device)
        report(on_progress, "model", 0.0, "finding weights")
        files = find_weights(weights, semantics=semantics, geometry=geometry, download=download,
                             on_progress=on_progress)
        report(on_progress, "model", 0.4, f"loading {files.ppd.name} and {files.encoder.name}")
        # Loaded in fp32 on the CPU, checked, then held in the chosen precision on the device.
        if files.semantics == "moge2":
            network = load_ppd_moge(files.ppd, files.encoder)
            geometry_model = network.sem_encoder
        else:
            network = load_pixel_perfect_depth(files.ppd, files.encoder)
            geometry_model = load_moge2(files.moge2) if files.moge2 is not None else None
        networks = [("ppd", network)]
        if geometry_model is not None and geometry_model is not network.sem_encoder:
            networks.append(("moge2", geometry_model))
        report(on_progress, "model", 0.8, "choosing the precision")
        choice = choose_precision(precision, torch_device, networks)
        if choice.warning:
            report(on_progress, "model", 0.8, f"warning: {choice.warning}")
        for _, net in networks:
            hold_weights(net, DTYPES[choice.precision]).to(torch_device)
            compile_network(net, compiled)
        extra = f", torch.compile {compiled} (the first photo of each size compiles first)" if compiled != "off" else ""
        report(on_progress, "model", 1.0,
               f"{files.describe()}, on {torch_device.type} ({choice.precision}: {choice.why}){extra}")
        return cls(network, torch_device, choice, source=str(files.ppd.parent), geometry_model=geometry_model,
                   description=files.describe(), compiled=compiled)

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
        return self.estimate(rgb, steps, resolution, seed, geometry=False, on_progress=on_progress).p

    def estimate(
        self,
        rgb: Union[np.ndarray, "PIL.Image.Image"],
        steps: int = 4,
        resolution: int = DEFAULT_RESOLUTION,
        seed: int = 0,
        *,
        geometry: bool = True,
        fov_x: Optional[float] = None,
        moge_pass: str = "shared",
        on_progress: Optional[ProgressCallback] = None,
    ) -> DepthEstimate:
        """`p` as `predict` gives it, and MoGe-2's metric geometry when there is a MoGe-2.

        With MoGe-2 semantics and `moge_pass` "shared", the semantic encoder's one pass at
        the DiT's (H/16, W/16) grid also feeds the geometry heads; otherwise MoGe-2 runs its
        own pass at the official operating point (3600 tokens). `fov_x` (horizontal degrees,
        from EXIF or the user) constrains the focal length, which MoGe-2 recovers otherwise.
        `on_progress` is also asked again at the networks' cancellation points (`cancel`), so
        that raising `Cancelled` stops them within a block.
        """
        on_progress = RepeatingProgress(on_progress)
        if hasattr(rgb, "convert"):  # a PIL image
            rgb = np.asarray(rgb.convert("RGB"))
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise BadInputError(f"expected an (H, W, 3) uint8 RGB image, got {rgb.dtype} {rgb.shape}")
        check_option("steps", steps)
        check_option("resolution", resolution)
        check_option("moge_pass", moge_pass)
        image = image_to_tensor(resize_for_network(rgb, resolution)).to(self.device)
        generator = torch.Generator(device="cpu").manual_seed(int(seed))
        noise = torch.randn((1, 1, *image.shape[-2:]), generator=generator).to(self.device)
        schedule = timesteps(steps)
        moge = self.geometry_model if geometry else None
        shared = moge is not None and moge is self.network.sem_encoder and moge_pass == "shared"

        compiling = self.compiled != "off" and tuple(image.shape[-2:]) not in self._compiled_sizes
        started = time.perf_counter()

        def on_step(done: int, total: int) -> None:
            note = ""
            if compiling and done == 1:  # the first step of a new size waits for torch.compile
                self._compiled_sizes.add(tuple(image.shape[-2:]))
                note = f" (with torch.compile for this size: {time.perf_counter() - started:.1f} s so far)"
            report(on_progress, "diffusion", done / total, f"diffusion step {done}/{total}{note}")

        with torch.inference_mode(), autocast(self.device, self.precision), cancel_points(on_progress.check):
            report(on_progress, "encode", 0.0, "semantic encoder" + (" and MoGe-2 geometry" if shared else ""))
            found = None
            if shared:
                rows, cols = image.shape[-2] // 16, image.shape[-1] // 16
                outputs = moge.forward_grid(image, rows, cols)
                semantics = outputs["semantics"]
                found = MoGeGeometry(*moge.geometry(outputs, fov_x), (rows, cols))
            else:
                semantics = self.network.sem_encoder.forward_semantics(image)
            report(on_progress, "encode", 1.0, "semantic encoder done")
            report(on_progress, "diffusion", 0.0, f"diffusion step 0/{len(schedule)}")
            depth = self.network.sample(image, noise, schedule=schedule, semantics=semantics, on_step=on_step)
        if moge is not None and found is None:  # MoGe-2's own pass at 3600 tokens, in its weights' dtype
            report(on_progress, "geometry", 0.0, "MoGe-2 geometry")
            num_tokens = tokens_for_level(9, moge.num_tokens_range)  # the official operating point
            with cancel_points(on_progress.check):
                geometry_found = moge.infer(image, num_tokens, fov_x=fov_x)
            found = MoGeGeometry(*geometry_found, token_grid(*image.shape[-2:], num_tokens))
            report(on_progress, "geometry", 1.0, "MoGe-2 geometry done")
        return DepthEstimate(depth[0, 0].float().cpu().numpy(), found)
