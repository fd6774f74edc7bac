"""A clip's coloured depth preview video, made from its 16-bit depth sequence, and written atomically.

Every frame is coloured by one fixed depth range, the clip's (near and far of its first window),
on a log scale: a colour means the same distance in every frame, so the video shows the depth's
own steadiness, not a per-frame normalisation's. Frames are read back one at a time from the
depth PNGs and encoded with PyAV (H.264 in an MP4) into a staging folder beside the final name,
which the video takes only once it is complete.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterable, Optional

import cv2
import numpy as np

from ppd_core.errors import OutputError
from ppd_core.files.depth_file import read_depth_file
from ppd_core.files.staging import make_staging, move_into_place
from ppd_core.progress import ProgressCallback, report

CODEC, PIXEL_FORMAT, QUALITY = "libx264", "yuv420p", "18"  # visually lossless (crf 18), as the official video


def preview_colours(depth: np.ndarray, near: float, far: float) -> np.ndarray:
    """uint8 RGB (H, W, 3) of metric depth (NaN: none, black): near warm, far cold, log-spaced in [near, far]."""
    near, far = max(float(near), 1e-6), max(float(far), float(near) * 1.001, 2e-6)
    valid = np.isfinite(depth) & (depth > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        nearness = (np.log(far) - np.log(np.where(valid, depth, far))) / (np.log(far) - np.log(near))
    codes = np.clip(np.rint(nearness * 255.0), 0, 255).astype(np.uint8)
    colours = cv2.cvtColor(cv2.applyColorMap(codes, cv2.COLORMAP_TURBO), cv2.COLOR_BGR2RGB)
    colours[~valid] = 0
    return colours


def _even(image: np.ndarray) -> np.ndarray:
    """H.264 in 4:2:0 wants even sides: an odd last row or column is repeated."""
    height, width = image.shape[:2]
    return cv2.copyMakeBorder(image, 0, height % 2, 0, width % 2, cv2.BORDER_REPLICATE)


def write_preview_video(depth_files: Iterable[Path], path: Path, fps: float, near: float, far: float, *,
                        count: Optional[int] = None, on_progress: Optional[ProgressCallback] = None) -> Path:
    """Encode the 16-bit depth PNGs (millimetres) as a coloured MP4 at `path`; it appears whole or not at all."""
    import av  # PyAV loads FFmpeg: only when a video is written

    staging = make_staging(path.parent)
    staged = staging / path.name
    try:
        with av.open(str(staged), "w") as container:
            stream = None
            for number, file in enumerate(depth_files):
                picture = _even(preview_colours(read_depth_file(file, "metric"), near, far))
                if stream is None:
                    stream = container.add_stream(CODEC, rate=max(1, round(fps)), options={"crf": QUALITY})
                    stream.width, stream.height, stream.pix_fmt = picture.shape[1], picture.shape[0], PIXEL_FORMAT
                for packet in stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                    container.mux(packet)
                if count:
                    report(on_progress, "export", (number + 1) / count, f"depth video: frame {number + 1}/{count}")
            if stream is None:
                raise OutputError(f"{path}: no depth frames to make the video of")
            for packet in stream.encode():
                container.mux(packet)
        move_into_place([(staged, path)], replace=True)
    except OSError as error:
        raise OutputError(f"{path}: cannot write ({error.strerror or error})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def video_problem(path: Path, frames: int) -> Optional[str]:
    """What is wrong with a depth video that should hold `frames` frames (None: nothing; "missing")."""
    import av

    if not path.is_file():
        return "missing"
    try:
        with av.open(str(path)) as container:
            found = sum(1 for _ in container.decode(video=0))
    except (av.FFmpegError, OSError, ValueError, IndexError) as error:
        return f"unreadable ({str(error).strip()[:120] or type(error).__name__})"
    return None if found == frames else f"{found} frames, not {frames}"
