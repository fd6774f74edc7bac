"""The networks (Pixel-Perfect Depth with its DINOv2 or MoGe-2 encoder), their checkpoints, weights and inference.

Importing this package loads torch; `ppd_core` itself stays light.
"""

from .dinov2 import DinoConfig
from .dit import DiTConfig
from .moge2 import MoGe2
from .ppd import LARGE, PixelPerfectDepth, PPDConfig, euler_step, timesteps

__all__ = ["LARGE", "DinoConfig", "DiTConfig", "MoGe2", "PPDConfig", "PixelPerfectDepth", "euler_step", "timesteps"]
