"""Whether a file is the weight file it claims to be: read safely, keys and shapes checked
against the network it sizes (built on the meta device, so nothing is allocated). Used before
a file the user downloaded by hand takes its place in the weights folder (`ppd-weights add`)."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import CheckpointError
from .checkpoint import (_build_moge2, _check_against, infer_dit_config, infer_encoder_config, read_moge2_file,
                         read_state_dict, split_encoder_file, split_ppd_file)
from .checkpoint_video import infer_dit_video_config, infer_pi3_config, pi3_used, split_ppvd_file
from .dinov2 import DinoVisionTransformer
from .dit import DiT
from .dit_video import DiTVideo
from .pi3 import Pi3Semantics


def check_weight_file(path: Path, name: str) -> str:
    """Raise `CheckpointError` unless `path` holds a complete `name` (ppd.pth, ppd_moge.pth,
    depth_anything_v2_vitl.pth, moge2.pt, ppvd.pth or pi3.safetensors); return what it holds, in a few words."""
    path = Path(path)
    if name == "moge2.pt":
        config, state = read_moge2_file(path)
        with torch.device("meta"):
            model = _build_moge2(config, path)
        _check_against(model.state_dict(), state, path, "MoGe-2")
        return f"MoGe-2 ({config.get('encoder', {}).get('backbone', 'its backbone')})"
    if name == "depth_anything_v2_vitl.pth":
        encoder, _ = split_encoder_file(read_state_dict(path), path)
        config = infer_encoder_config(encoder, path)
        with torch.device("meta"):
            expected = DinoVisionTransformer(config).state_dict()
        _check_against(expected, encoder, path, "encoder")
        return f"a DINOv2 encoder of width {config.embed_dim}"
    if name in ("ppd.pth", "ppd_moge.pth"):
        prefix = "sem_encoder." if name == "ppd_moge.pth" else "sem_encoder.pretrained."
        dit, _ = split_ppd_file(read_state_dict(path), path, prefix)
        config = infer_dit_config(dit, path)
        with torch.device("meta"):
            expected = DiT(config).state_dict()
        _check_against(expected, dit, path, "DiT")
        return f"a PPD DiT of {config.depth} blocks, width {config.hidden_size}"
    if name == "ppvd.pth":
        dit, _ = split_ppvd_file(read_state_dict(path), path)
        config = infer_dit_video_config(dit, path)
        with torch.device("meta"):
            expected = DiTVideo(config).state_dict()
        _check_against(expected, dit, path, "DiT")
        return f"a video DiT of {config.depth} blocks, width {config.hidden_size}"
    if name == "pi3.safetensors":
        state = pi3_used(read_state_dict(path))
        config = infer_pi3_config(state, path)
        with torch.device("meta"):
            expected = Pi3Semantics(config).state_dict()
        _check_against(expected, state, path, "Pi3")
        return f"Pi3's encoder and decoder ({config.enc_depth} + {config.dec_depth} blocks, width {config.enc_embed_dim})"
    raise CheckpointError(f"{path}: {name!r} is not one of the weight files (ppd.pth, ppd_moge.pth, "
                          "depth_anything_v2_vitl.pth, moge2.pt, ppvd.pth, pi3.safetensors)")
