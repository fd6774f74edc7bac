"""Small random-weight checkpoints in the released files' key layout, for tests.

`write_small_weights(folder)` writes `ppd.pth` (352-key layout, `dit.*`) and
`depth_anything_v2_vitl.pth` (`pretrained.*` plus a `depth_head.*` entry the loader must
ignore) of a tiny network, so the whole pipeline runs through the real loader in seconds.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ppd_core.model import DinoConfig, DiTConfig, PixelPerfectDepth, PPDConfig

SMALL = PPDConfig(
    dit=DiTConfig(hidden_size=64, depth=2, num_heads=1, patch_size=8, mlp_hidden=128, semantic_dim=64),
    encoder=DinoConfig(embed_dim=64, depth=1, num_heads=1, patch_size=14, img_size=518, mlp_hidden=128),
)


def randomise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial weights (the official initialiser zeroes adaLN and output layers).

    Same rules as the reference vectors: LayerNorm weight 1 + 0.2 N, bias 0.1 N; LayerScale
    0.5 + 0.25 N; position embedding and CLS 0.5 N; other matrices N / sqrt(fan_in), other
    biases 0.1 N. The output layer is scaled down so depths stay in a plausible range.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            n = torch.randn(p.shape, generator=g)
            if "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.2 * n)
            elif name.endswith("gamma"):
                p.copy_(0.5 + 0.25 * n)
            elif name.endswith(("pos_embed", "cls_token", "mask_token")):
                p.copy_(0.5 * n)
            elif p.ndim >= 2:
                p.copy_(n / p[0].numel() ** 0.5)
            else:
                p.copy_(0.1 * n)
        model.dit.final_layer.linear.weight.mul_(0.1)
    return model


def small_model(seed: int = 0) -> PixelPerfectDepth:
    return randomise(PixelPerfectDepth(SMALL), seed).eval()


def write_small_weights(folder: Path, seed: int = 0, model: PixelPerfectDepth | None = None) -> Path:
    """Write ppd.pth and depth_anything_v2_vitl.pth of a small random model into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = (model or small_model(seed)).state_dict()
    dit = {k: v for k, v in state.items() if k.startswith("dit.")}
    encoder = {k[len("sem_encoder."):]: v for k, v in state.items() if k.startswith("sem_encoder.")}
    encoder["depth_head.scratch.output_conv2.2.bias"] = torch.zeros(1)
    torch.save(dit, folder / "ppd.pth")
    torch.save(encoder, folder / "depth_anything_v2_vitl.pth")
    return folder
