"""Reading released (or compatible) checkpoint files into a PixelPerfectDepth or MoGe2, strictly.

Files are read with `torch.load(weights_only=True)` (or safetensors), so a pickle that tries
to run code is refused. Key prefixes the released files may carry are normalised; the DA2
file's `depth_head.*` is ignored; anything else missing, unexpected or of the wrong shape is
a `CheckpointError` naming the file. A MoGe-2 `model.pt` carries its `model_config`, which
sizes the network; the DA2 files are sized from their tensors' shapes.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Mapping

import torch
from safetensors.torch import load_file as load_safetensors

from ..errors import CheckpointError, brief, first_line
from .device import MATMUL_LAYERS, autocast_parameters
from .dinov2 import DinoConfig
from .dit import DiTConfig
from .moge2 import MoGe2
from .ppd import PixelPerfectDepth, PPDConfig
from .sizes import check_dino_config, check_dit_config, check_moge2_config

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
    return _flatten(_read(path), path)


def _read(path: Path) -> object:
    """The file's content as torch.load(weights_only=True) or safetensors gives it; every failure a CheckpointError."""
    try:
        if path.suffix == ".safetensors":
            data = load_safetensors(str(path), device="cpu")
        else:
            data = torch.load(str(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint file not found") from None
    except pickle.UnpicklingError as exc:
        if not _is_torch_head(_head(path)):  # text and other files can look like a forbidden pickle
            raise CheckpointError(
                f"{path}: not a readable checkpoint (it is not a PyTorch or safetensors file)"
            ) from None
        raise CheckpointError(
            f"{path}: refused to load: the file holds more than plain tensors and could run code "
            f"({first_line(exc, 120) or 'unsafe content'})"
        ) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, KeyError, IndexError) as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint ({_read_problem(path, exc)})") from None
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"{path}: not a readable checkpoint: {type(exc).__name__}: {brief(exc, 160)}") from None
    return data


def _head(path: Path) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(4)


def _is_torch_head(head: bytes) -> bool:
    return head[:2] == b"PK" or head[:1] == b"\x80"  # torch.save writes a zip, legacy files a pickle


def _read_problem(path: Path, error: Exception) -> str:
    """Why a .pth did not load, in words: not a checkpoint at all, or a damaged one."""
    head = _head(path)
    if not head:
        return "the file is empty"
    if not _is_torch_head(head):
        return "it is not a PyTorch or safetensors file"
    detail = first_line(error, 120) or type(error).__name__
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


def split_ppd_file(state: StateDict, path: Path, encoder_prefix: str = "sem_encoder.pretrained.",
                   what: str = "a PPD checkpoint") -> tuple[StateDict, StateDict]:
    """(DiT keys without prefix, encoder overrides without prefix) of a ppd.pth or ppd_moge.pth file.

    Keys may be `dit.X`, `pipeline.dit.X` or bare DiT names; `<encoder_prefix>X` entries
    override the encoder file, as the official loaders apply the PPD file last
    (`sem_encoder.pretrained.` for the DA2 encoder, `sem_encoder.` for MoGe-2).
    """
    dit, encoder, unknown = {}, {}, {}
    for key, value in state.items():
        stripped = _strip(key, DIT_PREFIXES)
        if stripped is not None:
            dit[stripped] = value
        elif key.startswith(encoder_prefix):
            encoder[key[len(encoder_prefix):]] = value
        elif key.startswith(DIT_ROOTS):
            dit[key] = value
        else:
            unknown[key] = value
    if unknown:
        raise CheckpointError(f"{path}: unexpected keys for {what}: {_first(unknown)}")
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
    dit_cfg = infer_dit_config(dit, dit_path)
    enc_cfg = infer_encoder_config(encoder, encoder_path)
    if dit_cfg.semantic_dim != enc_cfg.embed_dim:
        raise CheckpointError(
            f"{dit_path}: the DiT expects {dit_cfg.semantic_dim}-channel semantics but {encoder_path} "
            f"gives {enc_cfg.embed_dim}: the two files do not belong together"
        )
    return PPDConfig(dit=dit_cfg, encoder=enc_cfg)


def infer_encoder_config(encoder: StateDict, encoder_path: Path) -> DinoConfig:
    """DINOv2 sizes read off the tensors' shapes (heads of DINOv2's fixed 64 channels)."""
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
    except (IndexError, ValueError, TypeError, ZeroDivisionError):  # tensors of too few dimensions, no positions
        raise CheckpointError(f"{encoder_path}: the encoder's tensors have shapes no DINOv2 has") from None
    check_dino_config(enc_cfg, encoder_path)
    return enc_cfg


def infer_dit_config(dit: StateDict, dit_path: Path) -> DiTConfig:
    """DiT sizes read off the tensors' shapes (the head count from the qk-norm width)."""
    try:
        hidden, in_ch, coarse_patch, _ = dit["x_embedder.proj.weight"].shape
        head_dim = dit["blocks.0.attn.q_norm.weight"].shape[0]
        patch = coarse_patch // 2
        config = DiTConfig(
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
    except (IndexError, ValueError, ZeroDivisionError):  # tensors of too few dimensions, a head of 0 channels
        raise CheckpointError(f"{dit_path}: the DiT's tensors have shapes no PPD DiT has") from None
    return check_dit_config(config, dit_path)


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


def load_pixel_perfect_depth(ppd_path: Path, encoder_path: Path, device: str | torch.device = "cpu",
                              dtype: torch.dtype = torch.float32) -> PixelPerfectDepth:
    """Build the network sized by the files and fill it from them (eval, no grad).

    The model is built on the meta device and the loaded tensors are assigned, so peak
    memory is one copy of the weights, not two. `dtype` is that of the Linear and Conv
    weights (see `_in_dtype`); everything else is fp32.
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
    del encoder_state, dit_state, encoder_override  # `state` holds the only references: cast one tensor at a time
    model.load_state_dict(_in_dtype(model, state, dtype), strict=True, assign=True)
    return model.to(device).eval().requires_grad_(False)


def hold_weights(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """`model` with its Linear and Conv weights converted to `dtype` in place, one layer at a time
    (each fp32 copy is freed as its successor is made); returns the model."""
    for module in model.modules():
        if isinstance(module, MATMUL_LAYERS):
            module.to(dtype)
    return model


def _in_dtype(model: torch.nn.Module, state: StateDict, dtype: torch.dtype) -> StateDict:
    """`state` with the tensors of `model`'s Linear and Conv layers in `dtype`, other floating ones in fp32.

    Those are the tensors autocast casts on every call, so holding them in bf16 halves the
    memory without changing a result. Converted in place, one at a time, so that a tensor
    nothing else holds is freed as its copy is made.
    """
    reduced = autocast_parameters(model)
    for key, value in state.items():
        if value.is_floating_point():
            state[key] = value.to(dtype if key in reduced else torch.float32)
    return state


def read_moge2_file(path: Path) -> tuple[dict, StateDict]:
    """(model_config, state dict) of a MoGe-2 `model.pt`: {'model': state dict, 'model_config': dict}."""
    path = Path(path)
    data = _read(path)
    if not isinstance(data, Mapping) or not isinstance(data.get("model"), Mapping):
        raise CheckpointError(
            f"{path}: not a MoGe-2 checkpoint (expected {{'model': weights, 'model_config': settings}})"
        )
    if not isinstance(data.get("model_config"), Mapping):
        raise CheckpointError(
            f"{path}: no 'model_config' next to the weights; a MoGe-2 model.pt needs it to size the network"
        )
    return dict(data["model_config"]), _flatten(data["model"], path)


def _build_moge2(config: dict, path: Path) -> MoGe2:
    try:
        return MoGe2(**config)
    except Exception as exc:  # any field the network cannot be built from
        raise CheckpointError(f"{path}: model_config not understood: {type(exc).__name__}: {brief(exc, 160)}") from None


def load_moge2(path: Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> MoGe2:
    """MoGe-2 built from the file's `model_config` and filled from its weights (eval, no grad).

    Every key must be there with its shape and nothing else (the official loader is lenient).
    `dtype` is that of the Linear and Conv weights, as in `load_pixel_perfect_depth`.
    """
    path = Path(path)
    config, state = read_moge2_file(path)
    check_moge2_config(config, state, path)
    with torch.device("meta"):
        model = _build_moge2(config, path)
    _check_against(model.state_dict(), state, path, "MoGe-2")
    model.load_state_dict(_in_dtype(model, state, dtype), strict=True, assign=True)
    return model.to(device).eval().requires_grad_(False)


def load_ppd_moge(ppd_path: Path, moge_path: Path, device: str | torch.device = "cpu",
                  dtype: torch.dtype = torch.float32) -> PixelPerfectDepth:
    """The MoGe-2-semantics PPD: DiT from `ppd_moge.pth`, `sem_encoder` a MoGe2 from `moge2.pt` (eval, no grad).

    Its state dict is `sem_encoder.<MoGe key>` + `dit.*` (873 tensors at released size); the
    DiT's semantic width must equal MoGe's encoder dim_out. `dtype` is that of the Linear
    and Conv weights, as in `load_pixel_perfect_depth`.
    """
    ppd_path, moge_path = Path(ppd_path), Path(moge_path)
    moge_config, moge_state = read_moge2_file(moge_path)
    dit_state, moge_override = split_ppd_file(read_state_dict(ppd_path), ppd_path, "sem_encoder.",
                                              "a PPD (MoGe-2 semantics) checkpoint")
    dit_config = infer_dit_config(dit_state, ppd_path)
    check_moge2_config(moge_config, moge_state, moge_path)
    with torch.device("meta"):
        moge = _build_moge2(moge_config, moge_path)
    if dit_config.semantic_dim != moge.semantic_dim:
        raise CheckpointError(
            f"{ppd_path}: the DiT expects {dit_config.semantic_dim}-channel semantics but {moge_path} "
            f"gives {moge.semantic_dim}: the two files do not belong together"
        )
    with torch.device("meta"):
        model = PixelPerfectDepth(PPDConfig(dit=dit_config, encoder=None), sem_encoder=moge)
    expected = moge.state_dict()
    _check_against(expected, moge_state, moge_path, "MoGe-2")
    _check_against(model.dit.state_dict(), dit_state, ppd_path, "DiT")
    if moge_override:
        _check_against({k: expected[k] for k in moge_override if k in expected}, moge_override, ppd_path, "MoGe-2")
    state = {f"sem_encoder.{k}": v for k, v in {**moge_state, **moge_override}.items()}
    state.update({f"dit.{k}": v for k, v in dit_state.items()})
    del moge_state, moge_override, dit_state  # `state` holds the only references: cast one tensor at a time
    model.load_state_dict(_in_dtype(model, state, dtype), strict=True, assign=True)
    return model.to(device).eval().requires_grad_(False)
