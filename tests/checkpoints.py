"""Small random-weight checkpoints in the released files' key layout, for tests.

`write_small_weights(folder)` writes `ppd.pth` (352-key layout, `dit.*`) and
`depth_anything_v2_vitl.pth` (`pretrained.*` plus a `depth_head.*` entry the loader must
ignore) of a tiny network, so the whole pipeline runs through the real loader in seconds.
`write_small_moge(folder)` writes a released-layout `moge2.pt`, `write_small_ppd_moge(folder)`
a matching `ppd_moge.pth` + `moge2.pt` pair for the MoGe-2-semantics variant.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ppd_core.model import DinoConfig, DiTConfig, MoGe2, PixelPerfectDepth, PPDConfig

SMALL = PPDConfig(
    dit=DiTConfig(hidden_size=64, depth=2, num_heads=1, patch_size=8, mlp_hidden=128, semantic_dim=64),
    encoder=DinoConfig(embed_dim=64, depth=1, num_heads=1, patch_size=14, img_size=518, mlp_hidden=128),
)


def randomise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial weights (the official initialisers zero adaLN and output layers).

    Same rules as the reference vectors: norm weight 1 + 0.2 N, bias 0.1 N; LayerScale
    0.5 + 0.25 N; position embedding and CLS 0.5 N; other matrices N / sqrt(fan_in), other
    biases 0.1 N. A norm is a module whose own name says so (so MoGe's `normal_head` is not).
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            n = torch.randn(p.shape, generator=g)
            module = name.rsplit(".", 2)[-2] if name.count(".") >= 2 else ""
            if "norm" in module and not module.startswith("normal") and name.endswith("weight"):
                p.copy_(1 + 0.2 * n)
            elif name.endswith("gamma"):
                p.copy_(0.5 + 0.25 * n)
            elif name.endswith(("pos_embed", "cls_token", "mask_token")):
                p.copy_(0.5 * n)
            elif p.ndim >= 2:
                p.copy_(n / p[0].numel() ** 0.5)
            else:
                p.copy_(0.1 * n)
    return model


def small_model(seed: int = 0) -> PixelPerfectDepth:
    """The small PPD with random weights, its output layer scaled down so depths stay plausible."""
    model = randomise(PixelPerfectDepth(SMALL), seed)
    with torch.no_grad():
        model.dit.final_layer.linear.weight.mul_(0.1)
    return model.eval()


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


def _moge_stack(dims: list[int], dim_in: list[int], dim_out: list, num_res_blocks: list[int]) -> dict:
    return {
        "dim_in": dim_in,
        "dim_out": dim_out,
        "dim_res_blocks": dims,
        "num_res_blocks": num_res_blocks,
        "res_block_in_norm": "none",
        "res_block_hidden_norm": "none",
        "resamplers": ["conv_transpose", "conv_transpose", "conv_transpose", "bilinear"],
    }


MOGE_DIMS = [64, 16, 16, 8, 8]
SMALL_MOGE_CONFIG = {  # the released model_config's layout at a tiny size; dim_out 64 = SMALL.dit.semantic_dim
    "encoder": {
        "backbone": {"embed_dim": 64, "depth": 2, "num_heads": 2, "mlp_hidden": 128},
        "intermediate_layers": [0, 1],
        "dim_out": 64,
    },
    "neck": _moge_stack(MOGE_DIMS, [66, 2, 2, 2, 2], None, [0, 1, 1, 1, 0]),
    "points_head": _moge_stack(MOGE_DIMS, MOGE_DIMS, [None, None, None, None, 3], [0, 1, 1, 1, 0]),
    "mask_head": _moge_stack(MOGE_DIMS, MOGE_DIMS, [None, None, None, None, 1], [0, 1, 1, 1, 0]),
    "normal_head": _moge_stack(MOGE_DIMS, MOGE_DIMS, [None, None, None, None, 3], [0, 1, 1, 1, 0]),
    "scale_head": {"dims": [64, 32, 32, 1]},
    "remap_output": "exp",
    "num_tokens_range": [1200, 3600],
}


def small_moge(seed: int = 0, focal: float = 1.2) -> MoGe2:
    """A small random MoGe-2 whose geometry is plausible: a pinhole camera, moderate depth, most pixels valid.

    The rules of `randomise`; then the points output layer is scaled by 0.3 (as the reference
    vectors did), the mask logits raised, and the x, y outputs wired to the view-plane UV (`_pinhole`).
    """
    model = randomise(MoGe2(**SMALL_MOGE_CONFIG), seed)
    with torch.no_grad():
        model.points_head.output_blocks[-1].weight.mul_(0.3)
        model.points_head.output_blocks[-1].bias.mul_(0.3)
        model.mask_head.output_blocks[-1].bias.add_(3.0)
        _pinhole(model, focal)
    return model.eval()


def _pinhole(model: MoGe2, focal: float) -> None:
    """Make the raw x, y of the points head UV / focal, so the map is a pinhole view of focal `focal`.

    Random weights give a point map of any (even negative) focal. At the finest level the
    UV input passes through channels 0 and 1 of the neck and the head untouched (the
    upsampled coarser features are cut from them), so x = u / focal and y = v / focal while
    z stays image-dependent.
    """

    def first_two(conv: torch.nn.Conv2d, gain: float) -> None:  # output channel k = gain * input channel k, k < 2
        conv.weight[:2] = 0
        conv.weight[0, 0] = conv.weight[1, 1] = gain
        conv.bias[:2] = 0

    for stack in (model.neck, model.points_head):
        first_two(stack.input_blocks[-1], 1.0)
        stack.resamplers[-1][1].weight[:2] = 0
        stack.resamplers[-1][1].bias[:2] = 0
    first_two(model.points_head.output_blocks[-1], 1 / focal)


def write_small_moge(folder: Path, seed: int = 0, model: MoGe2 | None = None) -> Path:
    """Write moge2.pt ({'model': state dict, 'model_config': dict}, as released) of a small random MoGe-2."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = (model or small_moge(seed)).state_dict()
    torch.save({"model": state, "model_config": SMALL_MOGE_CONFIG}, folder / "moge2.pt")
    return folder


def write_small_ppd_moge(folder: Path, seed: int = 0) -> Path:
    """Write ppd_moge.pth (`dit.*` of the small PPD, semantic width 64) and a matching moge2.pt into `folder`."""
    folder = Path(folder)
    write_small_moge(folder, seed)
    dit = {k: v for k, v in small_model(seed).state_dict().items() if k.startswith("dit.")}
    torch.save(dit, folder / "ppd_moge.pth")
    return folder
