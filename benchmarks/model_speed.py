"""Speed and memory of the PPD network on this machine (released size, random weights).

Prints seconds per image and per diffusion step, peak memory against the two networks'
fp32 weights, and the achieved FLOP/s of the DiT (FLOPs counted on the meta device, time of
the diffusion steps) as a ratio to a large fp32 matmul measured in the same run.

    python benchmarks/model_speed.py --resolution 786432 --steps 4
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from ppd_core.model import PixelPerfectDepth
from ppd_core.model.inference import DepthModel, working_size
from ppd_core.options import DEFAULT_RESOLUTION


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def random_released_model() -> PixelPerfectDepth:
    """Released-size network with small random weights, built without a second copy in memory."""
    with torch.device("meta"):
        model = PixelPerfectDepth()
    model = model.to_empty(device="cpu")
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.02, generator=g)
    return model.eval().requires_grad_(False)


def matmul_flops_per_second(n: int = 4096, repeats: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def dit_flops(H: int, W: int) -> int:
    """FLOPs of one DiT forward at H x W, counted on the meta device (no compute, no memory)."""
    with torch.device("meta"):
        dit = PixelPerfectDepth().dit
        x = torch.empty(1, 4, H, W)
        sem = torch.empty(1, (H // 16) * (W // 16), dit.config.semantic_dim)
        t = torch.empty(1, dtype=torch.int32)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        dit(x, sem, t)
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=DEFAULT_RESOLUTION, help="target pixel count (default 1024x768)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    matmul_before = matmul_flops_per_second()
    base_rss = peak_rss_gb()
    model = random_released_model()
    weights_gb = sum(p.numel() * 4 for p in model.parameters()) / 1024**3
    H, W, _ = working_size(768, 1024, args.resolution)
    photo = np.random.default_rng(0).integers(0, 256, (768, 1024, 3), dtype=np.uint8)
    depth_model = DepthModel(model, torch.device("cpu"), "fp32")

    step_times: list[float] = []
    marks = {"start": time.perf_counter()}

    def on_progress(stage: str, fraction: float, message: str) -> None:
        now = time.perf_counter()
        if stage == "diffusion" and fraction == 0:
            marks["encoded"] = now
        elif stage == "diffusion":
            step_times.append(now - marks.get("last", marks["encoded"]))
        marks["last"] = now

    depth_model.predict(photo, steps=args.steps, resolution=args.resolution, on_progress=on_progress)
    total = time.perf_counter() - marks["start"]
    peak = peak_rss_gb() - base_rss

    # The machine's pace can drift during a long run: compare against the faster of two measurements.
    matmul = max(matmul_before, matmul_flops_per_second())
    flops = dit_flops(H, W)
    achieved = flops / float(np.mean(step_times))  # one DiT forward per step; the Euler update is negligible

    print(f"input {W}x{H}, {args.steps} steps, {args.threads} threads, fp32 on the CPU")
    print(f"seconds per image            {total:9.2f}")
    print(f"  semantic encoder           {marks['encoded'] - marks['start']:9.2f}")
    print(f"  per diffusion step (mean)  {np.mean(step_times):9.2f}")
    print(f"peak memory above start      {peak:9.2f} GB")
    print(f"fp32 weights of both nets    {weights_gb:9.2f} GB   ratio {peak / weights_gb:.2f} (target <= 1.30)")
    print(f"DiT forward                  {flops / 1e12:9.2f} TFLOP at {achieved / 1e9:.1f} GFLOP/s")
    print(f"fp32 matmul 4096^3           {matmul / 1e9:9.1f} GFLOP/s (best of before and after)")
    print(f"DiT / matmul FLOP/s ratio    {achieved / matmul:9.2f}   (target >= 0.60)")


if __name__ == "__main__":
    main()
