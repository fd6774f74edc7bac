"""The devices torch can run on; choosing the device, the numeric precision ("auto" on each) and compilation."""

from __future__ import annotations

import contextlib
import functools
import math
import os
import platform
import time
from typing import Mapping, Optional

import torch
from torch import nn

from ..errors import BadInputError
from ..options import DEVICES, PRECISIONS
from .dinov2 import Block
from .dit import DiT, DiTBlock

MATMUL_LAYERS = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)
COMPILE_MODES = ("off", "blocks", "graphs")


def system_memory_gb() -> Optional[float]:
    """Total RAM in GiB, or None where the platform does not say."""
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 2)
    except (AttributeError, ValueError, OSError):
        return None


def cpu_name() -> str:
    """A readable processor name (the model name on Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "CPU"


def list_devices() -> list:
    """The devices torch can run on, best first: CUDA GPUs, Apple MPS, then the CPU."""
    devices = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        memory_gb = round(props.total_memory / 2**30, 2)
        devices.append({"id": f"cuda:{index}", "name": props.name, "type": "cuda", "memory_gb": memory_gb})
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append({"id": "mps", "name": "Apple GPU (MPS)", "type": "mps", "memory_gb": system_memory_gb()})
    devices.append({"id": "cpu", "name": cpu_name(), "type": "cpu", "memory_gb": system_memory_gb()})
    return devices


def resolve_device(device: str = "auto") -> torch.device:
    """"auto" picks cuda, then mps, then cpu; an explicit device that is absent is an error."""
    name = str(device).lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind = name.split(":")[0]
    if kind not in DEVICES:
        raise BadInputError(f"unknown device {device!r}: use one of {', '.join(DEVICES)}")
    if kind == "cuda" and not torch.cuda.is_available():
        raise BadInputError("device 'cuda' was asked for, but this torch has no CUDA GPU available")
    if kind == "mps" and not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
        raise BadInputError("device 'mps' was asked for, but this machine has no Apple GPU available")
    return torch.device(name)


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
CPU_BF16_FEATURES = (("amx_bf16", "AMX-BF16"), ("avx512_bf16", "AVX512_BF16"))  # torch.cpu capability -> name


def cpu_capabilities() -> Mapping[str, object]:
    """What the processor can do, as torch's own cpuinfo probe reports it (the one its kernels use)."""
    probe = getattr(torch.cpu, "get_capabilities", None)
    if probe is not None:
        return probe()
    # torch before get_capabilities: the private probes of the same data that its inductor uses
    # (every CPU with AMX tiles so far has AMX-BF16)
    return {key: bool(getattr(torch.cpu, name, lambda: False)())
            for key, name in (("avx512_bf16", "_is_avx512_bf16_supported"), ("amx_bf16", "_is_amx_tile_supported"))}


def cpu_bf16_feature() -> Optional[str]:
    """The instruction set that gives this CPU native bf16 arithmetic (AMX-BF16, AVX512_BF16), or None.

    Without one, oneDNN converts bf16 to fp32 and gains nothing; with one it may still not
    pay (`cpu_bf16_speedup`).
    """
    capabilities = cpu_capabilities()
    return next((name for key, name in CPU_BF16_FEATURES if capabilities.get(key)), None)


#: "auto" runs bf16 on a CPU only where `cpu_bf16_speedup` measures at least this.
BF16_MIN_SPEEDUP = 1.3


@functools.lru_cache(maxsize=1)
def cpu_bf16_speedup() -> float:
    """How many times faster this CPU multiplies 1024x1024 matrices in bf16 than in fp32
    (best of 3 interleaved rounds after a warm-up; about 0.1 s, once per process).

    Native bf16 instructions do not always pay: two Zen 4 cores run bf16 matmuls 2.3-2.6x
    as fast as fp32 (their fp32 FMAs are half-width), while two cores of an Intel Xeon with
    AVX512_BF16 but no AMX ran them at 0.5x (its bf16 dot products issue on one port, its
    fp32 FMAs on two). Only a measurement tells the two apart.
    """
    fp32 = torch.randn(1024, 1024, generator=torch.Generator().manual_seed(0))
    best = {torch.float32: math.inf, torch.bfloat16: math.inf}
    with torch.no_grad():
        operands = (fp32, fp32.to(torch.bfloat16))
        for matrix in operands:
            matrix @ matrix  # oneDNN builds its kernel on first use
        for _ in range(3):
            for matrix in operands:
                start = time.perf_counter()
                matrix @ matrix
                best[matrix.dtype] = min(best[matrix.dtype], time.perf_counter() - start)
    return best[torch.float32] / best[torch.bfloat16]


def auto_precision(device: torch.device) -> tuple[str, str]:
    """(precision, why) that "auto" chooses on `device`: bf16 where it is native (and, on a
    CPU, measured faster than fp32), else fp16 on a GPU, fp32 on a CPU."""
    if device.type == "cuda":
        with torch.cuda.device(device):
            if torch.cuda.is_bf16_supported(including_emulation=False):
                return "bf16", "the GPU has bf16"
        return "fp16", "the GPU has no native bf16"
    if device.type == "mps":
        return "fp16", "Apple GPUs run fp16"
    feature = cpu_bf16_feature()
    if feature is None:
        return "fp32", "the CPU has no native bf16 arithmetic (AVX512_BF16 or AMX)"
    speedup = cpu_bf16_speedup()
    if speedup >= BF16_MIN_SPEEDUP:
        return "bf16", f"the CPU has {feature} and runs bf16 matmuls {speedup:.1f}x as fast as fp32"
    return "fp32", f"the CPU has {feature}, but runs bf16 matmuls only {speedup:.1f}x as fast as fp32"


def resolve_precision(precision: str, device: torch.device) -> tuple[str, str]:
    """(precision, why) to run: the one asked for ("as asked"), or `auto_precision`'s choice for "auto"."""
    if precision not in PRECISIONS:
        raise BadInputError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    return auto_precision(device) if precision == "auto" else (precision, "as asked")


def autocast(device: torch.device, precision: str):
    """Context manager running the network at `precision` (fp32 means no autocast).

    With reduced precision the matmul layers' weights are held in its dtype
    (`autocast_parameters`), so autocast has nothing to cast but activations.
    """
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision])


def autocast_parameters(model: nn.Module) -> set[str]:
    """Names of the parameters autocast casts to bf16/fp16: those of the Linear and Conv layers.

    Holding exactly these in the reduced dtype halves the weights' memory and changes no
    result; norms, LayerScale and embeddings stay fp32.
    """
    return {
        f"{module_name}.{name}" if module_name else name
        for module_name, module in model.named_modules()
        if isinstance(module, MATMUL_LAYERS)
        for name, _ in module.named_parameters(recurse=False)
    }


def compile_mode(requested: Optional[str], device: torch.device) -> str:
    """The `compile_network` mode: `requested`, else $PPD_COMPILE, else "off"; always "off" off CUDA.

    On a CPU torch.compile needs a C++ compiler at run time, which most users lack, so it
    stays off there; on a GPU it is opt-in until measured there (benchmarks/gpu_speed.py).
    """
    mode = (requested or os.environ.get("PPD_COMPILE") or "off").lower()
    if mode not in COMPILE_MODES:
        raise BadInputError(f"unknown compile mode {mode!r}: use one of {', '.join(COMPILE_MODES)}")
    return mode if device.type == "cuda" else "off"


def compile_network(network: nn.Module, mode: str) -> None:
    """Compile a network for a CUDA GPU in place; the first photo of each size pays the compile time.

    "blocks": `torch.compile` of each repeated transformer block (the DiT's and DINOv2's),
    which compiles one graph per block kind and token grid, not 48 (regional compilation;
    torch >= 2.5, whose dynamo shares a graph between instances of a module class).
    "graphs": the DINOv2 blocks likewise and the whole DiT forward in "reduce-overhead"
    mode, which replays each step of a fixed size as CUDA graphs.
    """
    if mode == "off":
        return
    repeated = (Block,) if mode == "graphs" else (Block, DiTBlock)
    for module in network.modules():
        if isinstance(module, repeated):
            module.compile(dynamic=False)
    if mode == "graphs" and isinstance(getattr(network, "dit", None), DiT):
        network.dit.compile(mode="reduce-overhead", dynamic=False)
