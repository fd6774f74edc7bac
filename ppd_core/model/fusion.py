"""Semantic fusion: coarse DiT tokens + encoder semantics -> 2x2 fine tokens each."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


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
