"""Pi3's semantic path, the video model's semantic encoder: a DINOv2 ViT with registers, then RoPE
blocks that alternate attention within each frame and across all frames of the window.

Only what PPVD's `forward_semantics` uses is built; Pi3's point, confidence and camera decoders
and heads are not (a file's keys for them are ignored by name, `checkpoint_video`). The outputs
of the last two decoder blocks, concatenated, are the DiT's semantic tokens (2 x width channels).
There is no frame index anywhere: the semantics of a frame do not depend on the frames' order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .cancel import poll
from .dinov2 import IMAGENET_MEAN, IMAGENET_STD, DinoConfig, DinoVisionTransformer, LayerScale
from .dit import Attention, grid_positions, rope_tables
from .layers import Mlp

SEMANTIC_PATCH = 16  # frames are resized so that Pi3's 14-px patches make one token per 16-px DiT patch


@dataclass(frozen=True)
class Pi3Config:
    """Sizes of Pi3's encoder and decoder; the field names are those of the vectors' `pi3_tiny.config`.

    The decoder is as wide as the encoder (Pi3 has no projection between them). The init values
    only set the LayerScale gains of a freshly built network; a loaded file overrides them.
    """

    enc_embed_dim: int = 1024
    enc_depth: int = 24
    enc_heads: int = 16
    dec_depth: int = 36
    dec_heads: int = 16
    mlp_ratio: float = 4
    img_size: int = 518
    patch_size: int = 14
    num_register_tokens: int = 4
    interpolate_antialias: bool = True
    interpolate_offset: float = 0.0
    init_values_encoder: float = 1.0
    init_values_decoder: float = 0.01
    rope_freq: float = 100.0
    decoder_register_tokens: int = 5

    @property
    def semantic_dim(self) -> int:
        """Channels of the semantic tokens: the last two decoder blocks' outputs side by side."""
        return 2 * self.enc_embed_dim

    @property
    def mlp_hidden(self) -> int:
        return int(self.enc_embed_dim * self.mlp_ratio)

    def encoder_config(self) -> DinoConfig:
        """The DINOv2 ViT (ViT-L/14 with 4 registers when released): SDPA attention, no mask token."""
        return DinoConfig(
            embed_dim=self.enc_embed_dim, depth=self.enc_depth, num_heads=self.enc_heads,
            patch_size=self.patch_size, img_size=self.img_size, mlp_hidden=self.mlp_hidden,
            interpolate_offset=self.interpolate_offset, attention="sdpa", registers=self.num_register_tokens,
            antialias=self.interpolate_antialias, mask_token=False,
        )


class RopeBlock(nn.Module):
    """DINOv2-style block (LayerScale, exact GELU) whose attention has qk-norm and 2-D RoPE."""

    def __init__(self, dim: int, num_heads: int, mlp_hidden: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, mlp_hidden, approximate="none")
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x), rope))
        return x + self.ls2(self.mlp(self.norm2(x)))


class Pi3Semantics(nn.Module):
    """frames (N, 3, H, W) in [0, 1] -> semantics (N, H/16 * W/16, 2 * width), N the frames of one window.

    Key names are Pi3's (`encoder.*`, `decoder.*`, `register_token`, `image_mean`, `image_std`).
    """

    def __init__(self, config: Pi3Config = Pi3Config()):
        super().__init__()
        self.config = config
        D = config.enc_embed_dim
        self.encoder = DinoVisionTransformer(config.encoder_config())
        self.decoder = nn.ModuleList(
            RopeBlock(D, config.dec_heads, config.mlp_hidden) for _ in range(config.dec_depth)
        )
        self.register_token = nn.Parameter(torch.zeros(1, 1, config.decoder_register_tokens, D))
        self.register_buffer("image_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("image_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        with torch.no_grad():
            for blocks, gain in ((self.encoder.blocks, config.init_values_encoder),
                                 (self.decoder, config.init_values_decoder)):
                for block in blocks:
                    block.ls1.gamma.fill_(gain)
                    block.ls2.gamma.fill_(gain)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        N, _, H, W = frames.shape
        rows, cols = H // SEMANTIC_PATCH, W // SEMANTIC_PATCH
        p = self.config.patch_size
        # Resize first, then normalise (the image model's DA2 path does the opposite).
        x = F.interpolate(frames, size=(rows * p, cols * p), mode="bilinear", align_corners=False)
        x = (x - self.image_mean) / self.image_std
        return self.decode(self.encoder(x), rows, cols)  # encoder: (N, rows * cols, D)

    def decode(self, patches: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
        """Patch tokens (N, rows * cols, D) -> (N, rows * cols, 2D) through the decoder blocks.

        Even blocks attend within each frame, odd ones over all N frames' tokens at once.
        """
        N, _, D = patches.shape
        R = self.config.decoder_register_tokens
        x = torch.cat([self.register_token[0].expand(N, -1, -1), patches], dim=1)  # (N, T, D), T = R + rows * cols
        T = x.shape[1]
        # Registers sit at (0, 0), patch (r, c) at (r + 1, c + 1); every frame has the same positions.
        positions = torch.cat([torch.zeros(R, 2, dtype=torch.long, device=x.device),
                               grid_positions(rows, cols, x.device) + 1])
        head_dim = D // self.config.dec_heads
        cos, sin = rope_tables(positions, head_dim, max(rows, cols) + 1, self.config.rope_freq)  # (T, head_dim)
        frame_rope = (cos, sin)
        global_rope = (cos.repeat(N, 1), sin.repeat(N, 1))  # (N * T, head_dim)
        last_two = []
        for i, block in enumerate(self.decoder):
            poll()
            if i % 2 == 0:
                x = block(x.reshape(N, T, D), frame_rope)
            else:
                x = block(x.reshape(1, N * T, D), global_rope)
            if i >= len(self.decoder) - 2:
                last_two.append(x.reshape(N, T, D))
        return torch.cat(last_two, dim=-1)[:, R:]
