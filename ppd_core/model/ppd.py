"""PixelPerfectDepth: semantic encoder + cascade DiT + flow-matching Euler sampler.

The module tree mirrors the released layout (`sem_encoder.pretrained.*`, `dit.*`), so a
state dict of the original implementation loads with strict=True. The MoGe-2-semantics
variant holds a `MoGe2` as `sem_encoder` instead (`sem_encoder.<MoGe key>`, same `dit.*`).
The sampler uses the official integer timestep lists (T = 1000).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable, Optional, Sequence

import torch
from torch import nn

from .dinov2 import DinoConfig, SemanticEncoder
from .dit import DiT, DiTConfig

NUM_TRAIN_STEPS = 1000
StepCallback = Callable[[int, int], None]  # (steps done, steps total); may raise to cancel


@dataclass(frozen=True)
class PPDConfig:
    dit: DiTConfig = field(default_factory=DiTConfig)
    encoder: Optional[DinoConfig] = field(default_factory=DinoConfig)  # None: encoder given to the model (MoGe-2)


LARGE = PPDConfig()


def timesteps(steps: int, variant: str = "exact") -> list[int]:
    """The descending integer timesteps of an S-step run.

    "exact": round-half-even(1000 - i * 1001 / S), device independent; equals the lists the
    official demo uses on a GPU for 4, 10 and 20 steps.
    "official_cpu": what the official code computes with a float32 arange on a CPU, including
    its quirks (20 steps has 499, not 500; some S give S + 1 entries ending in -1).
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if variant == "exact":
        return [round(NUM_TRAIN_STEPS - Fraction(i * (NUM_TRAIN_STEPS + 1), steps)) for i in range(steps)]
    if variant == "official_cpu":
        step = -(NUM_TRAIN_STEPS + 1) / steps
        return torch.arange(NUM_TRAIN_STEPS, -1, step, device="cpu").round().int().tolist()
    raise ValueError(f"unknown timestep variant {variant!r} (use 'exact' or 'official_cpu')")


def euler_step(x_t: torch.Tensor, pred: torch.Tensor, t: int, s: int) -> torch.Tensor:
    """One step from t to s of x_t = (1 - t/T) x_0 + (t/T) x_T given the velocity x_T - x_0.

    s < 0 means the final step: jump to the x_0 estimate. Evaluated in the official
    two-stage form (through x_0 and x_T), which is what the parity vectors hold.
    """
    t_ = torch.tensor(t, dtype=torch.int32, device=x_t.device).reshape(1, 1, 1, 1)
    b_t = t_ / NUM_TRAIN_STEPS
    a_t = 1 - b_t
    x_0 = x_t - b_t * pred
    if s < 0:
        return x_0
    x_T = x_t + a_t * pred
    s_ = torch.tensor(s, dtype=torch.int32, device=x_t.device).reshape(1, 1, 1, 1)
    return (1 - s_ / NUM_TRAIN_STEPS) * x_0 + (s_ / NUM_TRAIN_STEPS) * x_T


class PixelPerfectDepth(nn.Module):
    """Semantic encoder + DiT. The encoder is the DA2 DINOv2 of `config.encoder` unless one is given.

    A given `sem_encoder` (e.g. a `MoGe2`) needs `forward_semantics(image) -> (B, H/16 * W/16, C)`
    and `semantic_dim` C equal to the DiT's.
    """

    def __init__(self, config: PPDConfig = LARGE, sem_encoder: Optional[nn.Module] = None):
        super().__init__()
        self.config = config
        if sem_encoder is None:
            sem_encoder = SemanticEncoder(config.encoder)
        elif sem_encoder.semantic_dim != config.dit.semantic_dim:
            raise ValueError(
                f"the encoder gives {sem_encoder.semantic_dim}-channel semantics, "
                f"the DiT expects {config.dit.semantic_dim}"
            )
        self.sem_encoder = sem_encoder
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
            semantics = self.sem_encoder.forward_semantics(image)
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
