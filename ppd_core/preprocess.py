"""The official PPD preprocessing: keep the aspect, ~1024x768 pixels, sides multiples of 16."""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch

DEFAULT_RESOLUTION = 1024 * 768


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
    """uint8 (h, w, 3) -> uint8 (H, W, 3) at the working size, with OpenCV INTER_AREA/INTER_CUBIC."""
    H, W, shrink = working_size(rgb.shape[0], rgb.shape[1], resolution)
    return cv2.resize(rgb, (W, H), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)


def image_to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) RGB -> float32 (1, 3, H, W) in [0, 1], computed as the reference does (x / 255. in float64)."""
    chw = (np.ascontiguousarray(rgb, dtype=np.uint8) / 255.0).astype(np.float32).transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(chw))[None]
