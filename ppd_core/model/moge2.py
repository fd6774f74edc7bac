"""MoGe-2: one image -> affine point map, normals, validity mask and metric scale.

Re-implemented to load the released `moge2.pt` key for key and to reproduce the MoGe-2 code
vendored in Pixel-Perfect Depth (`ppd/moge`), which PPD uses twice: as the semantic prompt
of its DiT (`forward_semantics`) and for metric depth and intrinsics (`infer`).

    image -> resize (bilinear + antialias) -> normalise -> DINOv2 (SDPA) -> final-normed
    intermediate layers -> 1x1 projections, summed -> features (B, dim_out, h, w)
    [features | view-plane UV] and UV at 2x, 4x, 8x, 16x -> neck (ConvStack, 5 levels)
    -> points / normal / mask heads at 16x -> bilinear resize to the image
    CLS token -> scale MLP -> exp -> metric scale

The token grid (h, w) comes from a token budget (`token_grid`, floored like the vendored
code) or is given explicitly (`forward_grid`), so one encoder pass at PPD's (H/16, W/16)
grid can feed both the DiT and the geometry heads.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .dinov2 import IMAGENET_MEAN, IMAGENET_STD, DinoConfig, DinoVisionTransformer
from .moge2_camera import FovX, metric_depth, normalized_view_plane_uv
from .moge2_convstack import ConvStack

BACKBONES = {  # DINOv2 hub names -> ViT sizes (patch 14, 37 x 37 position grid, MLP ratio 4)
    "dinov2_vits14": {"embed_dim": 384, "depth": 12, "num_heads": 6},
    "dinov2_vitb14": {"embed_dim": 768, "depth": 12, "num_heads": 12},
    "dinov2_vitl14": {"embed_dim": 1024, "depth": 24, "num_heads": 16},
}
REMAPS = ("linear", "sinh", "exp", "sinh_exp")
SEMANTIC_STRIDE = 16  # pixels per DiT coarse token


def backbone_config(backbone: Union[str, Mapping[str, Any]]) -> DinoConfig:
    """ViT sizes from a hub name ('dinov2_vitl14', ...) or a dict of DinoConfig fields (small test models)."""
    if isinstance(backbone, str):
        if backbone not in BACKBONES:
            raise ValueError(f"unknown MoGe-2 backbone {backbone!r} (known: {', '.join(BACKBONES)})")
        backbone = BACKBONES[backbone]
    sizes = dict(backbone)
    sizes.setdefault("mlp_hidden", 4 * sizes["embed_dim"])
    return DinoConfig(**sizes, attention="sdpa")


def token_grid(height: int, width: int, num_tokens: int) -> tuple[int, int]:
    """(rows, cols) of the encoder for a token budget, floored as the vendored code does.

    Flooring keeps the count at or below the budget (3519 of 3600 at 768 x 1024); at exact
    squares double rounding can floor one below (880 x 896 with 55 * 56 tokens -> (55, 55)).
    """
    aspect_ratio = width / height
    rows, cols = int((num_tokens / aspect_ratio) ** 0.5), int((num_tokens * aspect_ratio) ** 0.5)
    if rows < 1 or cols < 1:
        raise ValueError(f"{num_tokens} tokens give an empty grid for a {height}x{width} image")
    return rows, cols


def tokens_for_level(resolution_level: int, num_tokens_range: Sequence[int] = (1200, 3600)) -> int:
    """Token budget of `infer`'s resolution level 0..9 (1200 ... 3600 for the released model)."""
    low, high = num_tokens_range
    return int(low + (resolution_level / 9) * (high - low))


def remap_points(points: torch.Tensor, mode: str) -> torch.Tensor:
    """Raw head output (..., 3) -> point map; 'exp': z' = exp(z), points (x z', y z', z')."""
    if mode == "linear":
        return points
    if mode == "sinh":
        return torch.sinh(points)
    xy, z = points.split([2, 1], dim=-1)
    if mode == "exp":
        z = torch.exp(z)
        return torch.cat([xy * z, z], dim=-1)
    return torch.cat([torch.sinh(xy), torch.exp(z)], dim=-1)  # sinh_exp


class MoGeEncoder(nn.Module):
    """DINOv2 ViT whose final-normed intermediate layers are 1x1-projected and summed (MoGe's `DINOv2Encoder`)."""

    def __init__(
        self, backbone: Union[str, Mapping[str, Any]], intermediate_layers: Union[int, Sequence[int]], dim_out: int
    ):
        super().__init__()
        config = backbone_config(backbone)
        self.register_buffer("image_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("image_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.backbone = DinoVisionTransformer(config)
        if isinstance(intermediate_layers, int):  # the last n blocks
            intermediate_layers = range(config.depth - intermediate_layers, config.depth)
        self.layers = sorted(intermediate_layers)
        if not self.layers or self.layers[0] < 0 or self.layers[-1] >= config.depth:
            raise ValueError(f"intermediate layers {self.layers} outside the {config.depth} blocks")
        self.output_projections = nn.ModuleList(
            nn.Conv2d(config.embed_dim, dim_out, kernel_size=1) for _ in self.layers
        )
        self.dim_out = dim_out

    def prepare(self, image: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
        """image (B, 3, H, W) in [0, 1] -> (B, 3, 14 rows, 14 cols): resized (bilinear, antialias) THEN normalised."""
        p = self.backbone.config.patch_size
        x = F.interpolate(image, (rows * p, cols * p), mode="bilinear", align_corners=False, antialias=True)
        return (x - self.image_mean) / self.image_std

    def forward(self, image: torch.Tensor, rows: int, cols: int) -> tuple[torch.Tensor, torch.Tensor]:
        """-> features (B, dim_out, rows, cols), class token (B, embed_dim) of the last taken layer."""
        layers = self.backbone.intermediate_layers(self.prepare(image, rows, cols), self.layers)
        projected = [
            project(tokens[:, 1:].transpose(1, 2).unflatten(2, (rows, cols)).contiguous())
            for project, tokens in zip(self.output_projections, layers)
        ]
        return torch.stack(projected, dim=1).sum(dim=1), layers[-1][:, 0]


class ScaleHead(nn.Sequential):
    """MLP (Linear, ReLU, ..., Linear) from the class token to log metric scale; keys .0, .2, .4."""

    def __init__(self, dims: Sequence[int]):
        layers: list[nn.Module] = []
        for dim_in, dim_out in zip(dims[:-2], dims[1:-1]):
            layers += [nn.Linear(dim_in, dim_out), nn.ReLU()]
        super().__init__(*layers, nn.Linear(dims[-2], dims[-1]))


class MoGe2(nn.Module):
    """The MoGe-2 network, built from a checkpoint's `model_config`: `MoGe2(**model_config)`.

    The released config (ViT-L, 331M parameters) and the ViT-S / ViT-B ones build alike;
    `normal_head` may be absent (moge-2-vitl without normals).
    """

    def __init__(
        self,
        encoder: Mapping[str, Any],
        neck: Mapping[str, Any],
        points_head: Mapping[str, Any],
        mask_head: Mapping[str, Any],
        scale_head: Mapping[str, Any],
        normal_head: Optional[Mapping[str, Any]] = None,
        remap_output: str = "linear",
        num_tokens_range: Sequence[int] = (1200, 3600),
    ):
        super().__init__()
        if remap_output not in REMAPS:
            raise ValueError(f"unknown remap_output {remap_output!r} (known: {', '.join(REMAPS)})")
        self.remap_output = remap_output
        self.num_tokens_range = tuple(num_tokens_range)
        self.encoder = MoGeEncoder(**encoder)
        self.neck = ConvStack(**neck)
        self.points_head = ConvStack(**points_head)
        self.mask_head = ConvStack(**mask_head)
        self.normal_head = None if normal_head is None else ConvStack(**normal_head)
        self.scale_head = ScaleHead(**scale_head)

    @property
    def semantic_dim(self) -> int:
        """Channels of `forward_semantics` (the encoder's dim_out; 1024 when released)."""
        return self.encoder.dim_out

    def encode(self, image: torch.Tensor, rows: int, cols: int) -> tuple[torch.Tensor, torch.Tensor]:
        """image (B, 3, H, W) RGB in [0, 1] -> features (B, dim_out, rows, cols), class token (B, embed_dim)."""
        return self.encoder(image, rows, cols)

    def neck_inputs(self, features: torch.Tensor, aspect_ratio: float) -> list[torch.Tensor]:
        """[features | UV] at the token grid, then the UV map alone at 2x, 4x, ... (the IMAGE's aspect ratio)."""
        B, _, rows, cols = features.shape
        dtype = self.encoder.image_mean.dtype  # float32 also under autocast, as the official (image dtype) UV
        inputs = []
        for level in range(self.neck.levels):
            uv = normalized_view_plane_uv(cols * 2**level, rows * 2**level, aspect_ratio, dtype, features.device)
            uv = uv.permute(2, 0, 1).unsqueeze(0).expand(B, -1, -1, -1)  # (B, 2, rows 2^l, cols 2^l)
            inputs.append(torch.cat([features, uv], dim=1) if level == 0 else uv)
        return inputs

    def decode(self, features: torch.Tensor, cls_token: torch.Tensor, size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """Encoder outputs -> the geometry of `forward` at image size (H, W)."""
        H, W = size
        levels = self.neck(self.neck_inputs(features, W / H))

        def head(stack: ConvStack) -> torch.Tensor:  # finest level, resized to the image without antialias
            return F.interpolate(stack(levels)[-1], (H, W), mode="bilinear", align_corners=False, antialias=False)

        out = {
            "points": remap_points(head(self.points_head).permute(0, 2, 3, 1), self.remap_output),  # (B, H, W, 3)
            "mask": head(self.mask_head).squeeze(1).sigmoid(),  # (B, H, W)
            "metric_scale": self.scale_head(cls_token).squeeze(1).exp(),  # (B,)
        }
        if self.normal_head is not None:
            out["normal"] = F.normalize(head(self.normal_head).permute(0, 2, 3, 1), dim=-1)  # (B, H, W, 3)
        return out

    def forward(self, image: torch.Tensor, num_tokens: int) -> dict[str, torch.Tensor]:
        """image (B, 3, H, W) RGB in [0, 1] -> points (B, H, W, 3) affine, normal (B, H, W, 3) unit (if
        there is a normal head), mask (B, H, W) probabilities, metric_scale (B,), on `token_grid(H, W, num_tokens)`."""
        H, W = image.shape[-2:]
        return self.decode(*self.encode(image, *token_grid(H, W, num_tokens)), (H, W))

    def forward_semantics(self, image: torch.Tensor) -> torch.Tensor:
        """PPD's semantic prompt: encoder features on the DiT's (H/16, W/16) grid -> (B, H/16 * W/16, dim_out)."""
        H, W = image.shape[-2:]
        features, _ = self.encode(image, H // SEMANTIC_STRIDE, W // SEMANTIC_STRIDE)
        return features.flatten(2).transpose(1, 2)

    def forward_grid(self, image: torch.Tensor, rows: int, cols: int) -> dict[str, torch.Tensor]:
        """`forward` on an explicit token grid, plus `semantics` (B, rows * cols, dim_out) from the same pass.

        With (rows, cols) = (H // 16, W // 16) the semantics equal `forward_semantics(image)`
        exactly, so one encoder pass serves the DiT and the geometry heads. The geometry then
        differs from the official pipeline, which runs `infer` at 3600 tokens: a different,
        equally valid operating point of MoGe.
        """
        features, cls_token = self.encode(image, rows, cols)
        out = self.decode(features, cls_token, tuple(image.shape[-2:]))
        out["semantics"] = features.flatten(2).transpose(1, 2)
        return out

    @torch.inference_mode()
    def infer(
        self,
        image: torch.Tensor,
        num_tokens: Optional[int] = None,
        resolution_level: int = 9,
        fov_x: FovX = None,
        force_projection: bool = True,
        apply_mask: bool = True,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Metric depth, validity mask and normalised intrinsics of image (3, H, W) or (B, 3, H, W) in [0, 1].

        Returns what `geometry` does. The network runs in the dtype its Linear and Conv weights
        are held in (`load_moge2`'s dtype): float32 with autocast off when they are float32
        (unlike the official fp16 default), else under autocast in theirs, which they need;
        the focal / shift fit after it is float32 either way.
        `num_tokens` defaults to the budget of `resolution_level` (9 -> 3600 tokens); `fov_x`
        (degrees, a number or (B,)) fixes the focal instead of recovering it.
        `force_projection` only affects the official point map, which is not returned; it is
        accepted so that calls written for the official `infer` run unchanged.
        """
        del force_projection
        if image.dim() == 3:
            image = image.unsqueeze(0)
        image = image.to(self.encoder.image_mean.device, torch.float32)
        if num_tokens is None:
            num_tokens = tokens_for_level(resolution_level, self.num_tokens_range)
        weight = self.encoder.backbone.patch_embed.proj.weight  # held as every Linear and Conv weight is
        with torch.autocast(weight.device.type, dtype=weight.dtype, enabled=weight.dtype != torch.float32):
            out = self.forward(image, num_tokens)
        return self.geometry(out, fov_x, apply_mask)

    @staticmethod
    def geometry(
        out: Mapping[str, torch.Tensor], fov_x: FovX = None, apply_mask: bool = True
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`infer`'s float32 post-processing (autocast off) of the outputs of `forward` or `forward_grid`.

        Returns depth (H, W) float32 in the model's metric unit, +inf outside the mask when
        `apply_mask`; mask (H, W) bool; intrinsics (3, 3) with fx, cx divided by W and fy, cy
        by H (pixel (i, j) at ((j + 0.5) / W, (i + 0.5) / H)). A batch of B > 1 keeps its
        leading dimension.
        """
        points = out["points"]
        with torch.autocast(points.device.type, enabled=False):
            mask = out["mask"].float() > 0.5
            depth, mask, intrinsics = metric_depth(points.float(), mask, out["metric_scale"].float(), fov_x, apply_mask)
        if points.shape[0] == 1:
            depth, mask, intrinsics = depth[0], mask[0], intrinsics[0]
        return depth.cpu().numpy(), mask.cpu().numpy(), intrinsics.cpu().numpy()
