"""Depth of a video clip with Pixel-Perfect Video Depth, window by window, as the official pipeline computes it.

The official pipeline: every frame squashed to 512x512 (the aspect is not kept), windows of
16 frames; window 0 is frames 0-15, every later window holds the previous window's slots 0, 8
and 15 as its three references followed by the next 13 frames (the clip is padded with copies
of its last frame to fill the last window). Each window runs Pi3 once and the DiT at each step
from the same initial noise; its depth goes back to the frame size and is fitted, by one scale
and shift over its three reference slots, onto the references' aligned depth (frame 0's
window-0 depth is always the first). Output frame k comes from the window that holds it as a
new frame.

Unlike the official code, which keeps every frame and prediction on the GPU until the end,
frames are taken from any iterable as they come and each finished window's frames are handed
on at once: memory holds one window whatever the clip's length. Clips of 1-3 frames (on
which the official code crashes) make one padded window. All a window needs from those before
it is a `WindowState` (its references' aligned depths): handed out before each window runs and
taken back, a run cut short resumes at the window it was in, with the same result.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .errors import BadInputError
from .model.cancel import RepeatingProgress, cancel_points
from .progress import ProgressCallback, report

if TYPE_CHECKING:  # for annotations only
    from .model.ppvd import PixelPerfectVideoDepth

WINDOW = 16  # frames per window
KEYFRAMES = (0, 8, 15)  # the slots each window hands on as the next window's references
OVERLAP = len(KEYFRAMES)  # reference slots at the start of every window after the first
STRIDE = WINDOW - OVERLAP  # new frames per window after the first
NETWORK_SIZE = (512, 512)  # every frame is resized to this, whatever its aspect
#: The channel order the network sees. The official pipeline decodes RGB and then converts
#: "BGR to RGB" once more, so its model (Pi3 and the DiT condition) gets B, G, R; the released
#: weights are used as that pipeline uses them.
MODEL_CHANNEL_ORDER = "BGR"
NOISE_SEED = 666  # the official script's seed; the noise it draws also depends on its RNG use before
PROGRESS_STAGE = "video"


def window_count(frames: int) -> int:
    """Windows for a clip of `frames` frames (at least 1)."""
    return 1 + max(0, -(-(frames - WINDOW) // STRIDE))


def window_of(position: int) -> int:
    """The window that computes the clip's frame at `position` (0-based) as one of its new frames."""
    return 0 if position < WINDOW else 1 + (position - WINDOW) // STRIDE


@dataclass
class WindowState:
    """What window `window` (1 or later) takes from the windows before it: the aligned depths
    (H0, W0) float32 of its three reference slots. Its reference frames themselves are the
    clip's, read again on a resume."""

    window: int
    reference_depths: list


def model_input(frame_rgb_u8: np.ndarray, size: Sequence[int], device: torch.device) -> torch.Tensor:
    """uint8 (H0, W0, 3) RGB -> float32 (3, H, W) in [0, 1], channels in `MODEL_CHANNEL_ORDER`.

    Resized bilinearly (align_corners False, no antialias) as the official pipeline does;
    u8 / 255 in float32 equals its float64 division cast to float32 for all 256 values.
    """
    order = ["RGB".index(channel) for channel in MODEL_CHANNEL_ORDER]
    x = torch.from_numpy(np.ascontiguousarray(frame_rgb_u8[..., order])).to(device)
    x = x.permute(2, 0, 1)[None].float() / 255
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)[0]


def scale_and_shift(prediction: np.ndarray, target: np.ndarray) -> tuple:
    """(s, b) minimising sum (s p + b - t)^2, solved as the official code does: float32 sums of the
    normal equations; (1, 0) when they are singular."""
    p = prediction.astype(np.float32)
    t = target.astype(np.float32)
    a00, a01, a11 = np.sum(p * p), np.sum(p), np.float32(p.size)
    b0, b1 = np.sum(p * t), np.sum(t)
    det = a00 * a11 - a01 * a01
    if det == 0:
        return 1, 0
    return (a11 * b0 - a01 * b1) / det, (-a01 * b0 + a00 * b1) / det


def align_window(depth: np.ndarray, references: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """(aligned depth, the next window's reference depths) of one window's depth (16, H0, W0) float32.

    Window 0 (no `references`) stays as it is; a later one is mapped by the one scale and shift
    that fit its three reference slots onto `references`. The next references are this
    window's aligned keyframe slots, except that frame 0's window-0 depth stays the first
    target for every window (the official choice).
    """
    if references:
        scale, shift = scale_and_shift(np.concatenate(depth[:OVERLAP]), np.concatenate(references))
        depth = depth * scale + shift
    first = references[0] if references else depth[KEYFRAMES[0]]
    return depth, [first] + [depth[k] for k in KEYFRAMES[1:]]


def _checked(frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """The frames, each checked to be uint8 (H0, W0, 3) with the first frame's size."""
    first_shape = None
    for index, frame in enumerate(frames):
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise BadInputError(f"frame {index} is {frame.dtype} {frame.shape}; frames must be uint8 (H, W, 3) RGB")
        if first_shape is None:
            first_shape = frame.shape
        elif frame.shape != first_shape:
            raise BadInputError(f"frame {index} is {frame.shape[1]}x{frame.shape[0]}, "
                                f"the clip's first frame {first_shape[1]}x{first_shape[0]}")
        yield frame


def _initial_noise(noise: Optional[torch.Tensor], size: tuple[int, int], device: torch.device) -> torch.Tensor:
    shape = (WINDOW, 1, *size)
    if noise is None:
        return torch.randn(shape, generator=torch.Generator().manual_seed(NOISE_SEED)).to(device)
    noise = torch.as_tensor(noise)
    if tuple(noise.shape) != shape:
        raise BadInputError(f"noise has shape {tuple(noise.shape)}, the window needs {shape}")
    return noise.to(device=device, dtype=torch.float32)


def iter_video_depth(
    model: PixelPerfectVideoDepth,
    frames_rgb_u8: Iterable[np.ndarray],
    *,
    noise: Optional[torch.Tensor] = None,
    steps: int = 4,
    size: Sequence[int] = NETWORK_SIZE,
    progress: Optional[ProgressCallback] = None,
    frame_count: Optional[int] = None,
    resume: Optional[WindowState] = None,
    on_window: Optional[Callable[[WindowState], None]] = None,
) -> Iterator[Optional[np.ndarray]]:
    """Depth (H0, W0) float32 of each frame, in order, as soon as its window is done and aligned.

    `frames_rgb_u8` yields uint8 (H0, W0, 3) RGB frames (an array (T, H0, W0, 3) works too);
    they are read one window ahead at most. `noise` is the initial latent (16, 1, H, W),
    drawn once and used by every window (None: seeded with `NOISE_SEED`). `size` is the
    network's frame size (H, W), multiples of 16. The depth is the model's normalised
    affine-invariant output (larger = farther), in window 0's affine frame, not metres.
    `progress(stage, fraction, message)` is called as each window starts and after each
    step (the fraction is of the whole clip when `frame_count` or `len(frames_rgb_u8)` says
    how long it is, else of the current window), and asked again before each network block
    (`model.cancel`); it may raise `Cancelled`.

    `on_window(state)` is called before each window after the first runs, once the frames of
    the windows before it have all been handed on. `resume` (such a state, from a run cut
    short) skips the windows before it: their frames are read but not computed, and yield None.
    """
    size = (int(size[0]), int(size[1]))
    if size[0] < 16 or size[1] < 16 or size[0] % 16 or size[1] % 16:
        raise BadInputError(f"network size {size[0]}x{size[1]} must be multiples of 16")
    if frame_count is None and hasattr(frames_rgb_u8, "__len__"):
        frame_count = len(frames_rgb_u8)
    windows = window_count(frame_count) if frame_count else None
    if progress is not None:  # also asked again inside the networks, so that a cancel lands within a block
        progress = RepeatingProgress(progress)
    device = model.device
    source = _checked(frames_rgb_u8)
    initial = _initial_noise(noise, size, device)
    references: list[torch.Tensor] = []  # the previous window's keyframe inputs (3, H, W)
    reference_depths: list[np.ndarray] = []  # their aligned depths (H0, W0)
    for window in itertools.count():
        new = []
        for frame in itertools.islice(source, WINDOW - len(references)):
            original_size = frame.shape[:2]
            new.append(model_input(frame, size, device))
        if not new:
            if window == 0:
                raise BadInputError("the clip has no frames")
            return
        real = len(new)
        new += [new[-1]] * (WINDOW - len(references) - real)  # pad with the clip's last frame
        slots = torch.stack(references + new)  # (16, 3, H, W)
        if resume is not None and window < resume.window:  # done by the run that was cut short
            yield from itertools.repeat(None, real)
            references = list(slots[list(KEYFRAMES)])
            continue
        if resume is not None and window == resume.window:
            if any(d.shape != original_size for d in resume.reference_depths):
                raise BadInputError(f"the resume state's depths are not {original_size[1]}x{original_size[0]}")
            reference_depths = list(resume.reference_depths)
        if on_window is not None and window > 0:
            on_window(WindowState(window, list(reference_depths)))
        on_step = _step_reporter(progress, window, windows)
        with cancel_points(progress.check if progress is not None else None):
            depth = model.sample_window(slots, initial, steps, on_step=on_step)  # (16, 1, H, W)
        depth = F.interpolate(depth, size=original_size, mode="bilinear", align_corners=False)
        depth, reference_depths = align_window(depth[:, 0].float().cpu().numpy(), reference_depths)
        first_new = len(references)
        for slot in range(first_new, first_new + real):
            yield depth[slot].copy()
        references = list(slots[list(KEYFRAMES)])  # a copy: the window's other inputs are freed


def _step_reporter(progress: Optional[ProgressCallback], window: int, windows: Optional[int]):
    """The `on_step(done, total)` of one window, reporting to `progress` (None without one)."""
    if progress is None:
        return None

    def on_step(done: int, total: int) -> None:
        within = done / total
        fraction = (window + within) / windows if windows else within
        where = f"window {window + 1}" + (f"/{windows}" if windows else "")
        report(progress, PROGRESS_STAGE, fraction, f"{where}: " + (f"step {done}/{total}" if done else "semantics"))

    return on_step


def video_depth(
    model: PixelPerfectVideoDepth,
    frames_rgb_u8: Iterable[np.ndarray],
    *,
    noise: Optional[torch.Tensor] = None,
    steps: int = 4,
    size: Sequence[int] = NETWORK_SIZE,
    progress: Optional[ProgressCallback] = None,
) -> np.ndarray:
    """(T, H0, W0) float32 depth of a clip: `iter_video_depth`'s frames, stacked."""
    return np.stack(list(iter_video_depth(model, frames_rgb_u8, noise=noise, steps=steps, size=size,
                                          progress=progress)))
