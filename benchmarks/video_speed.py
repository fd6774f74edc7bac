"""Speed and peak memory of the video model (PPVD) for one window: frames per second at 512x512, 4 steps.

    python benchmarks/video_speed.py                          # one 16-frame window at 512x512 (a GPU)
    python benchmarks/video_speed.py --compile                # eager, then the blocks compiled (CUDA only)
    python benchmarks/video_speed.py --size 128 --frames 4    # what a CPU can run; extrapolated to 512x512 x 16

Builds the released-size network (Pi3's semantic path + DiT_Video, seeded random weights, the
Linear and Conv weights held in the run's precision) on the best device there is and times
`sample_window`: Pi3 once, then the DiT at each step, after one warm-up window. A window
after the first gives 13 new frames, so frames per second = 13 / seconds per window.

A released window is ~250 TFLOP, tens of minutes on a few CPU cores. With a smaller
`--size` or fewer `--frames` the run measures that window and prints the released window's
time extrapolated part by part (Pi3, DiT step) by the FLOPs of each at both sizes, counted
on the meta device: an estimate (attention grows faster than the rest with size, small
matmuls run less efficiently), marked as such, and peak memory only for the size run.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.model_speed import fill_random  # noqa: E402
from ppd_core.model import PixelPerfectVideoDepth  # noqa: E402
from ppd_core.model.device import DTYPES, MATMUL_LAYERS, autocast, compile_network, cpu_name, resolve_device  # noqa: E402
from ppd_core.model.dinov2 import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from ppd_core.model.dit_video import sincos_position_table  # noqa: E402
from ppd_core.model.pi3 import RopeBlock  # noqa: E402
from ppd_core.video import STRIDE, WINDOW  # noqa: E402

RELEASED_SIZE = 512


def random_video_model(dtype: torch.dtype, device: torch.device) -> PixelPerfectVideoDepth:
    """The released-size video model on `device`, seeded N(0, 0.02) weights, matmul layers held in `dtype`."""
    with torch.device("meta"):
        model = PixelPerfectVideoDepth()
    for module in model.modules():
        if isinstance(module, MATMUL_LAYERS):
            module.to(dtype)
    model = fill_random(model, str(device))
    with torch.no_grad():
        model.dit_video.pos_embed.copy_(sincos_position_table(1024, 32, 32))
        model.sem_encoder.image_mean.copy_(torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        model.sem_encoder.image_std.copy_(torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
    return model


def part_flops(frames: int, size: int) -> tuple[int, int]:
    """(Pi3 semantics, one DiT evaluation) FLOPs of a window, counted on the meta device."""
    with torch.device("meta"):
        model = PixelPerfectVideoDepth()
        images = torch.empty(frames, 3, size, size)
        x = torch.empty(frames, 4, size, size)
        timestep = torch.empty((), dtype=torch.int32)
    with torch.inference_mode():
        with FlopCounterMode(display=False) as pi3:
            semantics = model.semantics(images)
        with FlopCounterMode(display=False) as dit:
            model.velocity(x, semantics, timestep)
    return pi3.get_total_flops(), dit.get_total_flops()


def peak_memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1024**3
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # kB on Linux


def time_window(model: PixelPerfectVideoDepth, frames: int, size: int, steps: int, device: torch.device,
                precision: str) -> dict:
    """Seconds of one window: the whole, Pi3's semantics, and each DiT step."""
    synchronize: Callable[[], None] = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    g = torch.Generator().manual_seed(0)
    images = torch.rand(frames, 3, size, size, generator=g).to(device)
    noise = torch.randn(frames, 1, size, size, generator=g).to(device)
    marks: list[float] = []  # Pi3's end, then each step's

    def mark(*_) -> None:
        synchronize()
        marks.append(time.perf_counter())

    def on_step(done: int, total: int) -> None:
        if done:  # done = 0 comes before Pi3, whose end the hook marks
            mark()

    hook = model.sem_encoder.register_forward_hook(mark)
    synchronize()
    start = time.perf_counter()
    with autocast(device, precision):
        model.sample_window(images, noise, steps, on_step=on_step)
    synchronize()
    hook.remove()
    return {"window": time.perf_counter() - start, "pi3": marks[0] - start,
            "steps": [b - a for a, b in zip(marks, marks[1:])]}


def report(label: str, run: dict, frames: int, size: int, flops: tuple, released: tuple, steps: int) -> None:
    step = sum(run["steps"]) / len(run["steps"])
    print(f"{label}: {run['window']:.2f} s per window of {frames} frames at {size}x{size} "
          f"(Pi3 {run['pi3']:.2f} s, DiT {step:.2f} s per step); "
          f"Pi3 {flops[0] / run['pi3'] / 1e12:.2f} TFLOP/s, DiT {flops[1] / step / 1e12:.2f} TFLOP/s")
    if (frames, size) == (WINDOW, RELEASED_SIZE):
        print(f"  {STRIDE / run['window']:.3f} frames per second ({STRIDE} new frames per window)")
        return
    window = run["pi3"] * released[0] / flops[0] + steps * step * released[1] / flops[1]
    print(f"  EXTRAPOLATED to a released window ({WINDOW} frames, {RELEASED_SIZE}x{RELEASED_SIZE}) by FLOPs, "
          f"not measured: ~{window:.0f} s per window, ~{STRIDE / window:.4f} frames per second, "
          f"~{window / STRIDE:.0f} s per frame")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=RELEASED_SIZE, help="square frame size, a multiple of 16")
    parser.add_argument("--frames", type=int, default=WINDOW, help="frames in the window (at least 3)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", choices=sorted(DTYPES),
                        help="default: bf16 on a CUDA GPU, fp32 elsewhere")
    parser.add_argument("--compile", action="store_true", help="also time the blocks compiled (CUDA only)")
    parser.add_argument("--no-warmup", action="store_true", help="time the first window (a CPU's released window)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    precision = args.precision or ("bf16" if device.type == "cuda" else "fp32")
    flops = part_flops(args.frames, args.size)
    released = part_flops(WINDOW, RELEASED_SIZE)
    cpu = f"{cpu_name()}, {torch.get_num_threads()} threads"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu
    print(f"{name}; torch {torch.__version__}; {precision}; {args.steps} steps")
    print(f"FLOPs per window: Pi3 {flops[0] / 1e12:.3f} T, DiT {flops[1] / 1e12:.3f} T per step "
          f"(released window: Pi3 {released[0] / 1e12:.2f} T, DiT {released[1] / 1e12:.2f} T per step)")
    base = peak_memory_gb(device)
    model = random_video_model(DTYPES[precision], device)
    weights_gb = sum(p.numel() * p.element_size() for p in model.parameters()) / 1024**3
    modes = ["eager"] + (["compiled"] if args.compile and device.type == "cuda" else [])
    if args.compile and device.type != "cuda":
        print("--compile: CUDA only (torch.compile on a CPU needs a C++ compiler); eager only")
    for mode in modes:
        if mode == "compiled":
            compile_network(model, "blocks")  # DINOv2 and DiT blocks; Pi3's decoder blocks below
            for module in model.modules():
                if isinstance(module, RopeBlock):
                    module.compile(dynamic=False)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        if not args.no_warmup:
            time_window(model, args.frames, args.size, args.steps, device, precision)
        run = time_window(model, args.frames, args.size, args.steps, device, precision)
        report(mode, run, args.frames, args.size, flops, released, args.steps)
    peak = peak_memory_gb(device) - (0 if device.type == "cuda" else base)
    where = "allocated on the GPU" if device.type == "cuda" else "RSS above the start"
    print(f"peak memory {peak:.2f} GB {where} ({weights_gb:.2f} GB of weights), at {args.size}x{args.size} "
          f"x {args.frames} frames")


if __name__ == "__main__":
    main()
