"""Reading a clip frame by frame: a video file (PyAV, whose wheels ship their own FFmpeg) or a
folder of frames (its images in name order, numbers compared as numbers).

`open_clip` checks what can be checked before any network runs: the file decodes, it has a
video stream and at least one frame, every frame is within the image-size limit
(`mesh.image_size.MAX_IMAGE_PIXELS`), the selection (`--frames A:B`, `--stride N`) leaves a
frame. `Clip.frames` then yields the chosen frames one at a time, upright RGB uint8: a clip
of any length is never held in memory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Union

import numpy as np

from mesh.image_size import MAX_IMAGE_PIXELS, ImageTooLarge, check_image_size
from ppd_core.errors import BadInputError
from ppd_core.files.photo import load_image
from ppd_core.options import PHOTO_SUFFIXES

DEFAULT_FPS = 24.0
"""Frame rate of a folder of frames (a file says its own)."""


@dataclass(frozen=True)
class FrameSelection:
    """Frames start, start + stride, ... below stop (None: to the end), counted from 0 in the clip."""

    start: int = 0
    stop: Optional[int] = None
    stride: int = 1

    @classmethod
    def parse(cls, frames: Optional[str], stride: int = 1) -> FrameSelection:
        """From the options' `frames` ("A:B", "A:", ":B" or None) and `stride`."""
        if not frames:
            return cls(0, None, stride)
        match = re.fullmatch(r"(\d*):(\d*)", frames.strip())
        if match is None:
            raise BadInputError(f"--frames {frames!r}: use A:B (frames A up to B, not B itself; from 0)")
        start = int(match.group(1)) if match.group(1) else 0
        stop = int(match.group(2)) if match.group(2) else None
        if stop is not None and stop <= start:
            raise BadInputError(f"--frames {frames}: selects no frame (the end must come after the start)")
        return cls(start, stop, stride)

    def indices(self, count: int) -> range:
        """The chosen frame numbers of a clip of `count` frames."""
        return range(self.start, count if self.stop is None else min(self.stop, count), self.stride)


@dataclass(frozen=True)
class Clip:
    """A readable clip: its size, frame count and rate, and where its frames come from."""

    path: Path
    width: int
    height: int
    frame_count: int
    fps: float
    frame_files: tuple[Path, ...] = ()      # a folder's frames, in order (empty for a video file)

    @property
    def name(self) -> str:
        """What the clip's outputs are named after: the file's stem or the folder's name."""
        return self.path.stem if self.path.is_file() else self.path.name

    def frames(self, selection: FrameSelection = FrameSelection()) -> Iterator[tuple[int, np.ndarray]]:
        """(frame number, uint8 (H, W, 3) upright RGB) of each chosen frame, decoded as it is asked for."""
        wanted = selection.indices(self.frame_count)
        if not len(wanted):
            return
        if self.frame_files:
            for index in wanted:
                yield index, self._folder_frame(index)
            return
        last = wanted[-1]
        for index, frame in enumerate(_decoded(self.path)):  # a container may announce more than it holds
            if index > last:
                return
            if index in wanted:
                yield index, self._checked(frame, index)

    def _folder_frame(self, index: int) -> np.ndarray:
        return self._checked(load_image(self.frame_files[index]).rgb, index)

    def _checked(self, rgb: np.ndarray, index: int) -> np.ndarray:
        if rgb.shape[:2] != (self.height, self.width):
            where = self.frame_files[index] if self.frame_files else f"{self.path} frame {index}"
            raise BadInputError(f"{where}: {rgb.shape[1]}x{rgb.shape[0]}, but the clip's frames are "
                                f"{self.width}x{self.height}")
        return rgb


def _natural_key(path: Path) -> list:
    """frame_2 before frame_10: digit runs compare as numbers."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def _upright(rgb: np.ndarray, rotation: float) -> np.ndarray:
    """The frame turned as its display matrix says (degrees counter-clockwise, as FFmpeg's
    `av_display_rotation_get` gives it; a phone's portrait video stores -90)."""
    quarter_turns = int(round(rotation / 90.0)) % 4
    return np.ascontiguousarray(np.rot90(rgb, quarter_turns)) if quarter_turns else rgb


def _av():
    import av  # PyAV loads FFmpeg's libraries: only when a clip is read

    return av


def _decoded(path: Path) -> Iterator[np.ndarray]:
    """Every frame of the file's first video stream, upright RGB, decoded one at a time."""
    av = _av()
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                yield _upright(frame.to_ndarray(format="rgb24"), getattr(frame, "rotation", 0) or 0)
    except (av.FFmpegError, OSError, ValueError) as error:
        raise BadInputError(f"{path}: cannot decode the video ({_first_line(error)})") from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__


def _check_size(path: Path, width: int, height: int) -> None:
    if width < 1 or height < 1:
        raise BadInputError(f"{path}: its frames have no pixels ({width}x{height})")
    if width * height > MAX_IMAGE_PIXELS:
        raise BadInputError(f"{path}: frames of {width}x{height} are {width * height / 1e6:.0f} MP, more than the "
                            f"{MAX_IMAGE_PIXELS // 1_000_000} MP limit of an image")


def _open_video(path: Path) -> Clip:
    """The video file's first video stream, its frames counted (the container's count when it
    gives one, else its packets) and its first frame decoded, so that a file that cannot
    be read fails here and not after the network has loaded."""
    av = _av()
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise BadInputError(f"{path}: holds no video stream")
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            _check_size(path, width, height)
            count = stream.frames or sum(1 for packet in container.demux(stream) if packet.size)
            rate = float(stream.average_rate or stream.guessed_rate or DEFAULT_FPS)
    except BadInputError:
        raise
    except av.EOFError:  # the container ends where its first frame would start
        raise BadInputError(f"{path}: the video has no frames") from None
    except (av.FFmpegError, OSError, ValueError) as error:
        raise BadInputError(f"{path}: not a readable video ({_first_line(error)})") from None
    first = next(_decoded(path), None)
    if first is None or count == 0:
        raise BadInputError(f"{path}: the video has no frames")
    height, width = first.shape[:2]  # upright: a portrait phone video's sides swap
    return Clip(path, width, height, count, rate)


def _open_folder(path: Path) -> Clip:
    """A folder whose images (`PHOTO_SUFFIXES`) are the frames; each is checked against the
    image-size limit from its header, the first one decoded."""
    files = sorted((item for item in path.iterdir() if item.is_file() and item.suffix.lower() in PHOTO_SUFFIXES),
                   key=_natural_key)
    if not files:
        raise BadInputError(f"{path}: holds no image files ({', '.join(PHOTO_SUFFIXES)}) to use as frames")
    for file in files:
        try:
            check_image_size(file)
        except ImageTooLarge as error:
            raise BadInputError(str(error)) from None
        except OSError as error:
            raise BadInputError(f"{file}: cannot read it ({error.strerror or error})") from None
    first = load_image(files[0]).rgb
    return Clip(path, first.shape[1], first.shape[0], len(files), DEFAULT_FPS, tuple(files))


def open_clip(path: Union[str, Path], selection: FrameSelection = FrameSelection()) -> Clip:
    """The clip at `path` (a video file, or a folder of frames), checked; `BadInputError` with
    one line naming it when it cannot be read, has no frames, has frames too large, or the
    selection leaves none."""
    path = Path(path)
    if not path.exists():
        raise BadInputError(f"{path}: no such file or folder")
    clip = _open_folder(path) if path.is_dir() else _open_video(path)
    if not len(selection.indices(clip.frame_count)):
        raise BadInputError(f"{path}: --frames {selection.start}:{'' if selection.stop is None else selection.stop} "
                            f"selects none of its {clip.frame_count} frames")
    return clip
