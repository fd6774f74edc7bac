"""Flow-matching Euler sampler with the official integer timestep lists (T = 1000)."""

from __future__ import annotations

from fractions import Fraction

import torch

NUM_TRAIN_STEPS = 1000


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
