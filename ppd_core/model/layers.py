"""Building blocks shared by the DiT and the DINOv2 encoder."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PatchEmbed(nn.Module):
    """Patchify: (B, C, H, W) -> (B, H/p * W/p, D), tokens row-major; a trailing partial patch is dropped.

    The weights are a stride-p convolution's (`proj`, the released keys), but the forward is
    one matmul over the unfolded patches: oneDNN's bf16 convolution returns noise for some
    of these shapes on AMX CPUs (4 or 8 input channels, 16x16 kernel: relative error 1.06),
    while its bf16 matmul is right on every CPU; the matmul is also 10-30 % faster than the
    convolution in fp32 and bf16 (measured on a Xeon with AVX512_BF16, no AMX).
    """

    def __init__(self, in_channels: int, embed_dim: int, patch_size: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.patch_size = patch_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        p = self.patch_size
        rows, cols = H // p, W // p
        x = x[..., : rows * p, : cols * p].reshape(B, C, rows, p, cols, p)
        patches = x.permute(0, 2, 4, 1, 3, 5).reshape(B, rows * cols, C * p * p)  # (c, i, j) as the kernel
        weight = self.proj.weight.reshape(self.proj.out_channels, C * p * p)
        return F.linear(patches, weight, self.proj.bias)


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2; the DiT uses the tanh approximation, DINOv2 the exact (erf) GELU."""

    def __init__(self, dim: int, hidden: int, approximate: str):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.approximate = approximate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate=self.approximate))
