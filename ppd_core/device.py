"""Choosing the torch device and the numeric precision ("auto" on each)."""

from __future__ import annotations

import contextlib

import torch

from .errors import BadInputError

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


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
