"""Network sizes as plain dataclasses: the released size and anything smaller for tests."""

from __future__ import annotations

from dataclasses import dataclass, field


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


@dataclass(frozen=True)
class DinoConfig:
    """Sizes of the DINOv2 ViT semantic encoder (ViT-L/14 when released)."""

    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    patch_size: int = 14
    img_size: int = 518
    mlp_hidden: int = 4096
    interpolate_offset: float = 0.1

    @property
    def grid_size(self) -> int:
        """Side of the square grid `pos_embed` was trained on (37 for 518 / 14)."""
        return self.img_size // self.patch_size


@dataclass(frozen=True)
class PPDConfig:
    dit: DiTConfig = field(default_factory=DiTConfig)
    encoder: DinoConfig = field(default_factory=DinoConfig)


LARGE = PPDConfig()
