"""Whether the loaded networks compute right in bf16 (or fp16) here: their own layers, run both ways.

A speed probe cannot decide precision: on AMX CPUs oneDNN's bf16 convolution returns noise
for the DiT's 4-channel 16x16 patch embedding (relative error 1.06) while every other shape
is right, and a fast wrong answer is the worst outcome. So before a reduced precision is
used, every distinct Linear, Conv and patch-embedding shape of the networks, and the first
block of each kind, runs on a small seeded input in fp32 and in the reduced dtype (weights
held in it, under autocast: exactly as inference runs) and must agree within a bound set by
the dtype's resolution. Results are cached per device (CPU flags or GPU name), torch version
and network layout, so the check costs its few seconds once.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional

import torch
from torch import nn

from ..cache import cache_folder
from .device import autocast, cpu_capabilities
from .dinov2 import Block
from .dit import DiTBlock, grid_positions, rope_tables
from .layers import PatchEmbed
from .moge2_convstack import ResidualConvBlock

#: Unit roundoff of each reduced dtype (8 and 11 significant bits).
UNIT_ROUNDOFF = {torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11}
#: Relative error allowed, in unit roundoffs: one layer rounds its inputs, weights and output
#: (measured 0.7-0.8 u in bf16); a block chains about ten such stages and attention (2-3 u).
LAYER_BOUND_U = 4
BLOCK_BOUND_U = 8
TOKENS_SIDE = 16  # probes run on a 16 x 16 grid of tokens or pixels
CHECK_VERSION = 1  # bump when the check itself changes, so cached verdicts are redone


@dataclass
class Probe:
    """One layer or block to run both ways: its name in the network, what it is, how to feed it."""

    name: str
    what: str
    module: nn.Module
    inputs: Callable[[torch.Generator], tuple]
    block: bool = False

    def bound(self, dtype: torch.dtype) -> float:
        return (BLOCK_BOUND_U if self.block else LAYER_BOUND_U) * UNIT_ROUNDOFF[dtype]


@dataclass
class Verdict:
    """The check's answer: `ok`, and for the worst probe its name, what it is, error and bound."""

    ok: bool
    layer: str
    what: str
    error: float
    bound: float
    probes: int
    cached: bool = False

    def words(self, precision: str) -> str:
        """One clause for a reason: "its bf16 layers agree with fp32 (worst 0.4 %, ...)" or what failed."""
        worst = f"{self.layer} ({self.what}) off by {_percent(self.error)}, bound {_percent(self.bound)}"
        if self.ok:
            return f"all {self.probes} layer shapes and blocks agree with fp32 in {precision} (worst: {worst})"
        return f"{precision} is wrong on this machine at {worst}"


def _percent(value: float) -> str:
    return "not finite" if not math.isfinite(value) else f"{100 * value:.2g} %"


def _randn(generator: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(shape, generator=generator)


def _layer_probe(name: str, module: nn.Module) -> Optional[tuple[tuple, Probe]]:
    """(shape key, probe) of a Linear, Conv or patch embedding; None for other modules."""
    n = TOKENS_SIDE
    if isinstance(module, PatchEmbed):
        weight = module.proj.weight
        key = ("PatchEmbed", *weight.shape)
        what = f"patch embedding {weight.shape[1]}->{weight.shape[0]}, {module.patch_size}x{module.patch_size} patches"
        return key, Probe(name, what, module, lambda g: (_randn(g, 1, weight.shape[1], n * module.patch_size,
                                                                   n * module.patch_size),))
    if isinstance(module, nn.Linear):
        key = ("Linear", module.in_features, module.out_features)
        return key, Probe(name, f"linear {module.in_features}->{module.out_features}", module,
                          lambda g: (_randn(g, 1, n * n, module.in_features),))
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        kind = type(module).__name__
        key = (kind, module.in_channels, module.out_channels, module.kernel_size, module.stride, module.padding,
               module.padding_mode, module.groups)
        what = f"{kind} {module.in_channels}->{module.out_channels}, {module.kernel_size[0]}x{module.kernel_size[1]}"
        return key, Probe(name, what, module, lambda g: (_randn(g, 1, module.in_channels, n, n),))
    return None


def _block_probe(name: str, module: nn.Module) -> Optional[Probe]:
    """A probe of the first block of each kind (DiT, DINOv2, MoGe-2 conv), with inputs of its sizes."""
    n = TOKENS_SIDE
    if isinstance(module, DiTBlock):
        width = module.norm1.normalized_shape[0]
        head_dim = module.attn.q_norm.normalized_shape[0]
        rope = rope_tables(grid_positions(n, n, torch.device("cpu")), head_dim, n)
        return Probe(name, f"DiT block, width {width}", module,
                     lambda g: (_randn(g, 1, n * n, width), _randn(g, 1, width), rope), block=True)
    if isinstance(module, Block):
        width = module.norm1.normalized_shape[0]
        return Probe(name, f"ViT block, width {width}", module, lambda g: (_randn(g, 1, n * n + 1, width),), block=True)
    if isinstance(module, ResidualConvBlock):
        channels = next(m for m in module.modules() if isinstance(m, nn.Conv2d)).in_channels
        return Probe(name, f"residual conv block, {channels} channels", module,
                     lambda g: (_randn(g, 1, channels, n, n),), block=True)
    return None


def probes(networks: Iterable[tuple[str, nn.Module]]) -> list[Probe]:
    """One probe per distinct layer shape and per block kind of the named networks.

    A patch embedding is probed as a whole (its forward is a matmul, not its `proj` conv).
    """
    seen: set = set()
    found = []
    for prefix, network in networks:
        embedded = {id(m.proj) for m in network.modules() if isinstance(m, PatchEmbed)}
        for name, module in network.named_modules():
            if id(module) in embedded:
                continue
            full = f"{prefix}.{name}" if name else prefix
            block = _block_probe(full, module)
            if block is not None:
                if type(module) not in seen:
                    seen.add(type(module))
                    found.append(block)
                continue
            layer = _layer_probe(full, module)
            if layer is not None and layer[0] not in seen:
                seen.add(layer[0])
                found.append(layer[1])
    return found


def _relative_error(low: torch.Tensor, exact: torch.Tensor) -> float:
    low = low.float()
    if not torch.isfinite(low).all():
        return math.inf
    return float((low - exact).norm() / exact.norm().clamp_min(1e-30))


def _held_in(module: nn.Module, dtype: torch.dtype) -> nn.Module:
    """A copy of `module` with its Linear and Conv weights in `dtype`, as the loaders hold them."""
    from .checkpoint import hold_weights  # checkpoint imports the networks this module probes

    return hold_weights(copy.deepcopy(module), dtype)


def run_check(networks: Iterable[tuple[str, nn.Module]], device: torch.device, dtype: torch.dtype) -> Verdict:
    """Every probe of `networks` (fp32 weights, on any device) in fp32 and in `dtype` on `device`.

    The verdict names the probe with the largest error relative to its bound; `ok` when
    every probe is within its bound.
    """
    precision = {torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]
    worst = None
    found = probes(networks)
    with torch.inference_mode():
        for probe in found:
            inputs = probe.inputs(torch.Generator().manual_seed(0))
            inputs = tuple(x.to(device) for x in inputs[:2]) + tuple(
                tuple(t.to(device) for t in x) if isinstance(x, tuple) else x for x in inputs[2:])
            exact_module = copy.deepcopy(probe.module).float().to(device)
            exact = exact_module(*inputs).float()
            del exact_module
            low_module = _held_in(probe.module, dtype).to(device)
            with autocast(device, precision):
                low = low_module(*inputs)
            del low_module
            error, bound = _relative_error(low, exact), probe.bound(dtype)
            if worst is None or error / bound > worst.error / worst.bound:
                worst = Verdict(error <= bound, probe.name, probe.what, error, bound, len(found))
    if worst is None:
        return Verdict(True, "-", "no layers", 0.0, 0.0, 0)
    return worst


# -- the cache ---------------------------------------------------------------------------------


def cache_path() -> Path:
    """The verdicts' file in the product's cache folder (`ppd_core.cache`)."""
    return cache_folder() / "precision.json"


def machine_key(device: torch.device) -> str:
    """What the verdict depends on besides the network: the device's kind and features, torch's version."""
    if device.type == "cuda":
        where = torch.cuda.get_device_name(device)
    else:
        flags = sorted(key for key, value in cpu_capabilities().items() if value is True)
        where = f"{device.type} {' '.join(flags)}"
    return f"{where} | torch {torch.__version__} | check {CHECK_VERSION}"


def network_key(networks: Iterable[tuple[str, nn.Module]]) -> str:
    """A digest of the networks' probes (names and shapes): equal layouts share a verdict."""
    text = "\n".join(f"{probe.name}: {probe.what}" for probe in probes(networks))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _read_cache() -> dict:
    try:
        data = json.loads(cache_path().read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_cache(data: dict) -> None:
    """Atomic, and silent when the cache folder cannot be written (the check then runs again)."""
    path = cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".precision-", suffix=".json")
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(data, stream, indent=1, sort_keys=True)
        os.replace(temporary, path)
    except OSError:
        pass


def check_precision(networks: list[tuple[str, nn.Module]], device: torch.device, dtype: torch.dtype) -> Verdict:
    """`run_check`'s verdict for these networks on `device` in `dtype`, from the cache when it has it."""
    key = f"{machine_key(device)} | {dtype} | {network_key(networks)}"
    cached = _read_cache().get(key)
    if isinstance(cached, dict):
        try:
            return Verdict(**{**cached, "cached": True})
        except TypeError:
            pass
    verdict = run_check(networks, device, dtype)
    data = _read_cache()
    data[key] = {k: v for k, v in verdict.__dict__.items() if k != "cached"}
    _write_cache(data)
    return verdict


# -- the choice ----------------------------------------------------------------------------------

PRECISION_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class PrecisionChoice:
    """The precision a model runs at and why, in words; `warning` when it was asked for but is wrong here."""

    precision: str
    why: str
    warning: str = ""

    def describe(self) -> dict:
        return {"name": self.precision, "why": self.why, **({"warning": self.warning} if self.warning else {})}


def candidates(asked: str, device: torch.device) -> tuple[list[str], str]:
    """(reduced precisions to try in order, why) for `asked` on `device`, before any check.

    "auto": bf16 else fp16 on CUDA; fp16 on Apple GPUs; on a CPU bf16 where it is native and
    measured faster (`device.auto_precision`), else nothing (fp32). An explicit bf16/fp16 is
    the one candidate; fp32 has none.
    """
    from .device import resolve_precision

    chosen, why = resolve_precision(asked, device)
    if chosen == "fp32":
        return [], why
    if asked == "auto" and device.type == "cuda" and chosen == "bf16":
        return ["bf16", "fp16"], why
    return [chosen], why


def choose_precision(asked: str, device: torch.device, networks: list[tuple[str, nn.Module]],
                     ) -> PrecisionChoice:
    """The precision to run `networks` (loaded in fp32) at on `device`, checked for accuracy.

    "auto" takes the first candidate whose check passes, else fp32, saying which layer failed.
    An explicit bf16 or fp16 is kept even where its check fails, with a warning naming the layer.
    """
    tried, why = candidates(asked, device)
    failures = []
    for precision in tried:
        verdict = check_precision(networks, device, PRECISION_DTYPES[precision])
        if verdict.ok:
            return PrecisionChoice(precision, f"{why}; {verdict.words(precision)}")
        if asked != "auto":
            warning = f"{verdict.words(precision)}: results may be wrong; use --precision auto or fp32"
            return PrecisionChoice(precision, f"{why}; {warning}", warning)
        failures.append(verdict.words(precision))
    if failures:
        return PrecisionChoice("fp32", f"{'; '.join(failures)} (checked against fp32), so fp32")
    return PrecisionChoice("fp32", why)


def expected_precision(device: torch.device) -> dict:
    """What "auto" will choose on `device` before a network is loaded: the speed rule, and the
    accuracy verdicts this machine has cached ({"auto", "why"}), for the worker's handshake."""
    tried, why = candidates("auto", device)
    if not tried:
        return {"auto": "fp32", "why": why}
    prefix = machine_key(device)
    for precision in tried:
        dtype_key = f"{prefix} | {PRECISION_DTYPES[precision]} | "
        verdicts = [Verdict(**v) for k, v in _read_cache().items() if k.startswith(dtype_key) and isinstance(v, dict)]
        if not verdicts:
            return {"auto": precision, "why": f"{why}; its layers are checked against fp32 when the networks load"}
        failed = [v for v in verdicts if not v.ok]
        if not failed:
            return {"auto": precision, "why": f"{why}; checked: {verdicts[-1].words(precision)}"}
        why = f"{why}; {failed[-1].words(precision)}"
    return {"auto": "fp32", "why": f"{why}, so fp32"}


def expected_precisions() -> dict[str, dict]:
    """`expected_precision` on each device `list_devices` names: {id: {"auto": precision, "why": reason}}."""
    from .device import list_devices

    return {device["id"]: expected_precision(torch.device(device["id"])) for device in list_devices()}
