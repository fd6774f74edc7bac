"""The video DiT of PPVD (DiT_Video): the image model's cascade DiT with reference tokens and temporal blocks.

As in the image DiT, the first half of the blocks runs on 16-px patches, the semantic fusion
turns each coarse token into 2x2 fine tokens, and the second half runs on 8-px patches. What
differs: an absolute 2-D sin-cos position table added once at the input instead of RoPE
(attention has qk-norm but no rotation); from block 18 on, every frame also attends to the
first three frames of its window (the references), pooled 4x4 on the fine grid; before each
of blocks 21-23, a temporal block attends across the window's frames at each token position.
There is no frame index: apart from which frames fill the three reference slots, the frames'
order does not matter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .cancel import poll
from .dit import DiTBlock, DiTConfig, FinalLayer, SemanticFusion, TimestepEmbedder, unpatchify
from .layers import PatchEmbed

RELEASED_DEPTH = 24
REFERENCE_FROM = 18  # blocks from here on also see the reference tokens (literals of the released model)
TEMPORAL_FROM = 21  # temporal block i - 21 runs before spatial block i
REFERENCE_SLOTS = 3  # the first three frames of a window are its references
REFERENCE_POOL = 4  # reference tokens: the fine grid average-pooled 4x4


@dataclass(frozen=True)
class DiTVideoConfig:
    """Sizes of DiT_Video; the field names are those of the vectors' `dit_video_tiny.config`.

    `patch_size` is the fine patch (coarse patches are twice it). `input_size` is the frame
    size (H, W) whose position table the network holds (`pos_embed`); other sizes that are
    multiples of the coarse patch get the same sin-cos formula computed for their grid.
    """

    in_channels: int = 4
    out_channels: int = 1
    hidden_size: int = 1024
    depth: int = RELEASED_DEPTH
    num_heads: int = 16
    patch_size: int = 8
    mlp_ratio: float = 4.0
    semantic_dim: int = 2048
    input_size: tuple[int, int] = (512, 512)

    @property
    def grid(self) -> tuple[int, int]:
        """The coarse token grid of `input_size`."""
        return self.input_size[0] // (2 * self.patch_size), self.input_size[1] // (2 * self.patch_size)

    def block_config(self) -> DiTConfig:
        """The image DiT's sizes, for the blocks and layers the two networks share."""
        return DiTConfig(
            hidden_size=self.hidden_size, depth=self.depth, num_heads=self.num_heads, patch_size=self.patch_size,
            in_channels=self.in_channels, out_channels=self.out_channels,
            mlp_hidden=int(self.hidden_size * self.mlp_ratio), semantic_dim=self.semantic_dim,
        )


def sincos_position_table(dim: int, rows: int, cols: int) -> torch.Tensor:
    """(1, rows * cols, dim) float32 MAE 2-D sin-cos table, tokens row-major.

    Token (r, c) gets [sin(c w_k), cos(c w_k), sin(r w_k), cos(r w_k)], k < dim/4,
    w_k = 10000^(-k / (dim/4)): the first half encodes the column. Computed in float64.
    """
    quarter = dim // 4
    omega = 1.0 / 10000 ** (np.arange(quarter, dtype=np.float64) / quarter)
    row, col = np.meshgrid(np.arange(rows, dtype=np.float64), np.arange(cols, dtype=np.float64), indexing="ij")

    def encode(position: np.ndarray) -> np.ndarray:
        angles = np.outer(position.ravel(), omega)
        return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)

    table = np.concatenate([encode(col), encode(row)], axis=1).astype(np.float32)
    return torch.from_numpy(table)[None]


class DiTVideo(nn.Module):
    """x (N, 4, H, W) = [latent, frames - 0.5], semantics (N, H/16 * W/16, S), t -> velocity (N, 1, H, W).

    The N frames are one window; frames 0-2 are its references.
    """

    def __init__(self, config: DiTVideoConfig = DiTVideoConfig()):
        super().__init__()
        if config.depth != RELEASED_DEPTH:
            raise ValueError(f"the video DiT has {RELEASED_DEPTH} blocks (its reference and temporal blocks "
                             f"start at the fixed blocks {REFERENCE_FROM} and {TEMPORAL_FROM}), not {config.depth}")
        self.config = config
        blocks = config.block_config()
        D, p = config.hidden_size, config.patch_size
        table = sincos_position_table(D, *config.grid).to(torch.get_default_device())  # meta when built there
        self.pos_embed = nn.Parameter(table, requires_grad=False)
        self.x_embedder = PatchEmbed(config.in_channels, D, 2 * p)
        self.t_embedder = TimestepEmbedder(D)
        self.blocks = nn.ModuleList(DiTBlock(blocks) for _ in range(config.depth))
        self.temporal_blocks = nn.ModuleList(DiTBlock(blocks) for _ in range(config.depth - TEMPORAL_FROM))
        self.proj_fusion = SemanticFusion(D, config.semantic_dim)
        self.final_layer = FinalLayer(D, p, config.out_channels)

    def position_table(self, rows: int, cols: int, device: torch.device) -> torch.Tensor:
        """The held `pos_embed` for its own grid, the same sin-cos formula for any other."""
        if (rows, cols) == self.config.grid:
            return self.pos_embed
        return sincos_position_table(self.config.hidden_size, rows, cols).to(device)

    @staticmethod
    def reference_tokens(x: torch.Tensor, fine: tuple[int, int]) -> torch.Tensor:
        """(N, 4L, D) fine tokens -> (N, 3 L/4, D): frames 0, 1, 2 pooled 4x4, in that order, for every frame."""
        N, _, D = x.shape
        refs = x[:REFERENCE_SLOTS].transpose(1, 2).reshape(REFERENCE_SLOTS, D, *fine)
        refs = F.avg_pool2d(refs, REFERENCE_POOL)  # (3, D, rows / 4, cols / 4)
        refs = refs.flatten(2).transpose(1, 2).reshape(1, -1, D)
        return refs.expand(N, -1, -1)

    def forward(self, x: torch.Tensor, semantics: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        N, _, H, W = x.shape
        p = self.config.patch_size
        if H % (2 * p) or W % (2 * p):
            raise ValueError(f"DiT input size {H}x{W} is not a multiple of {2 * p}")
        if N < REFERENCE_SLOTS:
            raise ValueError(f"a window needs at least {REFERENCE_SLOTS} frames (its references), got {N}")
        if timestep.ndim == 0:
            timestep = timestep[None]
        coarse = (H // (2 * p), W // (2 * p))
        fine = (H // p, W // p)
        x = self.x_embedder(x) + self.position_table(*coarse, x.device)  # (N, L, D)
        c = self.t_embedder(timestep)  # (1, D): one timestep for the whole window
        fuse_after = self.config.depth // 2 - 1
        for i, block in enumerate(self.blocks):
            poll()
            if i >= TEMPORAL_FROM:  # batch = token position, sequence = the N frames
                x = self.temporal_blocks[i - TEMPORAL_FROM](x.transpose(0, 1), c).transpose(0, 1)
            if i >= REFERENCE_FROM:
                own = x.shape[1]
                x = block(torch.cat([x, self.reference_tokens(x, fine)], dim=1), c)[:, :own]
            else:
                x = block(x, c)
            if i == fuse_after:
                x = self.proj_fusion(x, semantics, coarse)  # (N, 4L, D)
        x = self.final_layer(x, c)  # (N, 4L, p * p * C)
        return unpatchify(x, *fine, p, self.config.out_channels)
