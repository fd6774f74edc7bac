"""The sizes a checkpoint declares, checked against sane limits before any network is built.

PPD and Depth Anything V2 files are sized by their tensors' shapes, a MoGe-2 `model.pt` by
its `model_config`. A damaged or hostile file can ask for thousands of blocks (minutes and
gigabytes of modules before the key check refuses them) or a token budget that needs
terabytes at the first photo. Every size is checked here first, against limits a few times
the largest released model's, and a MoGe-2 config's block counts against its own state
dict; only then is the network built on the meta device, where `checkpoint._check_against`
compares every key and shape.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from ..errors import CheckpointError
from .dinov2 import DinoConfig
from .dit import DiTConfig
from .moge2 import backbone_config

MAX_BLOCKS = 64
"""Transformer blocks of one network (24 released)."""
MAX_WIDTH = 8192
"""Channels of any token, feature map or layer (1024 released)."""
MAX_PATCH = 64
"""Pixels per patch side (8/16 and 14 released)."""
MAX_POSITION_GRID = 256
"""Side of the learned position grid (37 released)."""
MAX_LEVELS = 6
"""Levels of a MoGe-2 ConvStack, each twice the resolution of the last (5 released)."""
MAX_RES_BLOCKS = 16
"""Residual blocks per ConvStack level (at most 2 released)."""
MAX_HIDDEN_FACTOR = 8
"""Hidden width of a residual block per channel (1 released)."""
MAX_TOKENS = 10_000
"""MoGe-2's token budget (3600 released): attention grows with its square."""
CONFIG_KEYS = ("encoder", "neck", "points_head", "mask_head", "scale_head", "normal_head", "remap_output",
               "num_tokens_range")
STACKS = ("neck", "points_head", "mask_head", "normal_head")


def _refuse(path: Path, problem: str) -> CheckpointError:
    return CheckpointError(f"{path}: {problem}; refusing to build the network")


def _whole(value: Any, name: str, low: int, high: int, path: Path) -> int:
    """`value` as an int in [low, high] (bools are not sizes), else CheckpointError."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise _refuse(path, f"{name} is {value!r}, not a whole number")
    if not low <= value <= high:
        raise _refuse(path, f"{name} is {value}, outside {low}..{high}")
    return value


def check_dit_config(config: DiTConfig, path: Path) -> DiTConfig:
    """A DiT's sizes (read off its tensors) within the limits and able to run: 4 input
    channels (latent + RGB), heads that split the width into RoPE's quarters."""
    _whole(config.depth, "the DiT's block count", 2, MAX_BLOCKS, path)
    _whole(config.hidden_size, "the DiT's width", 1, MAX_WIDTH, path)
    _whole(config.num_heads, "the DiT's head count", 1, config.hidden_size, path)
    _whole(config.patch_size, "the DiT's patch size", 1, MAX_PATCH // 2, path)
    _whole(config.in_channels, "the DiT's input channels", 4, 4, path)
    _whole(config.out_channels, "the DiT's output channels", 1, 1, path)
    _whole(config.mlp_hidden, "the DiT's MLP width", 1, 4 * MAX_WIDTH, path)
    _whole(config.semantic_dim, "the DiT's semantic width", 1, MAX_WIDTH, path)
    if config.hidden_size % config.num_heads or config.head_dim % 4:
        raise _refuse(path, f"a width of {config.hidden_size} does not split into {config.num_heads} heads "
                            f"of a multiple of 4 channels")
    return config


def check_dino_config(config: DinoConfig, path: Path, what: str = "the encoder") -> DinoConfig:
    """A DINOv2 ViT's sizes within the limits."""
    _whole(config.depth, f"{what}'s block count", 1, MAX_BLOCKS, path)
    _whole(config.embed_dim, f"{what}'s width", 1, MAX_WIDTH, path)
    _whole(config.num_heads, f"{what}'s head count", 1, config.embed_dim, path)
    _whole(config.patch_size, f"{what}'s patch size", 1, MAX_PATCH, path)
    _whole(config.img_size // config.patch_size, f"{what}'s position grid", 1, MAX_POSITION_GRID, path)
    _whole(config.mlp_hidden, f"{what}'s MLP width", 1, 4 * MAX_WIDTH, path)
    if config.embed_dim % config.num_heads:
        raise _refuse(path, f"{what}'s width {config.embed_dim} does not split into {config.num_heads} heads")
    return config


def _blocks_in(state: Mapping[str, torch.Tensor], prefix: str) -> int:
    """How many `<prefix><n>.` entries (blocks, residual blocks) the state dict holds."""
    return len({key[len(prefix):].split(".", 1)[0] for key in state if key.startswith(prefix)})


def _sizes_list(value: Any, name: str, length: int, path: Path, low: int, high: int, optional: bool = False) -> list:
    """A per-level entry (a scalar means every level) as a list of whole numbers (or None when `optional`)."""
    values = list(value) if isinstance(value, (list, tuple)) else [value] * length
    if len(values) != length:
        raise _refuse(path, f"{name} has {len(values)} entries for {length} levels")
    return [None if optional and v is None else _whole(v, name, low, high, path) for v in values]


def _check_stack(stack: Any, name: str, state: Mapping[str, torch.Tensor], path: Path) -> None:
    """A ConvStack entry: level count, widths and residual blocks in the limits, and as many
    residual blocks per level as the state dict holds."""
    if not isinstance(stack, Mapping):
        raise _refuse(path, f"model_config['{name}'] is not a mapping")
    dims = stack.get("dim_res_blocks")
    if not isinstance(dims, (list, tuple)) or not 1 <= len(dims) <= MAX_LEVELS:
        raise _refuse(path, f"{name}.dim_res_blocks must list 1..{MAX_LEVELS} level widths")
    levels = len(dims)
    _sizes_list(dims, f"{name}.dim_res_blocks", levels, path, 1, MAX_WIDTH)
    _sizes_list(stack.get("dim_in"), f"{name}.dim_in", levels, path, 1, MAX_WIDTH, optional=True)
    _sizes_list(stack.get("dim_out"), f"{name}.dim_out", levels, path, 1, MAX_WIDTH, optional=True)
    counts = _sizes_list(stack.get("num_res_blocks", 1), f"{name}.num_res_blocks", levels, path, 0, MAX_RES_BLOCKS)
    factors = stack.get("dim_times_res_block_hidden", 1)
    for factor in factors if isinstance(factors, (list, tuple)) else [factors]:
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 < factor <= MAX_HIDDEN_FACTOR:
            raise _refuse(path, f"{name}.dim_times_res_block_hidden is {factor!r}, outside 0..{MAX_HIDDEN_FACTOR}")
    for level, count in enumerate(counts):
        held = _blocks_in(state, f"{name}.res_blocks.{level}.")
        if held != count:
            raise _refuse(path, f"{name} level {level} asks for {count} residual blocks, the weights hold {held}")


def check_moge2_config(config: Mapping[str, Any], state: Mapping[str, torch.Tensor], path: Path) -> None:
    """A MoGe-2 `model_config` within the limits and agreeing with its state dict's block
    counts, before `MoGe2(**config)` builds anything."""
    unknown = sorted(set(map(str, config)) - set(CONFIG_KEYS))
    if unknown:
        raise _refuse(path, f"model_config has entries no MoGe-2 has: {', '.join(unknown)}")
    encoder = config.get("encoder")
    if not isinstance(encoder, Mapping):
        raise _refuse(path, "model_config['encoder'] is not a mapping")
    try:
        vit = backbone_config(encoder.get("backbone"))
    except (TypeError, ValueError, KeyError) as error:
        raise _refuse(path, f"the encoder's backbone is not understood ({error})") from None
    check_dino_config(vit, path, "MoGe-2's encoder")
    held = _blocks_in(state, "encoder.backbone.blocks.")
    if held != vit.depth:
        raise _refuse(path, f"the encoder asks for {vit.depth} blocks, the weights hold {held}")
    layers = encoder.get("intermediate_layers")
    if isinstance(layers, (list, tuple)) and 0 < len(layers) <= vit.depth:  # block indices
        for layer in layers:
            _whole(layer, "encoder.intermediate_layers", 0, vit.depth - 1, path)
    else:  # the last n blocks
        _whole(layers, "encoder.intermediate_layers", 1, vit.depth, path)
    _whole(encoder.get("dim_out"), "encoder.dim_out", 1, MAX_WIDTH, path)
    for name in STACKS:
        if name in config and (name != "normal_head" or config[name] is not None):
            _check_stack(config[name], name, state, path)
        elif name != "normal_head":
            raise _refuse(path, f"model_config has no '{name}'")
    head = config.get("scale_head")
    dims = head.get("dims") if isinstance(head, Mapping) else None
    if not isinstance(dims, (list, tuple)) or not 2 <= len(dims) <= MAX_LEVELS + 2:
        raise _refuse(path, "scale_head.dims must list 2..8 widths")
    _sizes_list(dims, "scale_head.dims", len(dims), path, 1, MAX_WIDTH)
    tokens = config.get("num_tokens_range", (1200, 3600))
    if not isinstance(tokens, (list, tuple)) or len(tokens) != 2:
        raise _refuse(path, f"num_tokens_range is {tokens!r}, not (fewest, most)")
    low = _whole(tokens[0], "num_tokens_range", 1, MAX_TOKENS, path)
    _whole(tokens[1], "num_tokens_range", low, MAX_TOKENS, path)
