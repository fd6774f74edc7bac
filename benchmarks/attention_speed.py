"""Attention speed on this CPU: torch's SDPA against the blocked formulation, fp32 and bf16.

The shape is one DiT attention layer (16 heads of 64) at 3,072 tokens (the 512x384 fine
grid, the 1024x768 coarse grid) and 12,288 tokens (the 1024x768 fine grid). Every
candidate runs once per round, rounds interleaved, and the best round counts, so a busy
machine slows all of them alike; a 2048^3 matmul in each dtype is the yardstick.

    python benchmarks/attention_speed.py --tokens 3072 12288 --rounds 3
    python benchmarks/attention_speed.py --clock thread    # one core's CPU time: steady on a busy machine
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Callable

import torch
import torch.nn.functional as F

from ppd_core.model.attention import blocked_attention

HEADS, HEAD_DIM, MATMUL_SIZE = 16, 64, 2048


def candidates(tokens: int, blocks: list[int]) -> dict[str, tuple[Callable[[], torch.Tensor], int]]:
    """name -> (job, FLOPs) for one round."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, HEADS, tokens, HEAD_DIM, generator=g) for _ in range(3))
    low = [x.bfloat16() for x in (q, k, v)]
    a = torch.randn(MATMUL_SIZE, MATMUL_SIZE, generator=g)
    a_low = a.bfloat16()
    flops = 4 * tokens * tokens * HEAD_DIM * HEADS
    jobs = {
        "matmul 2048^3 fp32": (lambda: a @ a, 2 * MATMUL_SIZE**3),
        "matmul 2048^3 bf16": (lambda: a_low @ a_low, 2 * MATMUL_SIZE**3),
        "SDPA fp32": (lambda: F.scaled_dot_product_attention(q, k, v), flops),
        "SDPA bf16": (lambda: F.scaled_dot_product_attention(*low), flops),
    }
    for block in blocks:
        jobs[f"blocked fp32, {block} queries"] = (lambda b=block: blocked_attention(q, k, v, block=b), flops)
        jobs[f"blocked bf16, {block} queries"] = (lambda b=block: blocked_attention(*low, block=b), flops)
    return jobs


def best_seconds(jobs: dict[str, tuple[Callable[[], torch.Tensor], int]], rounds: int,
                 clock: Callable[[], float]) -> dict[str, float]:
    best = dict.fromkeys(jobs, float("inf"))
    for _ in range(rounds):
        for name, (job, _) in jobs.items():
            start = clock()
            job()
            best[name] = min(best[name], clock() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[3072, 12288])
    parser.add_argument("--blocks", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clock", choices=("wall", "thread"), default="wall",
                        help="thread: one thread's CPU time (runs single-threaded), steady on a busy machine")
    args = parser.parse_args()
    if args.clock == "thread":
        torch.set_num_threads(1)
    clock = time.thread_time if args.clock == "thread" else time.perf_counter
    print(f"{torch.get_num_threads()} threads, {args.clock} clock, load average {os.getloadavg()[0]:.2f} at the start")
    for tokens in args.tokens:
        jobs = candidates(tokens, args.blocks)
        best = best_seconds(jobs, args.rounds, clock)
        bf16_matmul = jobs["matmul 2048^3 bf16"][1] / best["matmul 2048^3 bf16"]
        print(f"\n{HEADS} heads x {tokens} tokens x {HEAD_DIM}, best of {args.rounds} interleaved rounds")
        print(f"{'':34s} {'ms':>9s} {'GFLOP/s':>9s} {'/ bf16 matmul':>14s}")
        for name, (_, flops) in jobs.items():
            rate = flops / best[name]
            print(f"{name:34s} {best[name] * 1e3:9.1f} {rate / 1e9:9.1f} {rate / bf16_matmul:14.2f}")
        g = torch.Generator().manual_seed(1)
        q, k, v = (torch.randn(1, HEADS, tokens, HEAD_DIM, generator=g) for _ in range(3))
        exact = F.scaled_dot_product_attention(q, k, v)
        low = [x.bfloat16() for x in (q, k, v)]
        outputs = {"SDPA bf16": F.scaled_dot_product_attention(*low), "blocked bf16": blocked_attention(*low)}
        for name, out in outputs.items():
            print(f"max |{name} - SDPA fp32| {(out.float() - exact).abs().max().item():.2e}")
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
