"""Where a clip's run cut short picks up again: the next window's state and the clip's scale.

On a CPU a video frame costs minutes, so a run stopped at frame 290 of 300 (Ctrl+C, a crash, a
closed laptop) must not compute the 290 again. Before each window after the first, the run
saves what that window takes from the ones before it (`WindowState`: three aligned depth
maps) and the clip's one scale, in a hidden file of the clip's folder. `--skip-existing` then
starts at that window when every frame before it is complete and the run is the same one
(options, chosen frames, clip, network files, precision); its frames come out exactly as an
uninterrupted run's. Anything else (no file, a damaged one, another run's) starts from the
first window, as before. The file goes when the run ends.
"""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile
from pathlib import Path
from typing import Optional

import numpy as np

from ppd_core.clip_scale import ClipScale
from ppd_core.geometry.align import LogDepthFit
from ppd_core.geometry.camera import Intrinsics
from ppd_core.video import OVERLAP, WindowState

STATE_FORMAT = "ppd-clip-resume-1"


def resume_path(folder: Path, clip_name: str) -> Path:
    """The clip's resume file: hidden, beside its outputs."""
    return Path(folder) / f".{clip_name}_resume.npz"


def scale_from_dict(values: dict) -> ClipScale:
    """A `ClipScale` from `dataclasses.asdict` of one (JSON floats give the same doubles back)."""
    values = dict(values)
    values["intrinsics"] = Intrinsics(**values["intrinsics"])
    if values.get("fit") is not None:
        values["fit"] = LogDepthFit(**values["fit"])
    if values.get("depth_range") is not None:
        values["depth_range"] = tuple(values["depth_range"])
    values["keyframes"] = tuple(values["keyframes"])
    return ClipScale(**values)


def state_bytes(state: WindowState, scale: ClipScale, key: dict) -> bytes:
    """The resume file's contents: the reference depths, and the window, scale and run key as JSON."""
    meta = {"format": STATE_FORMAT, "window": state.window, "scale": dataclasses.asdict(scale), "key": key}
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.array(json.dumps(meta)),
             **{f"reference_{slot}": depth for slot, depth in enumerate(state.reference_depths)})
    return buffer.getvalue()


def read_state(path: Path, key: dict) -> Optional[tuple[WindowState, ClipScale]]:
    """(the window to start at and its references, the clip's scale) saved by the same run, or None
    when there is no file, it is damaged, or another run (`key`) wrote it."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta.get("format") != STATE_FORMAT or meta.get("key") != json.loads(json.dumps(key)):
                return None
            depths = [np.asarray(data[f"reference_{slot}"], dtype=np.float32) for slot in range(OVERLAP)]
        window = int(meta["window"])
        if window < 1 or any(depth.ndim != 2 or not np.isfinite(depth).all() for depth in depths):
            return None
        return WindowState(window, depths), scale_from_dict(meta["scale"])
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile):  # missing, cut short or not ours
        return None
