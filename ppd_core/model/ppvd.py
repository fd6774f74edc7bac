"""PixelPerfectVideoDepth: Pi3 semantics + the video DiT + the image model's flow-matching sampler, for one window.

The module tree mirrors the official one (`sem_encoder.*` limited to the Pi3 keys the
semantics use, `dit_video.*`), so its state dict has the released key names. The clip-level
pipeline (windows, references, alignment, streaming) is `ppd_core.video`.
"""

from __future__ import annotations

from typing import Mapping, Optional, Union

import torch
from torch import nn

from .dit_video import DiTVideo, DiTVideoConfig
from .pi3 import Pi3Config, Pi3Semantics
from .ppd import StepCallback, euler_step, timesteps

ConfigLike = Union[Mapping, Pi3Config, DiTVideoConfig, None]


def _config(given: ConfigLike, kind: type, what: str):
    if given is None:
        return kind()
    if isinstance(given, kind):
        return given
    try:
        return kind(**{k: tuple(v) if k == "input_size" else v for k, v in dict(given).items()})
    except TypeError as exc:
        raise ValueError(f"{what} config not understood: {exc}") from None


class PixelPerfectVideoDepth(nn.Module):
    """The video model: `semantics` once per window, then `velocity` at each sampling step.

    `pi3_config` / `dit_config` are dicts with the keys of the vectors' `pi3_tiny.config` and
    `dit_video_tiny.config` (the DiT's also `input_size`), or the config objects; None gives
    the released sizes.
    """

    def __init__(self, pi3_config: ConfigLike = None, dit_config: ConfigLike = None):
        super().__init__()
        pi3 = _config(pi3_config, Pi3Config, "Pi3")
        dit = _config(dit_config, DiTVideoConfig, "DiT_Video")
        if pi3.semantic_dim != dit.semantic_dim:
            raise ValueError(f"Pi3 gives {pi3.semantic_dim}-channel semantics, the DiT expects {dit.semantic_dim}")
        self.sem_encoder = Pi3Semantics(pi3)
        self.dit_video = DiTVideo(dit)

    @property
    def device(self) -> torch.device:
        return self.dit_video.pos_embed.device

    def semantics(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1], in the model's channel order -> (N, H/16 * W/16, 2 * Pi3 width)."""
        return self.sem_encoder(frames)

    def velocity(self, x: torch.Tensor, semantics: torch.Tensor, timestep: Union[int, torch.Tensor]) -> torch.Tensor:
        """One DiT evaluation: x (N, 4, H, W) = [latent, frames - 0.5] -> (N, 1, H, W)."""
        if not isinstance(timestep, torch.Tensor):
            timestep = torch.tensor(timestep, dtype=torch.int32, device=x.device)
        return self.dit_video(x, semantics, timestep)

    @torch.inference_mode()
    def sample_window(self, frames: torch.Tensor, noise: torch.Tensor, steps: int = 4, *,
                      on_step: Optional[StepCallback] = None) -> torch.Tensor:
        """Depth `latent + 0.5`, (N, 1, H, W), of one window's frames (N, 3, H, W), from the initial latent `noise`.

        `on_step(done, total)` is called before the semantics (done = 0) and after each step.
        """
        schedule = timesteps(steps)
        if on_step is not None:
            on_step(0, len(schedule))
        semantics = self.semantics(frames)
        cond = frames - 0.5
        latent = noise
        for i, t in enumerate(schedule):
            s = schedule[i + 1] if i + 1 < len(schedule) else -1
            pred = self.velocity(torch.cat([latent, cond], dim=1), semantics, t)
            latent = euler_step(latent, pred.to(latent.dtype), t, s)
            if on_step is not None:
                on_step(i + 1, len(schedule))
        return latent + 0.5
