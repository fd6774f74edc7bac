"""MoGe-2's camera geometry: view-plane UV maps, focal/shift recovery and `infer()`'s post-processing.

A MoGe point map is affine-invariant in depth: its z is known up to a shift, and the focal
length is not predicted at all. `recover_focal_shift` finds both from the map, on a 64 x 64
nearest-neighbour subsample, with the official solver call (scipy's Levenberg-Marquardt with
its loose ftol=1e-3, which the released numbers depend on). Focal lengths are relative to
half the image diagonal; the returned intrinsics are normalised by width and height.
"""

from __future__ import annotations

from typing import Callable, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F

SUBSAMPLE = (64, 64)
FovX = Union[float, torch.Tensor, np.ndarray, None]


def normalized_view_plane_uv(
    width: int,
    height: int,
    aspect_ratio: Optional[float] = None,
    dtype: torch.dtype = torch.float32,
    device: Optional[torch.device] = None,
) -> torch.Tensor:
    """(height, width, 2) pixel centres (u, v) of a plane spanning +-(W, H) / diagonal.

    `aspect_ratio` (W / H) defaults to width / height; MoGe passes the image's for every level.
    """
    if aspect_ratio is None:
        aspect_ratio = width / height
    span_x = aspect_ratio / (1 + aspect_ratio**2) ** 0.5
    span_y = 1 / (1 + aspect_ratio**2) ** 0.5
    end_x, end_y = span_x * (width - 1) / width, span_y * (height - 1) / height
    u = torch.linspace(-end_x, end_x, width, dtype=dtype, device=device)
    v = torch.linspace(-end_y, end_y, height, dtype=dtype, device=device)
    u, v = torch.meshgrid(u, v, indexing="xy")
    return torch.stack([u, v], dim=-1)


def image_uv(
    height: int, width: int, dtype: torch.dtype = torch.float32, device: Optional[torch.device] = None
) -> torch.Tensor:
    """(height, width, 2) normalised pixel centres ((j + 0.5) / W, (i + 0.5) / H), as utils3d's `image_uv`."""
    u = torch.linspace(0.5 / width, (width - 0.5) / width, width, dtype=dtype, device=device)
    v = torch.linspace(0.5 / height, (height - 0.5) / height, height, dtype=dtype, device=device)
    u, v = torch.meshgrid(u, v, indexing="xy")
    return torch.stack([u, v], dim=2)


def intrinsics_from_focal(fx: torch.Tensor, fy: torch.Tensor, cx: float = 0.5, cy: float = 0.5) -> torch.Tensor:
    """(B, 3, 3) [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] for fx, fy of shape (B,)."""
    zeros, ones = torch.zeros_like(fx), torch.ones_like(fx)
    rows = [fx, zeros, torch.full_like(fx, cx), zeros, fy, torch.full_like(fy, cy), zeros, zeros, ones]
    return torch.stack(rows, dim=-1).unflatten(-1, (3, 3))


def depth_to_points(depth: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
    """Camera-space points (B, H, W, 3) of depth (B, H, W) seen through normalised intrinsics (B, 3, 3)."""
    H, W = depth.shape[-2:]
    uv = image_uv(H, W, dtype=depth.dtype, device=depth.device)
    homogeneous = torch.cat([uv, torch.ones_like(uv[..., :1])], dim=-1)  # (H, W, 3)
    rays = homogeneous @ torch.inverse(intrinsics)[..., None, :, :].transpose(-2, -1)  # (B, H, W, 3)
    return rays * depth[..., None]


def _official_least_squares(residuals: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """float32 shift from the official solver call: LM from 0 with ftol=1e-3 (stops early on inconsistent maps)."""
    from scipy.optimize import least_squares  # slow to import; only infer() needs it

    return least_squares(residuals, x0=0, ftol=1e-3, method="lm").x.squeeze().astype(np.float32)


def solve_optimal_focal_shift(uv: np.ndarray, xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 (shift, focal) minimising |focal * xy / (z + shift) - uv|; the focal in closed form per shift."""
    uv, xy, z = uv.reshape(-1, 2), xyz[..., :2].reshape(-1, 2), xyz[..., 2].reshape(-1)

    def residuals(shift: np.ndarray) -> np.ndarray:
        xy_proj = xy / (z + shift)[:, None]
        focal = (xy_proj * uv).sum() / np.square(xy_proj).sum()
        return (focal * xy_proj - uv).ravel()

    shift = _official_least_squares(residuals)
    xy_proj = xy / (z + shift)[:, None]
    return shift, (xy_proj * uv).sum() / np.square(xy_proj).sum()


def solve_optimal_shift(uv: np.ndarray, xyz: np.ndarray, focal: np.ndarray) -> np.ndarray:
    """float32 shift minimising |focal * xy / (z + shift) - uv| for a known focal."""
    uv, xy, z = uv.reshape(-1, 2), xyz[..., :2].reshape(-1, 2), xyz[..., 2].reshape(-1)

    def residuals(shift: np.ndarray) -> np.ndarray:
        return (focal * (xy / (z + shift)[:, None]) - uv).ravel()

    return _official_least_squares(residuals)


def recover_focal_shift(
    points: torch.Tensor, mask: Optional[torch.Tensor] = None, focal: Optional[torch.Tensor] = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(focal, shift), each (B,) float32, of point maps (B, H, W, 3) over `mask` (B, H, W) bool.

    With `focal` (B,) given only the shift is solved and the focal is returned as given.
    A sample with fewer than 2 valid subsampled pixels gets focal 1, shift 0.
    """
    B, H, W, _ = points.shape
    uv = normalized_view_plane_uv(W, H, dtype=points.dtype, device=points.device)
    points_lr = F.interpolate(points.permute(0, 3, 1, 2), SUBSAMPLE, mode="nearest").permute(0, 2, 3, 1).cpu().numpy()
    uv_lr = F.interpolate(uv[None].permute(0, 3, 1, 2), SUBSAMPLE, mode="nearest")[0].permute(1, 2, 0).cpu().numpy()
    mask_lr = None if mask is None else (F.interpolate(mask.float()[:, None], SUBSAMPLE, mode="nearest")[:, 0] > 0)
    focals, shifts = [], []
    for i in range(B):
        xyz_i = points_lr[i] if mask_lr is None else points_lr[i][mask_lr[i].cpu().numpy()]
        uv_i = uv_lr if mask_lr is None else uv_lr[mask_lr[i].cpu().numpy()]
        if uv_i.shape[0] < 2:
            focals.append(1.0)
            shifts.append(0.0)
        elif focal is None:
            shift_i, focal_i = solve_optimal_focal_shift(uv_i, xyz_i)
            focals.append(float(focal_i))
            shifts.append(float(shift_i))
        else:
            shifts.append(float(solve_optimal_shift(uv_i, xyz_i, focal[i].cpu().numpy())))
    shift = torch.tensor(shifts, dtype=points.dtype, device=points.device)
    if focal is not None:
        return focal.reshape(B), shift
    return torch.tensor(focals, dtype=points.dtype, device=points.device), shift


def focal_from_fov_x(fov_x: FovX, aspect_ratio: float, batch: int, device: torch.device) -> torch.Tensor:
    """(B,) focal relative to half the diagonal for a horizontal field of view in degrees (a number or (B,))."""
    fov = torch.as_tensor(fov_x, dtype=torch.float32, device=device)
    focal = aspect_ratio / (1 + aspect_ratio**2) ** 0.5 / torch.tan(torch.deg2rad(fov / 2))
    return focal[None].expand(batch) if focal.ndim == 0 else focal


def metric_depth(
    points: torch.Tensor, mask: torch.Tensor, metric_scale: torch.Tensor, fov_x: FovX = None, apply_mask: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`infer()`'s post-processing of a forward output, in float32.

    points (B, H, W, 3) affine point map, mask (B, H, W) bool (probability > 0.5), metric_scale (B,)
    -> depth (B, H, W) metric, +inf outside the mask when `apply_mask`; mask (B, H, W) bool, also
    dropping pixels whose shifted depth is not positive; intrinsics (B, 3, 3) normalised
    (fx, cx by the width, fy, cy by the height; principal point at the centre).
    """
    B, H, W, _ = points.shape
    aspect_ratio = W / H
    if fov_x is None:
        focal, shift = recover_focal_shift(points, mask)
    else:
        focal = focal_from_fov_x(fov_x, aspect_ratio, B, points.device)
        _, shift = recover_focal_shift(points, mask, focal=focal)
    diagonal = (1 + aspect_ratio**2) ** 0.5  # in units of the image height
    intrinsics = intrinsics_from_focal(focal / 2 * diagonal / aspect_ratio, focal / 2 * diagonal)
    depth = points[..., 2] + shift[:, None, None]
    mask = mask & (depth > 0)
    depth = depth * metric_scale[:, None, None]
    if apply_mask:
        depth = torch.where(mask, depth, torch.inf)
    return depth, mask, intrinsics
