"""The photo's metric depth: read from a depth file the user gives, or predicted by the network
and given metres by a depth range (a preset or near/far).

`ModelCache` keeps one loaded network across photos (the command's photos, the worker's jobs).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ppd_core.errors import BadInputError
from ppd_core.files.depth_file import read_depth_file
from ppd_core.files.photo import Photo
from ppd_core.geometry.depth import MAX_DEPTH_M, MIN_DEPTH_M, depth_to_metric, metric_from_normalized
from ppd_core.options import JobOptions
from ppd_core.progress import ProgressCallback, report


class ModelCache:
    """Keeps one loaded depth model, reused while weights, device and precision stay the same."""

    def __init__(self) -> None:
        self.key: Optional[tuple] = None
        self.model = None
        self.loads = 0

    def get(self, weights: Optional[str], device: str, precision: str,
            on_progress: Optional[ProgressCallback] = None):
        """The model for these settings, loading it (and dropping the old one) if needed."""
        from ppd_core.model.inference import DepthModel  # loads torch (~2 s): only when a network runs

        key = (str(weights) if weights else None, device, precision)
        if self.model is None or key != self.key:
            self.model = None
            self.model = DepthModel.load(weights, device=device, precision=precision, on_progress=on_progress)
            self.key = key
            self.loads += 1
        else:
            report(on_progress, "model", 1.0, "model already loaded")
        return self.model


def depth_from_file(photo: Photo, options: JobOptions, on_progress: Optional[ProgressCallback] = None) -> np.ndarray:
    """Metric depth (metres) from `options.depth_file`, which must have the photo's aspect ratio."""
    path = options.depth_file
    report(on_progress, "model", 0.0, f"reading depth file {path}")
    values = read_depth_file(path, options.depth_kind)
    height, width = values.shape
    aspect = photo.width / photo.height
    if abs(width / height - aspect) > 0.01 * aspect:
        turned = abs(height / width - aspect) <= 0.01 * aspect
        hint = "; photos are read upright (EXIF orientation applied): turn the depth map too" if turned else ""
        raise BadInputError(f"{path}: depth map is {width}x{height} but the photo "
                            f"{photo.path} is {photo.width}x{photo.height} (another aspect ratio{hint})")
    explicit = options.preset is not None or options.near is not None or options.far is not None
    near, far = options.depth_range() if explicit or options.depth_kind == "normalized" else (None, None)
    metric = depth_to_metric(values, options.depth_kind, near, far)
    if not np.isfinite(metric).any():
        raise BadInputError(
            f"{path}: no usable depth: every value is NaN, infinite, zero, negative or outside "
            f"{MIN_DEPTH_M:g}..{MAX_DEPTH_M:g} m once read as {options.depth_kind} "
            f"depth (check --depth-kind and the file's units)")
    report(on_progress, "diffusion", 1.0, "depth from file")
    return metric


def depth_from_network(photo: Photo, options: JobOptions, models: ModelCache,
                       on_progress: Optional[ProgressCallback] = None) -> np.ndarray:
    """Metric depth (metres, the network's working size) predicted for the photo, its
    normalised log-depth mapped onto the options' depth range."""
    model = models.get(options.weights, options.device, options.precision, on_progress)
    p = model.predict(photo.rgb, steps=options.steps, resolution=options.resolution, seed=options.seed,
                      on_progress=on_progress)
    return metric_from_normalized(p, *options.depth_range())


def metric_depth(photo: Photo, options: JobOptions, models: Optional[ModelCache] = None,
                 on_progress: Optional[ProgressCallback] = None) -> np.ndarray:
    """Metric depth (metres) of the photo: from the depth file when there is one, else the network."""
    if options.depth_file is not None:
        return depth_from_file(photo, options, on_progress)
    return depth_from_network(photo, options, models or ModelCache(), on_progress)
