"""PixelPerfectDepth: semantic encoder + cascade DiT + Euler sampler.

The module tree mirrors the released layout (`sem_encoder.pretrained.*`, `dit.*`), so a
state dict of the original implementation loads with strict=True.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
from torch import nn

from .config import PPDConfig
from .dinov2 import SemanticEncoder
from .dit import DiT
from .sampler import euler_step, timesteps

StepCallback = Callable[[int, int], None]  # (steps done, steps total); may raise to cancel


class PixelPerfectDepth(nn.Module):
    def __init__(self, config: PPDConfig = PPDConfig()):
        super().__init__()
        self.config = config
        self.sem_encoder = SemanticEncoder(config.encoder)
        self.dit = DiT(config.dit)

    @torch.inference_mode()
    def sample(
        self,
        image: torch.Tensor,
        noise: torch.Tensor,
        steps: int = 4,
        *,
        schedule: Optional[Sequence[int]] = None,
        semantics: Optional[torch.Tensor] = None,
        on_step: Optional[StepCallback] = None,
    ) -> torch.Tensor:
        """Depth `latent + 0.5`, (B, 1, H, W), of image (B, 3, H, W) RGB in [0, 1].

        `noise` (B, 1, H, W) is the initial latent, so the result is deterministic given it.
        `schedule` overrides the timestep list (default: `timesteps(steps, "exact")`);
        `semantics` skips the encoder when the caller already has its output.
        """
        H, W = image.shape[-2:]
        if H % 16 or W % 16:
            raise ValueError(f"image size {H}x{W} is not a multiple of 16")
        if noise.shape != (image.shape[0], 1, H, W):
            raise ValueError(f"noise shape {tuple(noise.shape)} does not match image {tuple(image.shape)}")
        schedule = list(schedule) if schedule is not None else timesteps(steps)
        if semantics is None:
            semantics = self.sem_encoder(image)
        cond = image - 0.5
        latent = noise
        for i, t in enumerate(schedule):
            s = schedule[i + 1] if i + 1 < len(schedule) else -1
            t_tensor = torch.tensor([t], dtype=torch.int32, device=image.device)
            pred = self.dit(torch.cat([latent, cond], dim=1), semantics, t_tensor)
            latent = euler_step(latent, pred.to(latent.dtype), t, s)
            if on_step is not None:
                on_step(i + 1, len(schedule))
        return latent + 0.5
