"""2-D rotary position embedding of the DiT (frequency base 100, rotate-half, rows first)."""

from __future__ import annotations

import torch
from torch import nn


def grid_positions(rows: int, cols: int, device: torch.device) -> torch.Tensor:
    """(rows * cols, 2) int64 positions (y, x) of a row-major token grid."""
    return torch.cartesian_prod(torch.arange(rows, device=device), torch.arange(cols, device=device))


def _rotate_half(v: torch.Tensor) -> torch.Tensor:
    half = v.shape[-1] // 2
    return torch.cat((-v[..., half:], v[..., :half]), dim=-1)


class RoPE2D(nn.Module):
    """Rotates the first half of each head vector by the row, the second half by the column.

    Holds no parameters or buffers (the released checkpoint has none): the cos/sin tables
    are a plain cache keyed by device, dtype and table length.
    """

    def __init__(self, base: float = 100.0):
        super().__init__()
        self.base = base
        self._tables: dict = {}

    def _cos_sin(self, dim: int, length: int, device: torch.device, dtype: torch.dtype):
        key = (dim, length, device, dtype)
        if key not in self._tables:
            inv_freq = 1.0 / (self.base ** (torch.arange(0, dim, 2, device=device).float() / dim))
            angles = torch.outer(torch.arange(length, device=device, dtype=inv_freq.dtype), inv_freq)
            angles = torch.cat((angles, angles), dim=-1)  # (length, dim)
            self._tables[key] = (angles.cos().to(dtype), angles.sin().to(dtype))
        return self._tables[key]

    def _rotate_1d(self, v: torch.Tensor, pos: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        # v: (B, heads, N, m); pos: (N,) -> tables (N, m) broadcast over batch and heads
        return v * cos[pos] + _rotate_half(v) * sin[pos]

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """tokens (B, heads, N, d); positions (N, 2) or (B, N, 2) int (y, x)."""
        if positions.ndim == 3:
            positions = positions[:, None]  # (B, 1, N, 2): broadcast over heads
        half = tokens.shape[-1] // 2
        cos, sin = self._cos_sin(half, int(positions.max()) + 1, tokens.device, tokens.dtype)
        u_y, u_x = tokens[..., :half], tokens[..., half:]
        return torch.cat(
            (self._rotate_1d(u_y, positions[..., 0], cos, sin), self._rotate_1d(u_x, positions[..., 1], cos, sin)),
            dim=-1,
        )
