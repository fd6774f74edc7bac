"""Scaled dot-product attention for the DiT, DINOv2 and MoGe-2: torch's SDPA, or blocked bf16 on a CPU.

In fp32, and on any GPU, attention is `F.scaled_dot_product_attention` as the reference
computes it. In bf16 on a CPU, torch's SDPA kernel runs no faster than in fp32 (0.38 of a
bf16 matmul's FLOP/s on an AVX512_BF16 EPYC, without AMX), so there the queries are taken
a block at a time: the block's scores against all keys are one bf16 matmul, the softmax
is exact over those keys (torch's bf16 softmax keeps its max and sum in fp32), and a
second bf16 matmul applies it to the values: 0.55-0.65 of a bf16 matmul, ~1.5x SDPA.
`benchmarks/attention_speed.py` measures both; the figures are in docs/performance.md.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .cancel import poll, polling

# Heads per matmul, here and in DINOv2's explicit attention: with 256 queries, 4 x 256 x 12,288
# bf16 scores (25 MB).
HEADS_PER_BLOCK = 4
# Per core within 5-10 % of the fastest measured (1 head x 512 queries), in half the ops, each of
# which waits for every thread (a thread that lost its core stalls them all).
QUERY_BLOCK = 256


def runs_blocked(q: torch.Tensor) -> bool:
    """Whether attention on `q` takes the blocked path: bf16 on a CPU."""
    return q.device.type == "cpu" and q.dtype == torch.bfloat16


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v of (B, heads, N, d) tensors.

    On a CPU with a cancel check set (`cancel.cancel_points`), SDPA runs `HEADS_PER_BLOCK`
    heads at a time with a cancellation point between (the same numbers, bit for bit: each
    head is computed alone either way); one fine-grid attention is seconds long there.
    """
    if runs_blocked(q):
        return blocked_attention(q, k, v)
    if q.device.type == "cpu" and polling():
        outs = []
        for first in range(0, q.shape[1], HEADS_PER_BLOCK):
            poll()
            heads = slice(first, first + HEADS_PER_BLOCK)
            outs.append(F.scaled_dot_product_attention(q[:, heads], k[:, heads], v[:, heads]))
        return torch.cat(outs, dim=1)
    return F.scaled_dot_product_attention(q, k, v)


def blocked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block: int = QUERY_BLOCK) -> torch.Tensor:
    """Attention `HEADS_PER_BLOCK` heads and `block` queries at a time: never more than that many rows of scores.

    q (B, heads, N, d), k and v (B, heads, M, d) -> (B, heads, N, d) in q's dtype. The scores
    go into one buffer reused by every block and are softmaxed in place: a fresh tensor of
    several MB per block costs page faults that doubled the time of those ops.
    """
    B, H, N, d = q.shape
    M = k.shape[-2]
    scale = d**-0.5  # 1/8 at d = 64: exact in bf16
    q, k, v = (x.flatten(0, 1) for x in (q, k, v))  # (BH, N or M, d), views of the caller's tensors
    out = q.new_empty(B * H, N, d)
    scores = q.new_empty(min(HEADS_PER_BLOCK, B * H), min(block, N), M)
    for first in range(0, B * H, HEADS_PER_BLOCK):
        poll()
        last = min(first + HEADS_PER_BLOCK, B * H)
        # Contiguous copies of this group only: oneDNN's bf16 matmul runs strided views (q, k, v
        # straight from the qkv projection) 2x slower, and k^T is faster laid out as such.
        queries = (q[first:last] * scale).contiguous()
        keys_t = k[first:last].transpose(1, 2).contiguous()  # (heads, d, M)
        values = v[first:last].contiguous()
        for start in range(0, N, block):
            stop = min(start + block, N)
            rows = scores[: last - first, : stop - start]  # (heads, queries, M)
            torch.matmul(queries[:, start:stop], keys_t, out=rows)
            torch.softmax(rows, dim=-1, out=rows)
            torch.matmul(rows, values, out=out[first:last, start:stop])
    return out.unflatten(0, (B, H))
