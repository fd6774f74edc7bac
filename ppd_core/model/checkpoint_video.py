"""Reading the video model's two files strictly into a PixelPerfectVideoDepth.

`ppvd.pth` (read with `torch.load(weights_only=True)`) must hold every `dit_video.*` key of
the network and nothing else but optional `sem_encoder.*` overrides of Pi3 weights (the
official loader applies it after Pi3's file, non-strictly: a wrongly prefixed file would
silently leave a random DiT there, so here every key is required). Pi3's `model.safetensors`
must hold every key its semantic path uses; the keys of its point, confidence and camera
decoders and heads are ignored by name, anything else is refused. Sizes are read off the
tensors, so small test files load through the same code as the released ones.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path

import torch

from ..errors import CheckpointError
from .checkpoint import StateDict, _check_against, _first, _in_dtype, read_state_dict
from .dit_video import DiTVideoConfig, sincos_position_table
from .pi3 import Pi3Config
from .ppvd import PixelPerfectVideoDepth
from .sizes import MAX_BLOCKS, MAX_POSITION_GRID, check_dino_config, check_dit_config

DIT_PREFIX = "dit_video."
PI3_PREFIX = "sem_encoder."
#: Pi3's heads, which the video model never calls (200.8 M parameters at released size).
PI3_UNUSED_PREFIXES = (
    "point_decoder.", "point_head.", "conf_decoder.", "conf_head.", "camera_decoder.", "camera_head.",
)
MAX_REGISTERS = 64  # register tokens (4 and 5 released)
POSITION_TOLERANCE = 1e-5  # float32 rounding of the float64 sin-cos table is far below this


def _count(state: StateDict, prefix: str) -> int:
    return len({key[len(prefix):].split(".")[0] for key in state if key.startswith(prefix)})


def pi3_used(state: StateDict) -> StateDict:
    """Pi3 keys without those of its unused heads."""
    return {key: value for key, value in state.items() if not key.startswith(PI3_UNUSED_PREFIXES)}


def split_ppvd_file(state: StateDict, path: Path) -> tuple[StateDict, StateDict]:
    """(DiT keys without `dit_video.`, Pi3 overrides without `sem_encoder.`) of a ppvd.pth file."""
    dit, pi3, unknown = {}, {}, []
    for key, value in state.items():
        if key.startswith(DIT_PREFIX):
            dit[key[len(DIT_PREFIX):]] = value
        elif key.startswith(PI3_PREFIX):
            pi3[key[len(PI3_PREFIX):]] = value
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(f"{path}: {len(unknown)} unexpected keys for a PPVD checkpoint "
                              f"(expected dit_video.*): {_first(unknown)}")
    return dit, pi3_used(pi3)


def infer_pi3_config(state: StateDict, path: Path) -> Pi3Config:
    """Pi3 sizes read off the tensors and checked against sane limits. Head counts are not stored:
    the decoder's follows from its qk-norm width, and the encoder's heads are as wide (64 released)."""
    try:
        embed = state["encoder.cls_token"].shape[-1]
        patch = state["encoder.patch_embed.proj.weight"].shape[-1]
        grid = round((state["encoder.pos_embed"].shape[1] - 1) ** 0.5)
        head_dim = state["decoder.0.attn.q_norm.weight"].shape[0]
        heads = embed // head_dim if head_dim else 0
        config = Pi3Config(
            enc_embed_dim=embed, enc_depth=_count(state, "encoder.blocks."), enc_heads=heads,
            dec_depth=_count(state, "decoder."), dec_heads=heads,
            mlp_ratio=state["encoder.blocks.0.mlp.fc1.weight"].shape[0] / max(embed, 1),
            img_size=grid * patch, patch_size=patch,
            num_register_tokens=state["encoder.register_tokens"].shape[1],
            decoder_register_tokens=state["register_token"].shape[2],
        )
    except KeyError as exc:
        raise CheckpointError(f"{path}: missing Pi3 key {exc.args[0]!r}; is this Pi3's model.safetensors?") from None
    except IndexError:
        raise CheckpointError(f"{path}: Pi3 tensors of impossible shapes; is this Pi3's model.safetensors?") from None
    check_dino_config(config.encoder_config(), path, "Pi3's encoder")
    _check_count(config.dec_depth, "Pi3's decoder blocks", 2, MAX_BLOCKS, path)
    for count, what in ((config.num_register_tokens, "encoder"), (config.decoder_register_tokens, "decoder")):
        _check_count(count, f"Pi3's {what} register tokens", 0, MAX_REGISTERS, path)
    if embed % heads or head_dim % 4:
        raise CheckpointError(f"{path}: Pi3's width {embed} does not split into heads of {head_dim} channels, "
                              "a multiple of 4")
    return config


def infer_dit_video_config(state: StateDict, path: Path) -> DiTVideoConfig:
    """DiT_Video sizes read off the tensors and checked against sane limits; the frame size from
    `pos_embed`, a square grid of coarse patches."""
    try:
        hidden, in_channels, coarse_patch, _ = state["x_embedder.proj.weight"].shape
        patch = max(coarse_patch // 2, 1)
        tokens = state["pos_embed"].shape[1]
        head_dim = state["blocks.0.attn.q_norm.weight"].shape[0]
        config = DiTVideoConfig(
            in_channels=in_channels,
            out_channels=state["final_layer.linear.weight"].shape[0] // (patch * patch),
            hidden_size=hidden, depth=_count(state, "blocks."),
            num_heads=hidden // head_dim if head_dim else 0, patch_size=coarse_patch // 2,
            mlp_ratio=state["blocks.0.mlp.fc1.weight"].shape[0] / max(hidden, 1),
            semantic_dim=state["proj_fusion.0.weight"].shape[1] - hidden,
        )
    except KeyError as exc:
        raise CheckpointError(f"{path}: missing DiT key 'dit_video.{exc.args[0]}'; is this ppvd.pth?") from None
    except (IndexError, ValueError):
        raise CheckpointError(f"{path}: DiT tensors of impossible shapes; is this ppvd.pth?") from None
    check_dit_config(config.block_config(), path)
    side = round(tokens**0.5)
    if side * side != tokens or side > MAX_POSITION_GRID:
        raise CheckpointError(f"{path}: dit_video.pos_embed has {tokens} positions, not a square grid "
                              f"of at most {MAX_POSITION_GRID}x{MAX_POSITION_GRID}")
    return replace(config, input_size=(side * coarse_patch, side * coarse_patch))


def _check_count(value: int, what: str, low: int, high: int, path: Path) -> None:
    if not low <= value <= high:
        raise CheckpointError(f"{path}: {what}: {value}, outside {low}..{high}; refusing to build the network")


def _build(pi3: Pi3Config, dit: DiTVideoConfig, ppvd_path: Path, pi3_path: Path) -> PixelPerfectVideoDepth:
    if pi3.semantic_dim != dit.semantic_dim:
        raise CheckpointError(f"{ppvd_path}: the DiT expects {dit.semantic_dim}-channel semantics but {pi3_path} "
                              f"gives {pi3.semantic_dim}: the two files do not belong together")
    if dit.depth != DiTVideoConfig.depth:
        raise CheckpointError(f"{ppvd_path}: {dit.depth} DiT blocks; PPVD's DiT has {DiTVideoConfig.depth}")
    with torch.device("meta"):
        return PixelPerfectVideoDepth(pi3, dit)


def _check_positions(table: torch.Tensor, config: DiTVideoConfig, path: Path) -> None:
    """Warn when the file's position table is not the sin-cos table the network was trained with."""
    expected = sincos_position_table(config.hidden_size, *config.grid)
    difference = (table.float() - expected).abs().max().item()
    if difference > POSITION_TOLERANCE:
        warnings.warn(f"{path}: dit_video.pos_embed differs from the 2-D sin-cos table by up to {difference:.3g}; "
                      "using the file's table", stacklevel=3)


def load_video_depth(ppvd_path: Path, pi3_path: Path, device: str | torch.device = "cpu",
                     dtype: torch.dtype = torch.float32) -> PixelPerfectVideoDepth:
    """The video model sized by the files and filled from them (eval, no grad).

    Built on the meta device and filled by assignment (one copy of the weights in memory);
    `dtype` is that of the Linear and Conv weights, as in `load_pixel_perfect_depth`.
    """
    ppvd_path, pi3_path = Path(ppvd_path), Path(pi3_path)
    pi3_state = pi3_used(read_state_dict(pi3_path))
    dit_state, pi3_override = split_ppvd_file(read_state_dict(ppvd_path), ppvd_path)
    pi3_config = infer_pi3_config({**pi3_state, **pi3_override}, pi3_path)
    dit_config = infer_dit_video_config(dit_state, ppvd_path)
    model = _build(pi3_config, dit_config, ppvd_path, pi3_path)
    expected_pi3 = model.sem_encoder.state_dict()
    _check_against(expected_pi3, pi3_state, pi3_path, "Pi3")
    _check_against(model.dit_video.state_dict(), dit_state, ppvd_path, "DiT")
    if pi3_override:
        _check_against({k: expected_pi3[k] for k in pi3_override if k in expected_pi3}, pi3_override, ppvd_path, "Pi3")
    _check_positions(dit_state["pos_embed"], dit_config, ppvd_path)
    pi3_state.update(pi3_override)
    state = {PI3_PREFIX + k: v for k, v in pi3_state.items()}
    state.update({DIT_PREFIX + k: v for k, v in dit_state.items()})
    del pi3_state, pi3_override, dit_state  # `state` holds the only references: cast one tensor at a time
    model.load_state_dict(_in_dtype(model, state, dtype), strict=True, assign=True)
    return model.to(device).eval().requires_grad_(False)
