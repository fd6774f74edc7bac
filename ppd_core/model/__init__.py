"""The Pixel-Perfect Depth network (DA2-semantics variant) and its checkpoint loading."""

from .config import LARGE, DinoConfig, DiTConfig, PPDConfig
from .ppd import PixelPerfectDepth
from .sampler import euler_step, timesteps

__all__ = ["LARGE", "DinoConfig", "DiTConfig", "PPDConfig", "PixelPerfectDepth", "euler_step", "timesteps"]
