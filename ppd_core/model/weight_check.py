"""Whether a file is the weight file it claims to be: read safely, keys and shapes checked
against the network it sizes (built on the meta device, so nothing is allocated). Used before
a file the user downloaded by hand takes its place in the weights folder (`ppd-weights add`)."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import CheckpointError
from .checkpoint import (_build_moge2, _check_against, infer_dit_config, infer_encoder_config, read_moge2_file,
                         read_state_dict, split_encoder_file, split_ppd_file)
from .dinov2 import DinoVisionTransformer
from .dit import DiT


def check_weight_file(path: Path, name: str) -> str:
    """Raise `CheckpointError` unless `path` holds a complete `name` (ppd.pth, ppd_moge.pth,
    depth_anything_v2_vitl.pth or moge2.pt); return what it holds, in a few words."""
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
    raise CheckpointError(f"{path}: {name!r} is not one of the weight files (ppd.pth, ppd_moge.pth, "
                          "depth_anything_v2_vitl.pth, moge2.pt)")
