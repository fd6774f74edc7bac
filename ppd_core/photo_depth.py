"""The photo's metric depth and camera, and where each came from.

Depth comes from a depth file the user gives, or from the networks: PPD's relative depth p,
made metric by (in order) a reference depth map it is fitted to (`--align-to`), a depth range
the user names (preset, near/far), MoGe-2's metric depth it is fitted to (a robust fit of
log(1 + depth) = a p + b over MoGe-2's mask), or the default range (a guess, said so). The
camera is a given field of view, else EXIF, else MoGe-2's focal length, else 60 degrees (a
guess). MoGe-2's mask removes sky and invalid pixels (no wall of sky at the far distance).

`ModelCache` keeps one loaded model across photos (the command's photos, the worker's jobs)
and the last few photos' network results, so a change that only affects lifting and meshing
does not run the network again.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ppd_core.errors import BadInputError
from ppd_core.files.depth_file import read_depth_file
from ppd_core.files.photo import Photo
from ppd_core.files.result_file import read_saved_depth
from ppd_core.geometry.align import AGREEMENT_TOLERANCE, LogDepthFit, align_to_reference, fit_log_depth, metric_from_fit
from ppd_core.geometry.camera import Intrinsics, camera_for_photo, intrinsics_from_normalized, known_intrinsics
from ppd_core.geometry.depth import (
    MAX_DEPTH_M,
    MIN_DEPTH_M,
    clip_normalized,
    depth_to_metric,
    metric_from_normalized,
)
from ppd_core.options import DEFAULT_PRESET, JobOptions
from ppd_core.progress import ProgressCallback, report

ESTIMATES_KEPT = 4
"""Network results kept for re-meshing (about 7 MB each at 1024x768 with MoGe-2)."""
MIN_MASKED_PIXELS = 64
"""Fewer pixels on MoGe-2's mask than this cannot give a fit: the range is used instead."""
POOR_AGREEMENT = 0.5
"""A fit whose depths agree with fewer of the reference's pixels than this is reported as poor."""


@dataclass
class PhotoDepth:
    """The photo's metric depth (metres, NaN = none) and camera, and where each came from."""

    metric: np.ndarray
    intrinsics: Intrinsics
    scale_source: str
    camera_source: str
    model: str = ""                       # which networks made it ("" for a depth file)
    fit: Optional[LogDepthFit] = None
    masked_px: int = 0                    # pixels MoGe-2's mask removed (sky, invalid)
    reused: bool = False                  # the network result came from the cache
    clipped_px: int = 0                   # pixels of p outside the trained range, clipped before conversion
    precision: Optional[dict] = None      # the network's precision and why (`PrecisionChoice.describe`)
    scale_guessed: bool = False           # metres from a range nobody named: sizes are not measured
    warnings: list = field(default_factory=list)  # one line each: a guessed scale, a poor fit, another photo's file

    def describe(self) -> dict:
        """JSON-ready: the sources, the fit and the mask, for the summary and the worker's result."""
        info = {"scale": self.scale_source, "camera": self.camera_source, "model": self.model,
                "masked_px": self.masked_px, "network_reused": self.reused, "clipped_px": self.clipped_px,
                "clipped_share": round(self.clipped_px / max(self.metric.size, 1), 4)}
        if self.precision:
            info["precision"] = self.precision
        if self.scale_guessed:
            info["scale_guessed"] = True
        if self.warnings:
            info["warnings"] = list(self.warnings)
        if self.fit is not None:
            info["fit"] = {"a": self.fit.a, "b": self.fit.b, "inlier_share": self.fit.inlier_share,
                           "method": self.fit.method, "agreement": self.fit.agreement,
                           "tolerance": AGREEMENT_TOLERANCE}
        return info


@dataclass
class ModelCache:
    """One loaded depth model, reused while weights, device, precision and semantics stay the
    same, and the network results of the last `ESTIMATES_KEPT` photos."""

    key: Optional[tuple] = None
    model: object = None
    loads: int = 0
    network_runs: int = 0                 # photos the networks ran on (cache hits do not count)
    estimates: OrderedDict = field(default_factory=OrderedDict)

    def get(self, options: JobOptions, on_progress: Optional[ProgressCallback] = None):
        """The model for these options, loading it (and dropping the old one) if needed."""
        from ppd_core.model.inference import DepthModel  # loads torch (~2 s): only when a network runs

        key = (str(options.weights) if options.weights else None, options.device, options.precision,
               options.semantics, options.scale_from != "range")
        if self.model is None or key != self.key:
            self.model = None
            self.estimates.clear()
            self.model = DepthModel.load(options.weights, device=options.device, precision=options.precision,
                                         semantics=options.semantics, geometry=key[-1], on_progress=on_progress)
            self.key = key
            self.loads += 1
        else:
            report(on_progress, "model", 1.0, "model already loaded")
        return self.model

    def estimate(self, photo: Photo, options: JobOptions, fov_x: Optional[float],
                 on_progress: Optional[ProgressCallback] = None) -> tuple[object, bool]:
        """(the networks' `DepthEstimate` of the photo, whether it came from the cache). The
        cache key is the photo's pixels and every option that changes the network's output."""
        model = self.get(options, on_progress)
        key = (photo_digest(photo), photo.rgb.shape, options.steps,
               options.resolution, options.seed, options.moge_pass, fov_x)
        if key in self.estimates:
            self.estimates.move_to_end(key)
            report(on_progress, "diffusion", 1.0, "depth of this photo already computed")
            return self.estimates[key], True
        found = model.estimate(photo.rgb, options.steps, options.resolution, options.seed, fov_x=fov_x,
                               moge_pass=options.moge_pass, on_progress=on_progress)
        self.network_runs += 1
        self.estimates[key] = found
        while len(self.estimates) > ESTIMATES_KEPT:
            self.estimates.popitem(last=False)
        return found, False


def _check_aspect(values: np.ndarray, path: str, photo: Photo, what: str) -> None:
    height, width = values.shape
    aspect = photo.width / photo.height
    if abs(width / height - aspect) > 0.01 * aspect:
        turned = abs(height / width - aspect) <= 0.01 * aspect
        hint = "; photos are read upright (EXIF orientation applied): turn the depth map too" if turned else ""
        raise BadInputError(f"{path}: {what} is {width}x{height} but the photo "
                            f"{photo.path} is {photo.width}x{photo.height} (another aspect ratio{hint})")


def _usable(metric: np.ndarray, path: str, kind: str) -> np.ndarray:
    if not np.isfinite(metric).any():
        raise BadInputError(
            f"{path}: no usable depth: every value is NaN, infinite, zero, negative or outside "
            f"{MIN_DEPTH_M:g}..{MAX_DEPTH_M:g} m once read as {kind} depth (check --depth-kind and the file's units)")
    return metric


def photo_digest(photo: Photo) -> str:
    """A fingerprint of the photo's upright pixels: what the network saw, whatever the file's name."""
    return hashlib.sha1(np.ascontiguousarray(photo.rgb).data).hexdigest()


def photo_identity(photo: Photo) -> dict:
    """The photo a result was made from (name, size, pixel digest), kept in its depth info so
    that a saved result is only ever re-meshed for its own photo."""
    return {"name": photo.path.name, "size": [photo.width, photo.height], "sha1": photo_digest(photo)}


def _range_scale(options: JobOptions, unscaled: str = "") -> tuple[str, bool, list[str]]:
    """(words, guessed, warnings) of a depth range: one the user named, or the default one,
    which is a guess because `unscaled` (why nothing gave a scale)."""
    near, far = options.depth_range()
    if options.near is not None or options.far is not None:
        return f"depth range {near:g}-{far:g} m (as given)", False, []
    if options.preset is not None:
        return f"{options.preset} range {near:g}-{far:g} m (as given)", False, []
    why = unscaled or "no range was named"
    words = f"{DEFAULT_PRESET} range {near:g}-{far:g} m, a guess: {why}"
    warning = (f"the scale is a guess ({why}): sizes in metres are not measured; name a range "
               "(--preset, --near, --far) or a metric reference (--align-to)")
    return words, True, [warning]


def _fit_scale(fit: LogDepthFit, source: str) -> tuple[str, list[str]]:
    """(words, warnings) of a scale fitted to `source`: its agreement, and a warning when poor."""
    agree = f"{fit.agreement:.0%} of its pixels within {AGREEMENT_TOLERANCE:.0%}"
    words = f"fit to {source}: {agree}" + ("" if fit.method == "fit" else f" ({fit.method})")
    if fit.method != "fit" or fit.agreement < POOR_AGREEMENT:
        failed = "" if fit.method == "fit" else f"; the fit failed and fell back to a {fit.method.split()[0]} scale"
        return words, [f"the fit to {source} is poor (only {agree}{failed}): sizes may be off; check that it "
                       "shows the same view as the photo"]
    return words, []


def _aligned(p: np.ndarray, options: JobOptions) -> tuple[np.ndarray, LogDepthFit]:
    """p fitted to the metric reference file `options.align_to`."""
    return align_to_reference(p, read_depth_file(options.align_to, "metric"), seed=options.seed)


def _saved_photo_check(photo: Photo, path: str, info: dict, camera) -> list[str]:
    """Refuse a result file of another photo; warnings when it cannot be told for sure."""
    saved = info.get("photo") if isinstance(info.get("photo"), dict) else {}
    other = f"{path} was made from another photo ({saved.get('name') or 'of another size'}"
    if camera is not None and (camera.width, camera.height) != (photo.width, photo.height):
        raise BadInputError(f"{other}, {camera.width}x{camera.height}), not {photo.path} "
                            f"({photo.width}x{photo.height}): re-mesh it with the photo it came from")
    if saved.get("sha1"):
        if saved["sha1"] != photo_digest(photo):
            raise BadInputError(f"{other}, other pixels), not {photo.path}: re-mesh it with the photo it came from")
        return []
    if saved.get("name", photo.path.name) != photo.path.name:
        return [f"{path} was made from {saved['name']}, not {photo.path.name}, and holds no fingerprint to "
                "tell whether they are the same photo"]
    return []


def depth_from_result(photo: Photo, options: JobOptions) -> PhotoDepth:
    """The metric depth and camera saved in a result file (`--npz` output) of this photo: the
    network's work reused, scale and camera as they were (a given field of view still wins)."""
    path = options.depth_file
    if options.depth_kind != "metric":
        raise BadInputError(f"{path}: a result file holds metric depth: leave --depth-kind at metric")
    depth, info, camera = read_saved_depth(path)
    if depth is None:
        raise BadInputError(f"{path}: this result file holds no depth map (it was written without one): "
                            "run the photo again to get one")
    _check_aspect(depth, path, photo, "saved depth map")
    warnings = _saved_photo_check(photo, path, info, camera)
    saved_camera = None if camera is None else (camera.intrinsics.scaled(photo.width, photo.height),
                                                f"saved result ({info.get('camera', 'its camera')})")
    intrinsics, camera_source = camera_for_photo(photo, options.fov, saved_camera)
    saved_warnings = [w for w in info.get("warnings", []) if isinstance(w, str)]
    return PhotoDepth(depth, intrinsics, f"saved result ({info.get('scale', 'its scale')})", camera_source,
                      model=info.get("model", ""), masked_px=int(info.get("masked_px", 0)), reused=True,
                      precision=info.get("precision") if isinstance(info.get("precision"), dict) else None,
                      scale_guessed=bool(info.get("scale_guessed")), warnings=warnings + saved_warnings)


def depth_from_file(photo: Photo, options: JobOptions, on_progress: Optional[ProgressCallback] = None) -> PhotoDepth:
    """Metric depth from `options.depth_file` (the photo's aspect ratio), scaled by its kind, a
    reference it is fitted to, or a range; a result file (.npz) gives back its saved depth and camera."""
    path = options.depth_file
    if str(path).lower().endswith(".npz"):
        report(on_progress, "model", 0.0, f"reading the saved result {path}")
        return depth_from_result(photo, options)
    report(on_progress, "model", 0.0, f"reading depth file {path}")
    values = read_depth_file(path, options.depth_kind)
    _check_aspect(values, path, photo, "depth map")
    fit, guessed, warnings = None, False, []
    if options.align_to is not None:
        metric, fit = _aligned(values, options)
        scale, warnings = _fit_scale(fit, options.align_to)
    elif options.range_given() or options.depth_kind == "normalized":
        metric = depth_to_metric(values, options.depth_kind, *options.depth_range())
        scale, guessed, warnings = _range_scale(options, "normalised depth has no scale of its own")
    else:
        metric = depth_to_metric(values, options.depth_kind)
        scale = f"depth file ({'metres' if options.depth_kind == 'metric' else 'disparity, 1/m'})"
    report(on_progress, "diffusion", 1.0, "depth from file")
    intrinsics, camera_source = camera_for_photo(photo, options.fov)
    return PhotoDepth(_usable(metric, path, options.depth_kind), intrinsics, scale, camera_source, fit=fit,
                      scale_guessed=guessed, warnings=warnings)


def depth_from_network(photo: Photo, options: JobOptions, models: ModelCache,
                       on_progress: Optional[ProgressCallback] = None) -> PhotoDepth:
    """Metric depth (metres, the network's working size) and camera of the photo from the networks."""
    model = models.get(options, on_progress)
    if options.scale_from == "moge2" and model.geometry_model is None:
        raise BadInputError(f"--scale-from moge2: no MoGe-2 weights beside {model.description.split(';')[0]} "
                            f"({model.source}); fetch them with `ppd-weights download`, or leave --scale-from at auto")
    known, _ = known_intrinsics(photo, options.fov)
    estimate, reused = models.estimate(photo, options, known.hfov_deg if known else None, on_progress)
    geometry = estimate.geometry
    p, clipped = clip_normalized(estimate.p)
    masked = 0
    unscaled = "no MoGe-2 weights" if model.geometry_model is None else ""
    if geometry is not None and geometry.mask.sum() < MIN_MASKED_PIXELS:
        if options.scale_from == "moge2":
            raise BadInputError(f"{photo.path}: MoGe-2 trusts fewer than {MIN_MASKED_PIXELS} of its pixels (all sky?), "
                                "so it gives no scale: use --scale-from range with --preset, --near or --far")
        geometry = None  # MoGe-2 trusts nothing here (all sky?): the range it is
        unscaled = f"MoGe-2 trusts fewer than {MIN_MASKED_PIXELS} of its pixels"
    fit, guessed, warnings = None, False, []
    if options.align_to is not None:
        metric, fit = _aligned(p, options)
        scale, warnings = _fit_scale(fit, options.align_to)
    elif geometry is None or options.scale_from == "range" or options.range_given():
        near, far = options.depth_range()
        # p down to -0.5 is nearer than Near; from a small Near the log extrapolation would cross
        # zero (behind the camera), so nothing comes nearer than half of Near.
        metric = np.maximum(metric_from_normalized(p, near, far), np.float32(0.5 * near))
        scale, guessed, warnings = _range_scale(options, unscaled or "--scale-from range")
    else:
        fit = fit_log_depth(p, geometry.depth, mask=geometry.mask, seed=options.seed)
        metric = metric_from_fit(p, fit, max_depth=float(geometry.depth[geometry.mask].max()))
        scale, warnings = _fit_scale(fit, "MoGe-2")
    if geometry is not None:
        metric = np.where(geometry.mask, metric, np.nan).astype(np.float32)
        masked = int(np.count_nonzero(~geometry.mask))
    moge_camera = None if geometry is None else (
        intrinsics_from_normalized(geometry.intrinsics, photo.width, photo.height), "MoGe-2")
    intrinsics, camera_source = camera_for_photo(photo, options.fov, moge_camera)
    return PhotoDepth(metric, intrinsics, scale, camera_source, model=model.description, fit=fit,
                      masked_px=masked, reused=reused, precision=model.precision_choice.describe(),
                      clipped_px=clipped, scale_guessed=guessed, warnings=warnings)


def photo_depth(photo: Photo, options: JobOptions, models: Optional[ModelCache] = None,
                on_progress: Optional[ProgressCallback] = None) -> PhotoDepth:
    """The photo's metric depth and camera: from the depth file when there is one, else the networks."""
    if options.depth_file is not None:
        return depth_from_file(photo, options, on_progress)
    return depth_from_network(photo, options, models or ModelCache(), on_progress)
