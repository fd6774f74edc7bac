"""DINOv2 ViT semantic encoder (Depth Anything V2 ViT-L/14 weights) for PPD.

`SemanticEncoder.pretrained` is the ViT, so that a Depth-Anything-V2 file's `pretrained.*`
keys load unchanged; its DPT depth head is never built. MoGe-2 (`moge2.py`) uses the same
ViT with SDPA attention and reads several of its layers (`intermediate_layers`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .attention import HEADS_PER_BLOCK, attention, runs_blocked
from .cancel import poll
from .layers import Mlp, PatchEmbed

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class DinoConfig:
    """Sizes of the DINOv2 ViT semantic encoder (ViT-L/14 when released)."""

    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    patch_size: int = 14
    img_size: int = 518
    mlp_hidden: int = 4096
    interpolate_offset: float = 0.1  # 0: the grid is resized to the exact token grid (Pi3)
    attention: str = "explicit"  # "explicit" as Depth Anything V2 computes it, "sdpa" as MoGe-2 does
    registers: int = 0  # register tokens after CLS, without a position (Pi3's ViT has 4)
    antialias: bool = False  # resize the position grid with antialiasing (Pi3)
    mask_token: bool = True  # the training-only mask token, kept for key parity (Pi3 deletes it)

    @property
    def grid_size(self) -> int:
        """Side of the square grid `pos_embed` was trained on (37 for 518 / 14)."""
        return self.img_size // self.patch_size


class Attention(nn.Module):
    """Self-attention with the arithmetic of the encoder whose weights are loaded.

    "explicit" (Depth Anything V2): softmax((q / sqrt(d)) k^T) v, `HEADS_PER_BLOCK` heads at a
    time so that the (N x N) matrices of a whole 1024x768 image never all exist at once.
    "sdpa" (MoGe-2): F.scaled_dot_product_attention; the two differ by ~1e-6.
    In bf16 on a CPU both take `attention.attention`'s blocked path (the "explicit"
    arithmetic, one block of queries at a time), which is faster there than either.
    """

    def __init__(self, dim: int, num_heads: int, kind: str = "explicit"):
        super().__init__()
        if kind not in ("explicit", "sdpa"):
            raise ValueError(f"unknown attention {kind!r} (use 'explicit' or 'sdpa')")
        self.num_heads = num_heads
        self.kind = kind
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        if self.kind == "sdpa" or runs_blocked(qkv):
            out = attention(*qkv.unbind(0))  # (B, heads, N, head_dim)
        else:
            q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
            outs = []
            for h in range(0, self.num_heads, HEADS_PER_BLOCK):
                poll()
                s = slice(h, h + HEADS_PER_BLOCK)
                attn = (q[:, s] @ k[:, s].transpose(-2, -1)).softmax(dim=-1)
                outs.append(attn @ v[:, s])
            out = torch.cat(outs, dim=1)
        return self.proj(out.transpose(1, 2).reshape(B, N, C))


class LayerScale(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Block(nn.Module):
    def __init__(self, config: DinoConfig):
        super().__init__()
        D = config.embed_dim
        self.norm1 = nn.LayerNorm(D, eps=1e-6)
        self.attn = Attention(D, config.num_heads, config.attention)
        self.ls1 = LayerScale(D)
        self.norm2 = nn.LayerNorm(D, eps=1e-6)
        self.mlp = Mlp(D, config.mlp_hidden, approximate="none")
        self.ls2 = LayerScale(D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class DinoVisionTransformer(nn.Module):
    """ViT with a CLS token, a learned 37x37 position grid (bicubically resized) and optional registers."""

    def __init__(self, config: DinoConfig):
        super().__init__()
        self.config = config
        D = config.embed_dim
        self.patch_embed = PatchEmbed(3, D, config.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        self.pos_embed = nn.Parameter(torch.zeros(1, config.grid_size**2 + 1, D))
        if config.registers:
            self.register_tokens = nn.Parameter(torch.zeros(1, config.registers, D))
        if config.mask_token:
            self.mask_token = nn.Parameter(torch.zeros(1, D))  # training only; kept for key parity
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.depth))
        self.norm = nn.LayerNorm(D, eps=1e-6)

    def position_embedding(self, rows: int, cols: int, square: bool) -> torch.Tensor:
        """(1, 1 + rows * cols, D): CLS position + the grid resized by scale factor (n + offset) / 37,
        or to exactly rows x cols when the offset is 0 (as DINOv2 does)."""
        pe = self.pos_embed.float()
        M = self.config.grid_size
        if rows * cols == M * M and square:
            return self.pos_embed
        D = pe.shape[-1]
        grid = pe[:, 1:].reshape(1, M, M, D).permute(0, 3, 1, 2)
        offset = self.config.interpolate_offset
        if offset:
            resize = {"scale_factor": ((rows + offset) / M, (cols + offset) / M)}
        else:
            resize = {"size": (rows, cols)}
        grid = F.interpolate(grid, mode="bicubic", antialias=self.config.antialias, **resize)
        if grid.shape[-2:] != (rows, cols):
            raise ValueError(f"position grid resized to {tuple(grid.shape[-2:])}, expected {(rows, cols)}")
        grid = grid.permute(0, 2, 3, 1).reshape(1, -1, D)
        return torch.cat([pe[:, :1], grid], dim=1).to(self.pos_embed.dtype)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 3, Hs, Ws) normalised -> (B, 1 + registers + h * w, D): CLS, registers, row-major
        patches; positions added to CLS and patches (before the registers are put in)."""
        Hs, Ws = x.shape[-2:]
        p = self.config.patch_size
        t = self.patch_embed(x)
        t = torch.cat([self.cls_token.expand(t.shape[0], -1, -1), t], dim=1)
        t = t + self.position_embedding(Hs // p, Ws // p, square=Hs == Ws)
        if self.config.registers:
            t = torch.cat([t[:, :1], self.register_tokens.expand(t.shape[0], -1, -1), t[:, 1:]], dim=1)
        return t

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 3, Hs, Ws) normalised -> final-normed patch tokens (B, h * w, D), CLS and registers dropped."""
        t = self.tokens(x)
        for block in self.blocks:
            poll()
            t = block(t)
        return self.norm(t)[:, 1 + self.config.registers:]

    def intermediate_layers(self, x: torch.Tensor, layers: Sequence[int]) -> list[torch.Tensor]:
        """Outputs of blocks `layers` (0-based, ascending), each through the final norm: (B, 1 + registers + h * w, D)."""
        t = self.tokens(x)
        taken = []
        for i, block in enumerate(self.blocks[: max(layers) + 1]):
            poll()
            t = block(t)
            if i in layers:
                taken.append(self.norm(t))
        return taken


class SemanticEncoder(nn.Module):
    """image (B, 3, H, W) in [0, 1] -> semantics (B, H/16 * W/16, D) on the DiT's coarse grid."""

    def __init__(self, config: DinoConfig):
        super().__init__()
        self.pretrained = DinoVisionTransformer(config)

    @property
    def semantic_dim(self) -> int:
        return self.pretrained.config.embed_dim

    def forward_semantics(self, image: torch.Tensor) -> torch.Tensor:
        """The semantic prompt of PixelPerfectDepth; MoGe2 has a method of the same name."""
        return self(image)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        H, W = image.shape[-2:]
        p = self.pretrained.config.patch_size
        mean = torch.tensor(IMAGENET_MEAN, dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
        x = (image - mean) / std  # normalise first, then resize
        x = F.interpolate(x, size=((H // 16) * p, (W // 16) * p), mode="bicubic", align_corners=False)
        return self.pretrained(x)
