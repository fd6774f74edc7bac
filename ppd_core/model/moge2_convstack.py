"""MoGe-2's ConvStack: the multi-level convolutional neck and the points / normal / mask heads.

A ConvStack runs from a coarse level to finer ones, doubling the resolution between levels.
At each level it adds a 1x1-projected input (if that level has one), refines with residual
3x3 conv blocks and emits a 1x1-projected output (or the features themselves). Every 3x3
conv pads by replicating the border, which matters numerically (zero padding moves the
points by ~3).
"""

from __future__ import annotations

from typing import Optional, Sequence, TypeVar, Union

import torch
from torch import nn

from .cancel import poll

T = TypeVar("T")
PerLevel = Union[T, Sequence[T]]  # a scalar means the same at every level

ACTIVATIONS = {
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "silu": nn.SiLU,
    "elu": nn.ELU,
}


def per_level(value: PerLevel, levels: int, name: str) -> list:
    values = list(value) if isinstance(value, (list, tuple)) else [value] * levels
    if len(values) != levels:
        raise ValueError(f"ConvStack {name} has {len(values)} entries for {levels} levels")
    return values


def conv3x3(dim_in: int, dim_out: int) -> nn.Conv2d:
    return nn.Conv2d(dim_in, dim_out, kernel_size=3, padding=1, padding_mode="replicate")


def norm_layer(kind: str, channels: int) -> nn.Module:
    """'none', 'layer_norm' (GroupNorm over C, H, W), 'group_norm' (groups of 32 channels) or 'instance_norm'."""
    if kind == "none":
        return nn.Identity()
    if kind == "layer_norm":
        return nn.GroupNorm(1, channels)
    if kind == "group_norm":
        return nn.GroupNorm(channels // 32, channels)
    if kind == "instance_norm":
        return nn.InstanceNorm2d(channels)
    raise ValueError(f"unknown ConvStack norm {kind!r}")


def upsampler(kind: str, dim_in: int, dim_out: int) -> nn.Sequential:
    """x2 resampler from dim_in to dim_out channels, with the released layer indices."""
    if kind == "conv_transpose":
        return nn.Sequential(nn.ConvTranspose2d(dim_in, dim_out, kernel_size=2, stride=2), conv3x3(dim_out, dim_out))
    if kind in ("bilinear", "nearest"):
        resize = nn.Upsample(scale_factor=2, mode=kind, **({"align_corners": False} if kind == "bilinear" else {}))
        return nn.Sequential(resize, conv3x3(dim_in, dim_out))
    if kind == "pixel_shuffle":
        return nn.Sequential(conv3x3(dim_in, 4 * dim_out), nn.PixelShuffle(2), conv3x3(dim_out, dim_out))
    raise ValueError(f"unknown ConvStack resampler {kind!r}")


class ResidualConvBlock(nn.Module):
    """x + [norm, act, conv3x3, norm, act, conv3x3](x); `layers.{2,5}` hold the convs."""

    def __init__(self, channels: int, hidden: int, in_norm: str, hidden_norm: str, activation: str):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown ConvStack activation {activation!r}")
        act = ACTIVATIONS[activation]
        self.layers = nn.Sequential(
            norm_layer(in_norm, channels),
            act(),
            conv3x3(channels, hidden),
            norm_layer(hidden_norm, hidden),
            act(),
            conv3x3(hidden, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layers(x)


class ConvStack(nn.Module):
    """Multi-level upsampling conv stack, built from MoGe-2's `model_config` entries.

    Level i works at dim_res_blocks[i] channels and 2^i times the first level's resolution.
    dim_in[i] / dim_out[i] of None mean no input at that level / its features as output.
    """

    def __init__(
        self,
        dim_in: PerLevel[Optional[int]],
        dim_res_blocks: Sequence[int],
        dim_out: PerLevel[Optional[int]],
        resamplers: PerLevel[str],
        dim_times_res_block_hidden: PerLevel[float] = 1,
        num_res_blocks: PerLevel[int] = 1,
        res_block_in_norm: str = "layer_norm",
        res_block_hidden_norm: str = "group_norm",
        activation: str = "relu",
    ):
        super().__init__()
        self.levels = levels = len(dim_res_blocks)
        dims = list(dim_res_blocks)
        dim_in = per_level(dim_in, levels, "dim_in")
        dim_out = per_level(dim_out, levels, "dim_out")
        resamplers = per_level(resamplers, levels - 1, "resamplers")
        hidden = per_level(dim_times_res_block_hidden, levels, "dim_times_res_block_hidden")
        num_res_blocks = per_level(num_res_blocks, levels, "num_res_blocks")
        self.input_blocks = nn.ModuleList(
            nn.Identity() if d is None else nn.Conv2d(d, c, kernel_size=1) for d, c in zip(dim_in, dims)
        )
        self.resamplers = nn.ModuleList(upsampler(kind, dims[i], dims[i + 1]) for i, kind in enumerate(resamplers))
        self.res_blocks = nn.ModuleList(
            nn.Sequential(
                *(
                    ResidualConvBlock(c, int(c * h), res_block_in_norm, res_block_hidden_norm, activation)
                    for _ in range(n)
                )
            )
            for c, h, n in zip(dims, hidden, num_res_blocks)
        )
        self.output_blocks = nn.ModuleList(
            nn.Identity() if d is None else nn.Conv2d(c, d, kernel_size=1) for d, c in zip(dim_out, dims)
        )

    def forward(self, inputs: Sequence[Optional[torch.Tensor]]) -> list[torch.Tensor]:
        """One input per level, (B, dim_in[i], 2^i h, 2^i w) or None (never at level 0) -> one output per level."""
        if len(inputs) != self.levels:
            raise ValueError(f"ConvStack got {len(inputs)} inputs for {self.levels} levels")
        outputs = []
        x = None
        for i, features in enumerate(inputs):
            if features is not None:
                features = self.input_blocks[i](features)
                x = features if x is None else x + features
            for block in self.res_blocks[i]:
                poll()
                x = block(x)
            outputs.append(self.output_blocks[i](x))
            if i < self.levels - 1:
                x = self.resamplers[i](x)  # (B, dims[i + 1], 2H, 2W)
        return outputs
