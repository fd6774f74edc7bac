"""One metric scale and one camera for a whole clip, decided once, before any frame is written.

The video model's depth p is one affine-invariant log-depth for the whole clip (every window
is aligned onto the first, frame 0 anchoring all), so one map from p to metres serves every
frame: a fit per frame would bring back the flicker the video model removes. The map comes
from, in order:
- `--align-to FILE`: a metric depth map of the clip's first chosen frame, fitted once;
- a depth range the user names (`--preset`, `--near`, `--far`, or `--scale-from range`);
- MoGe-2 on the keyframes of the first window (its slots 0, 8 and 15, the frames every later
  window is aligned through): log(1 + depth) = a p + b, one robust fit over their pooled pixels;
- else the default range, a guess that the summary says is one.
The camera: `--fov`, else MoGe-2's (the median over the keyframes), else 60 degrees (a guess).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import cv2
import numpy as np

from ppd_core.errors import BadInputError
from ppd_core.files.depth_file import read_depth_file
from ppd_core.geometry.align import AGREEMENT_TOLERANCE, LogDepthFit, align_to_reference, fit_log_depth, metric_from_fit
from ppd_core.geometry.camera import DEFAULT_CAMERA, Intrinsics, intrinsics_from_fov, intrinsics_from_normalized
from ppd_core.geometry.depth import clip_normalized, metric_from_normalized
from ppd_core.options import DEFAULT_HFOV_DEG, JobOptions
from ppd_core.photo_depth import MIN_MASKED_PIXELS, _fit_scale, _range_scale
from ppd_core.video import KEYFRAMES

#: MoGe-2's geometry of one frame: (uint8 RGB (H, W, 3)) -> MoGeGeometry (`VideoModel.geometry`).
GeometryOf = Callable[[np.ndarray], object]


@dataclass
class ClipScale:
    """The clip's one map from p to metres, its camera (pixels of the clip's frames), and where each came from."""

    intrinsics: Intrinsics
    scale_source: str
    camera_source: str
    fit: Optional[LogDepthFit] = None             # log(1 + depth) = a p + b, when fitted
    max_depth: Optional[float] = None             # the reference's farthest depth: nothing is put beyond it
    depth_range: Optional[tuple[float, float]] = None  # (near, far) of p's 0..1, when no fit
    keyframes: tuple[int, ...] = ()               # the frames MoGe-2 or the reference saw
    scale_guessed: bool = False
    warnings: list = field(default_factory=list)

    def metric(self, p: np.ndarray) -> tuple[np.ndarray, int]:
        """(metric depth float32 metres, pixels of p clipped to the trained range) of one frame's p."""
        p, clipped = clip_normalized(p)
        if self.fit is not None:
            return metric_from_fit(p, self.fit, max_depth=self.max_depth), clipped
        near, far = self.depth_range
        # as for a photo: nothing nearer than half of Near, where the log extrapolation would turn
        return np.maximum(metric_from_normalized(p, near, far), np.float32(0.5 * near)), clipped

    def describe(self) -> dict:
        """JSON-ready: the sources, the one fit and the keyframes, for every frame's depth info and the summary."""
        info = {"scale": self.scale_source, "camera": self.camera_source, "keyframes": list(self.keyframes)}
        if self.fit is not None:
            info["fit"] = {"a": self.fit.a, "b": self.fit.b, "inlier_share": self.fit.inlier_share,
                           "method": self.fit.method, "agreement": self.fit.agreement,
                           "tolerance": AGREEMENT_TOLERANCE}
        if self.depth_range is not None:
            info["depth_range_m"] = list(self.depth_range)
        if self.scale_guessed:
            info["scale_guessed"] = True
        if self.warnings:
            info["warnings"] = list(self.warnings)
        return info


def keyframe_positions(count: int) -> tuple[int, ...]:
    """Positions, among the first window's `count` frames, of its keyframe slots."""
    return tuple(sorted({min(slot, count - 1) for slot in KEYFRAMES}))


def _on_grid(p: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """p area-averaged (or, for a larger grid, interpolated) onto MoGe-2's grid."""
    if p.shape == shape:
        return p
    return cv2.resize(p, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)


def _moge_scale(first: Sequence[tuple[int, np.ndarray, np.ndarray]], geometry_of: GeometryOf,
                options: JobOptions) -> tuple[Optional[LogDepthFit], Optional[float], Optional[np.ndarray], list]:
    """(fit, farthest trusted depth, median normalised camera matrix, keyframe numbers) from MoGe-2
    on the keyframes of `first` ((frame number, rgb, p) of the first window); (None, None, None, [])
    when MoGe-2 trusts too few of their pixels."""
    chosen = [first[k] for k in keyframe_positions(len(first))]
    found = [(index, p, geometry_of(rgb)) for index, rgb, p in chosen]
    trusted = [(index, p, g) for index, p, g in found if g.mask.sum() >= MIN_MASKED_PIXELS]
    if not trusted:
        return None, None, None, []
    p_all = np.concatenate([_on_grid(p, g.depth.shape) for _, p, g in trusted])
    depth_all = np.concatenate([g.depth for _, _, g in trusted])
    mask_all = np.concatenate([g.mask for _, _, g in trusted])
    fit = fit_log_depth(p_all, depth_all, mask=mask_all, seed=options.seed)
    camera = np.median(np.stack([g.intrinsics for _, _, g in trusted]), axis=0)
    return fit, float(depth_all[mask_all].max()), camera, [index for index, _, _ in trusted]


def clip_scale(first: Sequence[tuple[int, np.ndarray, np.ndarray]], options: JobOptions,
               geometry_of: Optional[GeometryOf]) -> ClipScale:
    """The clip's scale and camera from the first window's frames `first` ((frame number, RGB, p)),
    the options, and MoGe-2 (`geometry_of`, None without its weights). Called once per clip."""
    index0, rgb0, p0 = first[0]
    height, width = rgb0.shape[:2]
    default_camera = (intrinsics_from_fov(width, height, options.fov or DEFAULT_HFOV_DEG),
                      "given field of view" if options.fov else DEFAULT_CAMERA)
    if options.align_to is not None:
        reference = read_depth_file(options.align_to, "metric")
        _, fit = align_to_reference(clip_normalized(p0)[0], reference, seed=options.seed)
        scale, warnings = _fit_scale(fit, f"{options.align_to} (frame {index0})")
        farthest = float(np.nanmax(np.where(np.isfinite(reference) & (reference > 0), reference, np.nan)))
        return ClipScale(default_camera[0], scale, default_camera[1], fit=fit, max_depth=farthest,
                         keyframes=(index0,), warnings=warnings)
    if options.scale_from == "moge2" and geometry_of is None:
        raise BadInputError("--scale-from moge2: no MoGe-2 weights (moge2.pt) beside the video weights; fetch them "
                            "with `ppd-weights download --only moge2.pt`, or leave --scale-from at auto")
    unscaled = "no MoGe-2 weights" if geometry_of is None else ""
    if geometry_of is not None and not (options.scale_from == "range" or options.range_given()):
        fit, farthest, camera, keyframes = _moge_scale(first, geometry_of, options)
        if fit is not None:
            scale, warnings = _fit_scale(fit, f"MoGe-2 on frames {', '.join(map(str, keyframes))}")
            intrinsics, camera_source = default_camera
            if not options.fov:
                intrinsics, camera_source = intrinsics_from_normalized(camera, width, height), "MoGe-2 (keyframes)"
            return ClipScale(intrinsics, scale, camera_source, fit=fit, max_depth=farthest,
                             keyframes=tuple(keyframes), warnings=warnings)
        if options.scale_from == "moge2":
            raise BadInputError(f"MoGe-2 trusts fewer than {MIN_MASKED_PIXELS} pixels of the clip's keyframes "
                                "(all sky?), so it gives no scale: use --scale-from range with --preset, --near "
                                "or --far")
        unscaled = f"MoGe-2 trusts fewer than {MIN_MASKED_PIXELS} pixels of the keyframes"
    scale, guessed, warnings = _range_scale(options, unscaled or "--scale-from range")
    return ClipScale(default_camera[0], scale, default_camera[1], depth_range=options.depth_range(),
                     scale_guessed=guessed, warnings=warnings)
