"""Speed and memory of the PPD network on this machine, fp32 against "auto" (released size, random weights).

Each run is a fresh process that builds the released-size network (DiT + DINOv2 ViT-L) with
the same seeded random weights, held as its precision holds them (Linear and Conv weights
in bf16 under bf16), and runs `DepthModel.predict` on the same photo. Runs alternate fp32,
auto, fp32, auto, ... and the fastest of each counts, so a busy machine slows both alike.
Printed side by side: seconds per image, encoder and per diffusion step, the auto / fp32
speed-up, peak memory (RSS above the process's start) against the run's own weights, and
the DiT's achieved FLOP/s as a ratio to a large matmul in the run's dtype.

    python benchmarks/model_speed.py --resolution 196608 --steps 4    # 512x384
    python benchmarks/model_speed.py --resolution 786432 --steps 1    # 1024x768, per step
    python benchmarks/model_speed.py --clock cpu ...                   # one core's CPU time: steady when busy
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from typing import Callable, TypeVar

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from ppd_core.model import PixelPerfectDepth
from ppd_core.model.device import DTYPES, MATMUL_LAYERS, cpu_name
from ppd_core.model.precision_check import PrecisionChoice, choose_precision, probes
from ppd_core.model.inference import DepthModel, working_size
from ppd_core.options import DEFAULT_RESOLUTION

TARGET_SPEEDUP = {196608: 2.5, 786432: 3.0}  # the auto / fp32 targets at 512x384 and 1024x768 (AMX CPUs)
TARGET_MEMORY = 1.40  # peak memory at most the bf16 weights + 40 %
M = TypeVar("M", bound=torch.nn.Module)


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def fill_random(model: M, device: str = "cpu", seed: int = 0) -> M:
    """A network built on the meta device -> on `device` with N(0, 0.02) weights (eval, no grad).

    Filled parameter by parameter from seeded float32 draws, so the weights are the same
    (rounded) whatever dtype each is held in, and never exist twice in memory. Buffers are
    left uninitialised: the caller sets any the network has.
    """
    model = model.to_empty(device=device)
    g = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.empty(p.shape, device=device).normal_(0.0, 0.02, generator=g))
    return model.eval().requires_grad_(False)


def random_released_model(dtype: torch.dtype, device: str = "cpu") -> PixelPerfectDepth:
    """Released-size network on `device`, small seeded random weights, matmul layers held in `dtype`."""
    with torch.device("meta"):
        model = PixelPerfectDepth()
    for module in model.modules():
        if isinstance(module, MATMUL_LAYERS):
            module.to(dtype)
    return fill_random(model, device)


def matmul_flops_per_second(dtype: torch.dtype, clock: Callable[[], float], n: int = 4096, repeats: int = 3) -> float:
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = clock()
        a @ b
        best = min(best, clock() - start)
    return 2 * n**3 / best


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


def checked_precision(precision: str) -> PrecisionChoice:
    """The product's choice for `precision` on this CPU, with its accuracy check: run on the
    released network's probed layers alone (filled as `fill_random` fills them), not on a
    whole fp32 copy, so the run's peak memory stays that of its own weights."""
    with torch.device("meta"):
        model = PixelPerfectDepth()
    networks = [("ppd", model)]
    for probe in probes(networks):
        fill_random(probe.module)
    return choose_precision(precision, torch.device("cpu"), networks)


def one_run(precision: str, resolution: int, steps: int, clock: Callable[[], float]) -> dict:
    """Build the network at `precision` ("fp32", "auto" or "bf16") and time one photo by `clock`; the figures as a dict."""
    choice = checked_precision(precision)
    chosen, why = choice.precision, choice.why
    base_rss = peak_rss_gb()
    model = random_released_model(DTYPES[chosen])
    weights_gb = sum(p.numel() * p.element_size() for p in model.parameters()) / 1024**3
    photo = np.random.default_rng(0).integers(0, 256, (768, 1024, 3), dtype=np.uint8)
    depth_model = DepthModel(model, torch.device("cpu"), chosen)
    step_times: list[float] = []
    marks = {"start": clock()}

    def on_progress(stage: str, fraction: float, message: str) -> None:
        # The network also reports before every block (its cancellation points) with the
        # message unchanged: a step ends where the message names the next one.
        if stage != "diffusion" or message == marks.get("message"):
            return
        now = clock()
        if "encoded" not in marks:
            marks["encoded"] = now
        else:
            step_times.append(now - marks["last"])
        marks["last"], marks["message"] = now, message

    depth_model.predict(photo, steps=steps, resolution=resolution, on_progress=on_progress)
    return {
        "precision": chosen,
        "why": why,
        "total": clock() - marks["start"],
        "encoder": marks["encoded"] - marks["start"],
        "steps": step_times,
        "peak_gb": peak_rss_gb() - base_rss,
        "weights_gb": weights_gb,
    }


def run_child(precision: str, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--child", precision, "--resolution", str(args.resolution),
               "--steps", str(args.steps), "--threads", str(args.threads), "--clock", args.clock]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=DEFAULT_RESOLUTION, help="target pixel count (default 1024x768)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2,
                        help="runs of each precision, alternating; the fastest counts")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: one thread, timed by its CPU time, which other jobs on a busy machine barely move")
    parser.add_argument("--against", choices=("auto", "bf16"), default="auto",
                        help="what fp32 is compared with: the product's choice, or bf16 as asked (warned if wrong here)")
    parser.add_argument("--child", choices=("fp32", "auto", "bf16"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.clock == "cpu":
        args.threads = 1
    torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.child:
        print(json.dumps(one_run(args.child, args.resolution, args.steps, clock)))
        return

    load_start = os.getloadavg()[0]
    runs: dict[str, list[dict]] = {"fp32": [], args.against: []}
    matmul = {"fp32": 0.0, args.against: 0.0}
    for _ in range(args.repeats):
        for precision in runs:
            runs[precision].append(run_child(precision, args))
            dtype = DTYPES[runs[precision][-1]["precision"]]
            matmul[precision] = max(matmul[precision], matmul_flops_per_second(dtype, clock))
    best = {precision: min(found, key=lambda run: run["total"]) for precision, found in runs.items()}
    H, W, _ = working_size(768, 1024, args.resolution)
    flops = dit_flops(H, W)
    fp32, auto = best["fp32"], best[args.against]

    def row(label: str, value, fmt: str = "{:10.2f}") -> None:
        a, b = value(fp32), value(auto)
        print(f"{label:30s} {fmt.format(a)} {fmt.format(b)}")

    print(f"{cpu_name()}, {args.threads} threads, torch {torch.__version__}; "
          f"{args.against} = {auto['precision']} ({auto['why']})")
    print(f"input {W}x{H}, {args.steps} steps, {args.clock} clock, best of {args.repeats} alternating runs each; "
          f"load average {load_start:.2f} at the start, {os.getloadavg()[0]:.2f} at the end\n")
    print(f"{'':30s} {'fp32':>10s} {auto['precision']:>10s}")
    row("seconds per image", lambda r: r["total"])
    row("  semantic encoder", lambda r: r["encoder"])
    row("  per diffusion step (mean)", lambda r: float(np.mean(r["steps"])))
    row("peak memory above start, GB", lambda r: r["peak_gb"])
    row("weights as held, GB", lambda r: r["weights_gb"])
    row("peak / weights", lambda r: r["peak_gb"] / r["weights_gb"])
    row("DiT GFLOP/s", lambda r: flops / float(np.mean(r["steps"])) / 1e9, "{:10.1f}")
    print(f"{'matmul 4096^3 GFLOP/s':30s} {matmul['fp32'] / 1e9:10.1f} {matmul[args.against] / 1e9:10.1f}")
    print(f"{'DiT / matmul FLOP/s':30s} {flops / np.mean(fp32['steps']) / matmul['fp32']:10.2f} "
          f"{flops / np.mean(auto['steps']) / matmul[args.against]:10.2f}")
    print(f"\nDiT forward {flops / 1e12:.2f} TFLOP")
    speedup = fp32["total"] / auto["total"]
    step_speedup = np.mean(fp32["steps"]) / np.mean(auto["steps"])
    target = TARGET_SPEEDUP.get(args.resolution)
    print(f"{args.against} / fp32 speed-up per image {speedup:.2f}, per step {step_speedup:.2f}"
          + (f" (target >= {target})" if target else ""))
    print(f"{args.against} peak / its weights {auto['peak_gb'] / auto['weights_gb']:.2f} (target <= {TARGET_MEMORY:.2f}); "
          f"peak against fp32's: {auto['peak_gb'] / fp32['peak_gb']:.2f}")


if __name__ == "__main__":
    main()
