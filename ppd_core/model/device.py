"""The devices torch can run on, and choosing the device and the numeric precision ("auto" on each)."""

from __future__ import annotations

import contextlib
import os
import platform
from typing import Optional

import torch

from ..errors import BadInputError
from ..options import DEVICES, PRECISIONS


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


def resolve_precision(precision: str, device: torch.device) -> str:
    """"auto" is bf16 (or fp16 where bf16 is unsupported) on a GPU and fp32 on a CPU."""
    if precision not in PRECISIONS:
        raise BadInputError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "mps":
        return "fp16"
    return "fp32"


def autocast(device: torch.device, precision: str):
    """Context manager running the network at `precision` (fp32 means no autocast)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)
