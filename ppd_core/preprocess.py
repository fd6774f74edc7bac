"""The official PPD preprocessing: keep the aspect, ~1024x768 pixels, sides multiples of 16."""

from __future__ import annotations

import math

import cv2
import numpy as np

from .errors import BadInputError

DEFAULT_RESOLUTION = 1024 * 768
MIN_RESOLUTION = 16 * 16
MAX_RESOLUTION = 4 * DEFAULT_RESOLUTION
"""Four times the trained working area. Beyond it the encoder's attention alone needs tens
of GB, and the network was never trained to see that many pixels."""


def check_resolution(resolution: int) -> None:
    """BadInputError unless MIN_RESOLUTION <= resolution <= MAX_RESOLUTION."""
    if not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION:
        raise BadInputError(
            f"resolution must be {MIN_RESOLUTION}..{MAX_RESOLUTION} pixels (1024x768 = 786432), got {resolution}"
        )


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
