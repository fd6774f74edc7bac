"""2-D rotary position embedding of the DiT (frequency base 100, rotate-half, rows first).

The first half of each head vector is rotated by the token's row, the second half by its
column; within each half the pairs are (j, j + quarter), not interleaved. The tables are
computed once per token grid and shared by every attention layer of that grid.
"""

from __future__ import annotations

import torch


def grid_positions(rows: int, cols: int, device: torch.device) -> torch.Tensor:
    """(rows * cols, 2) int64 positions (y, x) of a row-major token grid."""
    return torch.cartesian_prod(torch.arange(rows, device=device), torch.arange(cols, device=device))


def rope_tables(positions: torch.Tensor, head_dim: int, length: int, base: float = 100.0):
    """(cos, sin), each (..., N, head_dim), for integer positions (..., N, 2) below `length`."""
    half = head_dim // 2
    inv_freq = 1.0 / (base ** (torch.arange(0, half, 2, device=positions.device).float() / half))
    angles = torch.outer(torch.arange(length, device=positions.device, dtype=inv_freq.dtype), inv_freq)
    angles = torch.cat((angles, angles), dim=-1)  # (length, half)
    cos, sin = angles.cos(), angles.sin()
    y, x = positions[..., 0], positions[..., 1]
    return torch.cat((cos[y], cos[x]), dim=-1), torch.cat((sin[y], sin[x]), dim=-1)


def rotate_halves(u: torch.Tensor) -> torch.Tensor:
    """Rotate-half applied to each half of the last dimension: [a, b | c, d] -> [-b, a | -d, c]."""
    parts = u.unflatten(-1, (2, 2, u.shape[-1] // 4))
    return torch.cat((-parts[..., 1:, :], parts[..., :1, :]), dim=-2).flatten(-3)


def apply_rope(tokens: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """tokens (B, heads, N, d) rotated by tables (N, d) or (B, 1, N, d)."""
    return tokens * cos.to(tokens.dtype) + rotate_halves(tokens) * sin.to(tokens.dtype)
