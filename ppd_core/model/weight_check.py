"""Whether a file is the weight file it claims to be: read safely, keys and shapes checked
against the network it sizes (built on the meta device, so nothing is allocated). Used before
a file the user downloaded by hand takes its place in the weights folder (`ppd-weights add`)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from ..errors import CheckpointError
from .checkpoint import (_build_moge2, _check_against, infer_dit_config, infer_encoder_config, read_moge2_file,
                         read_state_dict, split_encoder_file, split_ppd_file)
from .checkpoint_video import infer_dit_video_config, infer_pi3_config, pi3_used, split_ppvd_file
from .dinov2 import DinoVisionTransformer
from .dit import DiT
from .dit_video import DiTVideo
from .pi3 import Pi3Semantics


Reading = tuple[Callable[[], torch.nn.Module], dict, str, str]
"""(builds the network the file sizes, the file's keys for it, what they are, the file in a few words)."""


def _moge2(path: Path) -> Reading:
    config, state = read_moge2_file(path)
    backbone = config.get("encoder", {}).get("backbone", "its backbone")
    return lambda: _build_moge2(config, path), state, "MoGe-2", f"MoGe-2 ({backbone})"


def _encoder(path: Path) -> Reading:
    encoder, _ = split_encoder_file(read_state_dict(path), path)
    config = infer_encoder_config(encoder, path)
    return lambda: DinoVisionTransformer(config), encoder, "encoder", f"a DINOv2 encoder of width {config.embed_dim}"


def _ppd(prefix: str) -> Callable[[Path], Reading]:
    def read(path: Path) -> Reading:
        dit, _ = split_ppd_file(read_state_dict(path), path, prefix)
        config = infer_dit_config(dit, path)
        return lambda: DiT(config), dit, "DiT", f"a PPD DiT of {config.depth} blocks, width {config.hidden_size}"
    return read


def _ppvd(path: Path) -> Reading:
    dit, _ = split_ppvd_file(read_state_dict(path), path)
    config = infer_dit_video_config(dit, path)
    return lambda: DiTVideo(config), dit, "DiT", f"a video DiT of {config.depth} blocks, width {config.hidden_size}"


def _pi3(path: Path) -> Reading:
    state = pi3_used(read_state_dict(path))
    config = infer_pi3_config(state, path)
    words = (f"Pi3's encoder and decoder ({config.enc_depth} + {config.dec_depth} blocks, "
             f"width {config.enc_embed_dim})")
    return lambda: Pi3Semantics(config), state, "Pi3", words


READERS: dict[str, Callable[[Path], Reading]] = {
    "moge2.pt": _moge2, "depth_anything_v2_vitl.pth": _encoder, "ppd.pth": _ppd("sem_encoder.pretrained."),
    "ppd_moge.pth": _ppd("sem_encoder."), "ppvd.pth": _ppvd, "pi3.safetensors": _pi3,
}


def check_weight_file(path: Path, name: str) -> str:
    """Raise `CheckpointError` unless `path` holds a complete `name` (one of `READERS`); return
    what it holds, in a few words."""
    path = Path(path)
    if name not in READERS:
        raise CheckpointError(f"{path}: {name!r} is not one of the weight files ({', '.join(READERS)})")
    build, state, what, words = READERS[name](path)
    with torch.device("meta"):
        expected = build().state_dict()
    _check_against(expected, state, path, what)
    return words
