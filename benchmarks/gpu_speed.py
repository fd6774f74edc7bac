"""Speed of the PPD network on a CUDA GPU: eager against torch.compile, 1024x768, 4 steps.

One command on any CUDA machine:

    python benchmarks/gpu_speed.py

Builds the released-size network (DiT + DINOv2 ViT-L, seeded random weights held in the
precision "auto" picks: bf16, or fp16 without native bf16) and times `DepthModel.predict`
eagerly and with each `compile_network` mode ("blocks", "graphs"), each on a fresh copy of
the same weights. Prints ms per image and per diffusion step (after a warm-up photo), the
first photo's time (the compile time is the difference), the DiT's achieved TFLOP/s as a
fraction of the card's dense bf16 peak (a table of known cards, and a large matmul measured
here), peak VRAM, and how fast each SDPA backend runs the 12,288-token attention.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.model_speed import dit_flops, random_released_model  # noqa: E402
from ppd_core.model.device import DTYPES, auto_precision, compile_network  # noqa: E402
from ppd_core.model.inference import DepthModel, working_size  # noqa: E402

DENSE_BF16_TFLOPS = {  # the vendors' dense (not sparse) bf16/fp16 tensor peaks, fp32 accumulation
    "H200": 989, "H100 SXM": 989, "H100 NVL": 835, "H100 PCIe": 756, "H100": 756, "GH200": 989,
    "B200": 2250, "A100": 312, "A800": 312, "L40S": 362, "L40": 181, "L4": 121, "A10G": 70, "A10": 125,
    "RTX 6000 Ada": 364, "RTX 4090": 165, "RTX 4080": 97, "RTX 3090": 71, "A6000": 155, "V100": 125, "T4": 65,
}
RESOLUTION, STEPS = 1024 * 768, 4


def known_peak(name: str) -> float | None:
    """Dense bf16 TFLOP/s of the first table entry whose name is in the device name (longest names first)."""
    for key in sorted(DENSE_BF16_TFLOPS, key=len, reverse=True):
        if key in name:
            return float(DENSE_BF16_TFLOPS[key])
    return None


def cuda_seconds(job: Callable[[], object], repeats: int) -> float:
    """Best wall time of `repeats` runs of `job`, synchronised."""
    best = float("inf")
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        job()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def matmul_tflops(dtype: torch.dtype, n: int = 8192) -> float:
    a, b = torch.randn(n, n, device="cuda", dtype=dtype), torch.randn(n, n, device="cuda", dtype=dtype)
    return 2 * n**3 / cuda_seconds(lambda: a @ b, 10) / 1e12


def time_mode(mode: str, precision: str, photo: np.ndarray, photos: int) -> dict:
    """First-photo seconds, then best ms per image and per step over `photos` photos, and peak VRAM."""
    torch._dynamo.reset()  # each mode compiles afresh, and the last mode's network is gone with its frame
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    model = random_released_model(DTYPES[precision], "cuda")
    compile_network(model, mode)
    depth_model = DepthModel(model, torch.device("cuda"), precision, compiled=mode)
    marks: dict[str, float] = {}

    def on_progress(stage: str, fraction: float, message: str) -> None:
        # the first diffusion event only: the network reports again before every block
        if stage == "diffusion" and "diffusion" not in marks:
            torch.cuda.synchronize()
            marks["diffusion"] = time.perf_counter()

    def one_photo() -> tuple[float, float]:
        marks.clear()
        torch.cuda.synchronize()
        start = time.perf_counter()
        depth_model.predict(photo, steps=STEPS, resolution=RESOLUTION, on_progress=on_progress)
        torch.cuda.synchronize()
        end = time.perf_counter()
        return end - start, (end - marks["diffusion"]) / STEPS

    first, _ = one_photo()
    runs = [one_photo() for _ in range(photos)]
    result = {"first_s": first, "image_ms": min(r[0] for r in runs) * 1e3, "step_ms": min(r[1] for r in runs) * 1e3,
              "peak_gb": torch.cuda.max_memory_allocated() / 1024**3}
    return result


def sdpa_backends(dtype: torch.dtype, tokens: int = 12288) -> dict[str, float]:
    """ms of one 16-head x 64 attention over `tokens` tokens with each SDPA backend that runs it."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    q, k, v = (torch.randn(1, 16, tokens, 64, device="cuda", dtype=dtype) for _ in range(3))
    timings = {"default": cuda_seconds(lambda: F.scaled_dot_product_attention(q, k, v), 10) * 1e3}
    for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
                    SDPBackend.MATH):
        try:
            with sdpa_kernel(backend):
                timings[backend.name.lower()] = cuda_seconds(lambda: F.scaled_dot_product_attention(q, k, v), 10) * 1e3
        except RuntimeError:  # this backend does not run on this card or dtype
            continue
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=3, help="timed photos per mode after the warm-up photo")
    parser.add_argument("--modes", nargs="+", default=["off", "blocks", "graphs"], choices=["off", "blocks", "graphs"])
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit(f"gpu_speed: no CUDA GPU visible to torch {torch.__version__}; run it on a machine with one")

    device = torch.device("cuda")
    name = torch.cuda.get_device_name(device)
    precision, why = auto_precision(device)
    H, W, _ = working_size(768, 1024, RESOLUTION)
    flops = dit_flops(H, W)
    measured_peak = matmul_tflops(DTYPES[precision])
    table_peak = known_peak(name)
    photo = np.random.default_rng(0).integers(0, 256, (768, 1024, 3), dtype=np.uint8)

    print(f"{name}, torch {torch.__version__}, {precision} ({why}); input {W}x{H}, {STEPS} steps")
    print(f"{precision} matmul 8192^3: {measured_peak:.0f} TFLOP/s; table peak: "
          + (f"{table_peak:.0f} TFLOP/s" if table_peak else "not in the table"))
    print(f"DiT forward {flops / 1e12:.2f} TFLOP\n")
    print(f"{'mode':8s} {'first photo s':>14s} {'ms / image':>11s} {'ms / step':>10s} {'DiT TFLOP/s':>12s} "
          f"{'of matmul':>10s} {'of peak':>8s} {'peak VRAM GB':>13s}")
    results = {}
    for mode in args.modes:
        results[mode] = found = time_mode(mode, precision, photo, args.photos)
        achieved = flops / (found["step_ms"] / 1e3) / 1e12
        of_peak = f"{achieved / table_peak:8.2f}" if table_peak else f"{'-':>8s}"
        print(f"{mode:8s} {found['first_s']:14.1f} {found['image_ms']:11.1f} {found['step_ms']:10.1f} "
              f"{achieved:12.1f} {achieved / measured_peak:10.2f} {of_peak} {found['peak_gb']:13.2f}")
    if "off" in results:
        for mode in (m for m in results if m != "off"):
            compile_s = results[mode]["first_s"] - results[mode]["image_ms"] / 1e3
            speedup = results["off"]["image_ms"] / results[mode]["image_ms"]
            print(f"{mode}: {speedup:.2f}x eager per image after warm-up; "
                  f"its first photo spent ~{compile_s:.0f} s compiling")
    timings = sdpa_backends(DTYPES[precision])
    print("\nSDPA, 16 heads x 12288 tokens x 64: " + ", ".join(f"{k} {v:.2f} ms" for k, v in timings.items()))


if __name__ == "__main__":
    main()
