"""MoGe-2 at released size (ViT-L, random weights) on this machine: its passes, and what one shared pass saves.

Prints, for a photo at PPD's working size (1024x768 by default):
  - the semantic prompt alone (`forward_semantics`, the encoder at the DiT's H/16 x W/16 grid),
  - the shared pass: the same encoder pass plus the geometry heads (`forward_grid`),
  - the official geometry pass: `infer` at 3600 tokens (its own encoder pass, heads, focal/shift),
and the time the shared pass saves against the official pair (semantics + infer), as a ratio.

    python benchmarks/moge_speed.py [--resolution 786432] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.model_speed import fill_random  # noqa: E402
from benchmarks.timing import seconds  # noqa: E402
from ppd_core.model import MoGe2  # noqa: E402
from ppd_core.model.dinov2 import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from ppd_core.model.inference import image_to_tensor, resize_for_network  # noqa: E402
from ppd_core.options import DEFAULT_RESOLUTION  # noqa: E402

CONFIG = Path(__file__).resolve().parents[1] / "tests" / "data" / "keys_moge2_vitl.json"


def released_moge() -> MoGe2:
    """The released-size MoGe-2 with small random weights, built without a second copy in memory."""
    config = json.loads(CONFIG.read_text())["model_config"]
    with torch.device("meta"):
        model = MoGe2(**config)
    model = fill_random(model)
    model.encoder.image_mean.copy_(torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))  # its buffers
    model.encoder.image_std.copy_(torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=DEFAULT_RESOLUTION)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = released_moge()
    photo = np.random.default_rng(0).integers(0, 256, (768, 1024, 3), dtype=np.uint8)
    image = image_to_tensor(resize_for_network(photo, args.resolution))
    H, W = image.shape[-2:]
    rows, cols = H // 16, W // 16

    def shared() -> None:
        model.geometry(model.forward_grid(image, rows, cols))

    with torch.inference_mode():
        semantics, _ = seconds(lambda: model.forward_semantics(image), args.repeat)
        one_pass, _ = seconds(shared, args.repeat)
        official, _ = seconds(lambda: model.infer(image), args.repeat)
    print(f"MoGe-2 ViT-L (random weights), input {W}x{H}, {args.threads} threads, fp32 on the CPU")
    print(f"semantic prompt alone ({rows}x{cols} tokens)        {semantics:8.2f} s")
    print(f"shared pass: prompt + geometry ({rows}x{cols} tokens) {one_pass:8.2f} s")
    print(f"official geometry pass (infer, 3600 tokens)   {official:8.2f} s")
    print(f"semantics + official infer                    {semantics + official:8.2f} s")
    print(f"saved by the shared pass                      {semantics + official - one_pass:8.2f} s "
          f"(official pair / shared = {(semantics + official) / one_pass:.2f})")


if __name__ == "__main__":
    main()
