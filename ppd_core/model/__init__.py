"""The networks (Pixel-Perfect Depth with its DINOv2 or MoGe-2 encoder), their checkpoints, weights and inference.

Importing this package loads nothing: each name below is imported from its module on first
use (PEP 562), so `ppd_core.model.weights` (finding and downloading the weight files) runs
without torch, for the Blender add-on's weights check and `ppd-weights`. A new exported name
is one line of `EXPORTS`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

#: Exported name -> the module of this package that defines it.
EXPORTS = {
    "DinoConfig": "dinov2",
    "DiTConfig": "dit",
    "LARGE": "ppd",
    "MoGe2": "moge2",
    "PPDConfig": "ppd",
    "PixelPerfectDepth": "ppd",
    "PixelPerfectVideoDepth": "ppvd",
    "euler_step": "ppd",
    "timesteps": "ppd",
}

__all__ = sorted(EXPORTS)

if TYPE_CHECKING:  # for type checkers and readers: the same names, imported eagerly
    from .dinov2 import DinoConfig
    from .dit import DiTConfig
    from .moge2 import MoGe2
    from .ppd import LARGE, PixelPerfectDepth, PPDConfig, euler_step, timesteps
    from .ppvd import PixelPerfectVideoDepth


def __getattr__(name: str):
    """Import an exported name's module on first use and keep the name here."""
    module = EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(EXPORTS))
