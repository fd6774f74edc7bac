"""The cascade DiT of Pixel-Perfect Depth (SP-DiT): sizes, RoPE, blocks, semantic fusion, final layer.

The first half of the blocks runs on 16-px patches; after it the semantic fusion turns each
coarse token into 2x2 fine tokens and the second half runs on 8-px patches. Each block is
adaLN-Zero conditioned on the diffusion timestep and uses 2-D RoPE with qk-norm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .attention import attention
from .cancel import poll
from .layers import Mlp, PatchEmbed


@dataclass(frozen=True)
class DiTConfig:
    """Sizes of the cascade DiT. `patch_size` is the fine patch; coarse patches are twice it."""

    hidden_size: int = 1024
    depth: int = 24
    num_heads: int = 16
    patch_size: int = 8
    in_channels: int = 4
    out_channels: int = 1
    mlp_hidden: int = 4096
    semantic_dim: int = 1024  # hard-coded 1024 in the released model, whatever the encoder
    rope_base: float = 100.0

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


# -- 2-D rotary position embedding (frequency base 100, rotate-half, rows first) ----------
# The first half of each head vector is rotated by the token's row, the second half by its
# column; within each half the pairs are (j, j + quarter), not interleaved. The tables are
# computed once per token grid and shared by every attention layer of that grid.


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


# -- blocks ---------------------------------------------------------------------------------


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class TimestepEmbedder(nn.Module):
    """Raw integer timestep -> 256-d sinusoid [cos, sin] -> MLP -> (B, D)."""

    frequency_dim = 256

    def __init__(self, hidden_size: int):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(self.frequency_dim, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size)
        )

    @staticmethod
    def sinusoid(t: torch.Tensor, dim: int = 256, max_period: float = 10000.0) -> torch.Tensor:
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(0, half, dtype=torch.float32, device=t.device) / half)
        args = t[:, None].float() * freqs[None]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.sinusoid(t, self.frequency_dim))


class Attention(nn.Module):
    """Multi-head self-attention with per-head LayerNorm on q and k, then 2-D RoPE."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.q_norm = nn.LayerNorm(head_dim, eps=1e-5)
        self.k_norm = nn.LayerNorm(head_dim, eps=1e-5)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, rope: Optional[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """x (B, N, C); `rope` (cos, sin) tables, or None for no rotation (the video DiT, as timm's Attention)."""
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, heads, N, head_dim)
        q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        out = attention(q, k, v)  # (B, heads, N, head_dim)
        return self.proj(out.transpose(1, 2).reshape(B, N, C))


class DiTBlock(nn.Module):
    """adaLN-Zero transformer block: shift/scale/gate for attention and MLP from c."""

    def __init__(self, config: DiTConfig):
        super().__init__()
        D = config.hidden_size
        self.norm1 = nn.LayerNorm(D, eps=1e-6, elementwise_affine=False)
        self.attn = Attention(D, config.num_heads)
        self.norm2 = nn.LayerNorm(D, eps=1e-6, elementwise_affine=False)
        self.mlp = Mlp(D, config.mlp_hidden, approximate="tanh")
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(D, 6 * D))

    def forward(self, x: torch.Tensor, c: torch.Tensor,
                rope: Optional[tuple[torch.Tensor, torch.Tensor]] = None) -> torch.Tensor:
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + gate_msa.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_msa, scale_msa), rope)
        x = x + gate_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))
        return x


class SemanticFusion(nn.Sequential):
    """MLP over [token, L2-normalised semantic] whose 4D output is split into 2x2 sub-tokens.

    A Sequential so that its parameters keep the released names `proj_fusion.{0,2,4}`.
    Coarse token (h, w) owns output channels [k*D:(k+1)*D], k = 2p + q, which become fine
    token (2h + p, 2w + q): sub-row p outer, sub-column q inner, channels innermost.
    """

    def __init__(self, hidden_size: int, semantic_dim: int):
        D = hidden_size
        super().__init__(
            nn.Linear(D + semantic_dim, 4 * D), nn.SiLU(), nn.Linear(4 * D, 4 * D), nn.SiLU(), nn.Linear(4 * D, 4 * D)
        )
        self.hidden_size = hidden_size

    def forward(self, tokens: torch.Tensor, semantics: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        rows, cols = grid
        B, D = tokens.shape[0], self.hidden_size
        if semantics.shape[1] != tokens.shape[1]:
            raise ValueError(f"{semantics.shape[1]} semantic tokens for {tokens.shape[1]} DiT tokens")
        x = super().forward(torch.cat([tokens, F.normalize(semantics, dim=-1)], dim=-1))  # (B, T0, 4D)
        x = x.reshape(B, rows, cols, 2, 2, D)
        x = torch.einsum("nhwpqc->nchpwq", x).reshape(B, D, 2 * rows, 2 * cols)
        return x.flatten(2).transpose(1, 2)  # (B, T1, D), row-major on the fine grid


class FinalLayer(nn.Module):
    """adaLN-modulated projection of each fine token to its p x p x C_out pixels."""

    def __init__(self, hidden_size: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, eps=1e-6, elementwise_affine=False)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


def unpatchify(x: torch.Tensor, rows: int, cols: int, patch_size: int, channels: int) -> torch.Tensor:
    """(B, rows * cols, p * p * C) -> (B, C, rows * p, cols * p): pixel (p h + k // p, p w + k % p) of token (h, w)."""
    p, C = patch_size, channels
    x = x.reshape(x.shape[0], rows, cols, p, p, C)
    x = torch.einsum("nhwpqc->nchpwq", x)
    return x.reshape(x.shape[0], C, rows * p, cols * p)


class DiT(nn.Module):
    """x (B, 4, H, W) = [latent, RGB - 0.5], semantics (B, H/16 * W/16, S), t -> velocity (B, 1, H, W)."""

    def __init__(self, config: DiTConfig):
        super().__init__()
        self.config = config
        D, p = config.hidden_size, config.patch_size
        self.x_embedder = PatchEmbed(config.in_channels, D, 2 * p)
        self.t_embedder = TimestepEmbedder(D)
        self.blocks = nn.ModuleList(DiTBlock(config) for _ in range(config.depth))
        self.proj_fusion = SemanticFusion(D, config.semantic_dim)
        self.final_layer = FinalLayer(D, p, config.out_channels)

    def rope(self, rows: int, cols: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """RoPE (cos, sin) tables of a rows x cols token grid, shared by all blocks on it."""
        positions = grid_positions(rows, cols, device)
        return rope_tables(positions, self.config.head_dim, max(rows, cols), self.config.rope_base)

    def forward(self, x: torch.Tensor, semantics: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[-2:]
        if H % 16 or W % 16:
            raise ValueError(f"DiT input size {H}x{W} is not a multiple of 16")
        if timestep.ndim == 0:
            timestep = timestep[None]
        coarse = (H // 16, W // 16)
        fine = (H // 8, W // 8)
        rope = self.rope(*coarse, x.device)
        x = self.x_embedder(x)  # (B, T0, D)
        c = self.t_embedder(timestep)  # (1 or B, D)
        fuse_after = self.config.depth // 2 - 1
        for i, block in enumerate(self.blocks):
            poll()
            x = block(x, c, rope)
            if i == fuse_after:
                x = self.proj_fusion(x, semantics, coarse)  # (B, T1, D)
                rope = self.rope(*fine, x.device)
        x = self.final_layer(x, c)  # (B, T1, p * p * C)
        return unpatchify(x, *fine, self.config.patch_size, self.config.out_channels)
