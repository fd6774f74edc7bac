"""Tiny random PPVD models and files in the released key layout, for the video tests.

`TINY_PI3` / `TINY_DIT` are the vectors' tiny configs (`meta/json`); `FULL_KEYS_PI3` /
`FULL_KEYS_DIT` keep the released depths (24 + 36 Pi3 blocks, 24 + 3 DiT blocks) at a tiny
width, so their state dicts have exactly the released key names. `write_video_weights`
writes `ppvd.pth` (`dit_video.*`) and Pi3's `model.safetensors` (used keys plus a stand-in
tensor for every key of the heads PPVD never calls, as the released file holds them).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from ppd_core.model import PixelPerfectVideoDepth
from tests.checkpoints import randomise

DATA = Path(__file__).parent / "data"
VECTORS = DATA / "vectors_ppvd.npz"
KEYS = json.loads((DATA / "keys_ppvd.json").read_text())
META = json.loads(str(np.load(VECTORS)["meta/json"]))
TINY_PI3 = META["pi3_tiny"]["config"]
TINY_DIT = META["dit_video_tiny"]["config"]
FULL_KEYS_PI3 = {**TINY_PI3, "enc_depth": 24, "dec_depth": 36}
FULL_KEYS_DIT = {**TINY_DIT, "input_size": (32, 32)}


def tiny_video_model(seed: int = 0, pi3: dict = FULL_KEYS_PI3, dit: dict = FULL_KEYS_DIT) -> PixelPerfectVideoDepth:
    """A small random PPVD (the rules of `tests.checkpoints.randomise`), the DiT's output layer
    scaled down so that depths stay near [0, 1]."""
    model = randomise(PixelPerfectVideoDepth(pi3, dit), seed)
    with torch.no_grad():
        model.dit_video.final_layer.linear.weight.mul_(0.1)
        model.dit_video.pos_embed.copy_(PixelPerfectVideoDepth(pi3, dit).dit_video.pos_embed)
    return model.eval()


def pi3_file_state(model: PixelPerfectVideoDepth) -> dict:
    """Pi3's file content: the model's `sem_encoder.*` without prefix, and every unused head key of
    the released file as a small stand-in tensor."""
    state = {k[len("sem_encoder."):]: v.contiguous() for k, v in model.state_dict().items()
             if k.startswith("sem_encoder.")}
    used = set(KEYS["pi3_split"]["used_by_forward_semantics"])
    for key in KEYS["pi3_model_safetensors_presumed"]["keys"]:
        if key not in used:
            state[key] = torch.zeros(2)
    return state


def write_video_weights(folder: Path, model: PixelPerfectVideoDepth) -> tuple[Path, Path]:
    """Write `ppvd.pth` and `model.safetensors` of `model` into `folder`; returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    dit = {k: v for k, v in model.state_dict().items() if k.startswith("dit_video.")}
    torch.save(dit, folder / "ppvd.pth")
    save_file(pi3_file_state(model), str(folder / "model.safetensors"))
    return folder / "ppvd.pth", folder / "model.safetensors"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Run a module's tiny networks on one thread: their ops are so small that handing each to a second
    thread costs more than it gains (3-4x slower with two threads on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
