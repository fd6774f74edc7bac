"""Reading released (or compatible) checkpoint files into a PixelPerfectDepth, strictly.

Files are read with `torch.load(weights_only=True)` (or safetensors), so a pickle that tries
to run code is refused. Key prefixes the released files may carry are normalised; the DA2
file's `depth_head.*` is ignored; anything else missing, unexpected or of the wrong shape is
a `CheckpointError` naming the file.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Mapping

import torch

from ..errors import CheckpointError
from .config import DinoConfig, DiTConfig, PPDConfig
from .ppd import PixelPerfectDepth

StateDict = dict[str, torch.Tensor]

WRAPPER_KEYS = ("state_dict", "model", "module")
ENCODER_PREFIXES = ("sem_encoder.pretrained.", "pretrained.")
DIT_PREFIXES = ("pipeline.dit.", "dit.")
DIT_ROOTS = ("x_embedder.", "t_embedder.", "blocks.", "proj_fusion.", "final_layer.")
IGNORED_PREFIXES = ("depth_head.",)
SHOWN_KEYS = 5


def read_state_dict(path: Path) -> StateDict:
    """Tensors of a .pth/.pt (weights_only) or .safetensors file, unwrapped and de-`module.`-ed."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            data = load_file(str(path), device="cpu")
        else:
            data = torch.load(str(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint file not found") from None
    except pickle.UnpicklingError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "unsafe content"
        raise CheckpointError(
            f"{path}: refused to load: the file holds more than plain tensors and could run code ({reason[:120]})"
        ) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint ({_read_problem(path, exc)})") from None
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"{path}: not a readable checkpoint: {type(exc).__name__}: {str(exc)[:160]}") from None
    return _flatten(data, path)


def _read_problem(path: Path, error: Exception) -> str:
    """Why a .pth did not load, in words: not a checkpoint at all, or a damaged one."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    if not head:
        return "the file is empty"
    if head[:2] != b"PK" and head[:1] != b"\x80":  # torch.save writes a zip, legacy files a pickle
        return "it is not a PyTorch or safetensors file"
    detail = str(error).strip().splitlines()[0][:120] if str(error).strip() else type(error).__name__
    return f"truncated or corrupt: {detail}"


def _flatten(data: object, path: Path) -> StateDict:
    while isinstance(data, Mapping):
        wrapped = [k for k in WRAPPER_KEYS if isinstance(data.get(k), Mapping)]
        if not wrapped or any(isinstance(v, torch.Tensor) for v in data.values()):
            break
        data = data[wrapped[0]]
    if not isinstance(data, Mapping) or not data:
        raise CheckpointError(f"{path}: holds no state dict of tensors")
    out: StateDict = {}
    for key, value in data.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor")
        out[key[len("module."):] if key.startswith("module.") else key] = value
    return out


def _strip(key: str, prefixes: tuple[str, ...]) -> str | None:
    for prefix in prefixes:
        if key.startswith(prefix):
            return key[len(prefix):]
    return None


def split_encoder_file(state: StateDict, path: Path) -> tuple[StateDict, StateDict]:
    """(encoder ViT keys without prefix, anything else) of a Depth-Anything-V2 file."""
    encoder, other = {}, {}
    for key, value in state.items():
        if key.startswith(IGNORED_PREFIXES):
            continue
        stripped = _strip(key, ENCODER_PREFIXES)
        if stripped is not None:
            encoder[stripped] = value
        else:
            other[key] = value
    if other:
        raise CheckpointError(f"{path}: unexpected keys for a Depth-Anything-V2 encoder: {_first(other)}")
    return encoder, other


def split_ppd_file(state: StateDict, path: Path) -> tuple[StateDict, StateDict]:
    """(DiT keys without prefix, encoder overrides without prefix) of a ppd.pth file.

    Keys may be `dit.X`, `pipeline.dit.X` or bare DiT names; `sem_encoder.pretrained.X`
    entries override the encoder file, as the official loader applies ppd.pth last.
    """
    dit, encoder, unknown = {}, {}, {}
    for key, value in state.items():
        stripped = _strip(key, DIT_PREFIXES)
        if stripped is not None:
            dit[stripped] = value
        elif key.startswith("sem_encoder.pretrained."):
            encoder[key[len("sem_encoder.pretrained."):]] = value
        elif key.startswith(DIT_ROOTS):
            dit[key] = value
        else:
            unknown[key] = value
    if unknown:
        raise CheckpointError(f"{path}: unexpected keys for a PPD checkpoint: {_first(unknown)}")
    return dit, encoder


def _first(keys) -> str:
    names = sorted(keys)
    shown = ", ".join(names[:SHOWN_KEYS])
    return f"{shown}{f' (and {len(names) - SHOWN_KEYS} more)' if len(names) > SHOWN_KEYS else ''}"


def _count_blocks(state: StateDict) -> int:
    return len({k.split(".")[1] for k in state if k.startswith("blocks.")})


def infer_config(dit: StateDict, encoder: StateDict, dit_path: Path, encoder_path: Path) -> PPDConfig:
    """Network sizes read off the tensors' shapes, so small test checkpoints load like the real ones.

    Head counts are not stored in a checkpoint: the DiT's follows from its qk-norm width,
    the encoder's from DINOv2's fixed head size of 64.
    """
    try:
        hidden, in_ch, coarse_patch, _ = dit["x_embedder.proj.weight"].shape
        head_dim = dit["blocks.0.attn.q_norm.weight"].shape[0]
        patch = coarse_patch // 2
        dit_cfg = DiTConfig(
            hidden_size=hidden,
            depth=_count_blocks(dit),
            num_heads=hidden // head_dim,
            patch_size=patch,
            in_channels=in_ch,
            out_channels=dit["final_layer.linear.weight"].shape[0] // (patch * patch),
            mlp_hidden=dit["blocks.0.mlp.fc1.weight"].shape[0],
            semantic_dim=dit["proj_fusion.0.weight"].shape[1] - hidden,
        )
    except KeyError as exc:
        raise CheckpointError(f"{dit_path}: missing DiT key {exc.args[0]!r}; is this a PPD checkpoint?") from None
    try:
        embed = encoder["cls_token"].shape[-1]
        patch_e = encoder["patch_embed.proj.weight"].shape[-1]
        grid = round((encoder["pos_embed"].shape[1] - 1) ** 0.5)
        enc_cfg = DinoConfig(
            embed_dim=embed,
            depth=_count_blocks(encoder),
            num_heads=max(1, embed // 64),
            patch_size=patch_e,
            img_size=grid * patch_e,
            mlp_hidden=encoder["blocks.0.mlp.fc1.weight"].shape[0],
        )
    except KeyError as exc:
        raise CheckpointError(f"{encoder_path}: missing encoder key {exc.args[0]!r}; is this a DINOv2 checkpoint?") from None
    if dit_cfg.semantic_dim != enc_cfg.embed_dim:
        raise CheckpointError(
            f"{dit_path}: the DiT expects {dit_cfg.semantic_dim}-channel semantics but {encoder_path} "
            f"gives {enc_cfg.embed_dim}: the two files do not belong together"
        )
    return PPDConfig(dit=dit_cfg, encoder=enc_cfg)


def _check_against(expected: Mapping[str, torch.Tensor], given: StateDict, path: Path, what: str) -> None:
    missing = expected.keys() - given.keys()
    unexpected = given.keys() - expected.keys()
    if missing:
        raise CheckpointError(f"{path}: {len(missing)} {what} keys missing: {_first(missing)}")
    if unexpected:
        raise CheckpointError(f"{path}: {len(unexpected)} unexpected {what} keys: {_first(unexpected)}")
    for key, tensor in given.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise CheckpointError(
                f"{path}: {what} key {key!r} has shape {tuple(tensor.shape)}, the network needs {tuple(expected[key].shape)}"
            )


def load_pixel_perfect_depth(ppd_path: Path, encoder_path: Path, device: str | torch.device = "cpu") -> PixelPerfectDepth:
    """Build the network sized by the files and fill it from them (fp32, eval, no grad).

    The model is built on the meta device and the loaded tensors are assigned, so peak
    memory is one copy of the weights, not two.
    """
    ppd_path, encoder_path = Path(ppd_path), Path(encoder_path)
    encoder_state, _ = split_encoder_file(read_state_dict(encoder_path), encoder_path)
    dit_state, encoder_override = split_ppd_file(read_state_dict(ppd_path), ppd_path)
    config = infer_config(dit_state, {**encoder_state, **encoder_override}, ppd_path, encoder_path)
    with torch.device("meta"):
        model = PixelPerfectDepth(config)
    _check_against(model.sem_encoder.pretrained.state_dict(), encoder_state, encoder_path, "encoder")
    _check_against(model.dit.state_dict(), dit_state, ppd_path, "DiT")
    if encoder_override:
        expected = model.sem_encoder.pretrained.state_dict()
        _check_against({k: expected[k] for k in encoder_override if k in expected}, encoder_override, ppd_path, "encoder")
    encoder_state.update(encoder_override)
    state = {f"sem_encoder.pretrained.{k}": v for k, v in encoder_state.items()}
    state.update({f"dit.{k}": v for k, v in dit_state.items()})
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    return model.to(device).eval().requires_grad_(False)

