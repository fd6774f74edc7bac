"""The clip pipeline: windows and references as the official code makes them, short clips, bounded memory,
progress and cancel, bad input."""

import tracemalloc
import weakref

import numpy as np
import pytest
import torch

from ppd_core.errors import BadInputError, Cancelled
from ppd_core.video import WINDOW, iter_video_depth, video_depth
from tests.video_weights import VECTORS, tiny_video_model
from tests.video_weights import one_thread  # noqa: F401 (a fixture)


class FrameIdModel:
    """Stands in for the network: a frame's depth is its grey level x 255 (its id, frame k being grey k);
    records the ids in each window's 16 slots."""

    device = torch.device("cpu")

    def __init__(self):
        self.windows = []

    def sample_window(self, frames, noise, steps=4, *, on_step=None):
        self.windows.append((frames[:, 0, 0, 0] * 255).round().int().tolist())
        for done in range(steps + 1):
            if on_step is not None:
                on_step(done, steps)
        return frames[:, :1] * 255


def grey_clip(length: int, size=(6, 10)):
    return [np.full((*size, 3), k, np.uint8) for k in range(length)]


@pytest.fixture(scope="module")
def vectors():
    return np.load(VECTORS)


@pytest.mark.parametrize("length", list(range(1, 61)))
def test_windows_and_outputs_as_the_official_code(vectors, length):
    """Each window's slots are the official ones (frame 0, the previous window's slots 8 and 15, then 13
    new frames; the last frame repeated to fill the last window) and output k is frame k."""
    model = FrameIdModel()
    depth = video_depth(model, grey_clip(length), size=(16, 16))
    if length >= 4:
        assert model.windows == vectors[f"schedule/windows/len_{length}"].tolist()
    else:  # the official code crashes; here one window padded with the last frame
        assert model.windows == [list(range(length)) + [length - 1] * (WINDOW - length)]
    assert depth.shape == (length, 6, 10)
    np.testing.assert_allclose(depth, np.arange(length, dtype=np.float32)[:, None, None] + np.zeros((6, 10)),
                               atol=1e-4)


@pytest.fixture(scope="module")
def small():
    return tiny_video_model(seed=4)


@pytest.mark.parametrize("length", [1, 2, 3])
def test_short_clips_are_one_padded_window(small, length):
    rng = np.random.default_rng(length)
    frames = rng.integers(0, 256, (length, 20, 28, 3), dtype=np.uint8)
    noise = torch.randn((WINDOW, 1, 32, 32), generator=torch.Generator().manual_seed(0))
    depth = video_depth(small, frames, noise=noise, size=(32, 32))
    assert depth.shape == (length, 20, 28) and depth.dtype == np.float32 and np.isfinite(depth).all()
    padded = np.concatenate([frames, np.repeat(frames[-1:], WINDOW - length, axis=0)])
    inputs = torch.from_numpy(padded[..., ::-1].copy()).permute(0, 3, 1, 2).float() / 255  # BGR
    inputs = torch.nn.functional.interpolate(inputs, size=(32, 32), mode="bilinear", align_corners=False)
    window = small.sample_window(inputs, noise)
    window = torch.nn.functional.interpolate(window, size=(20, 28), mode="bilinear", align_corners=False)
    np.testing.assert_allclose(depth, window[:length, 0].numpy(), atol=1e-5)


class CountingClip:
    """A clip of `length` grey frames made on demand; counts the frames read and the most of them
    alive at once (held by anyone)."""

    def __init__(self, length: int, size=(12, 20)):
        self.length, self.size = length, size
        self.read = 0
        self.frames: list[weakref.ref] = []
        self.most_alive = 0

    def __iter__(self):
        for k in range(self.length):
            frame = np.full((*self.size, 3), k % 256, np.uint8)
            self.frames.append(weakref.ref(frame))
            self.read += 1
            self.most_alive = max(self.most_alive, alive(self.frames))
            yield frame
            del frame


def alive(references: list) -> int:
    return sum(reference() is not None for reference in references)


def test_a_long_clip_holds_one_window_whatever_its_length():
    """300 frames: read at most one window ahead of the depth handed back; each frame let go as soon as
    it is converted (the one being read and the one before are all that live), and no depth kept
    once the consumer lets it go."""
    clip = CountingClip(300)
    depths = []
    most_depths_alive = count = 0
    for k, depth in enumerate(iter_video_depth(FrameIdModel(), clip, size=(16, 16))):
        assert clip.read <= k + WINDOW
        assert depth.shape == (12, 20) and depth[0, 0] == pytest.approx(k % 256, abs=1e-3)
        depths.append(weakref.ref(depth))
        most_depths_alive = max(most_depths_alive, alive(depths))
        count += 1
        del depth
    assert count == clip.read == 300
    assert clip.most_alive <= 2
    assert most_depths_alive == 1


def peak_traced_bytes(length: int) -> int:
    tracemalloc.start()
    try:
        for _ in iter_video_depth(FrameIdModel(), CountingClip(length, size=(48, 64)), size=(16, 16)):
            pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_peak_memory_does_not_grow_with_the_clip():
    """A 260-frame clip peaks no higher than a 52-frame one (numpy's allocations, traced); holding every
    frame's depth would add 208 x 12 KB."""
    short, long = peak_traced_bytes(52), peak_traced_bytes(260)
    assert long < short + 200_000, (short, long)


def test_progress_covers_the_clip_and_can_cancel():
    calls = []
    video_depth(FrameIdModel(), grey_clip(30), size=(16, 16), progress=lambda *a: calls.append(a))
    fractions = [fraction for _, fraction, _ in calls]
    assert {stage for stage, _, _ in calls} == {"video"}
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert len(calls) == 3 * 5 and calls[5][2] == "window 2/3: semantics" and calls[-1][2] == "window 3/3: step 4/4"

    def cancel_in_window_two(stage, fraction, message):
        if message.startswith("window 2"):
            raise Cancelled("stopped")

    model = FrameIdModel()
    with pytest.raises(Cancelled):
        list(iter_video_depth(model, grey_clip(30), size=(16, 16), progress=cancel_in_window_two))
    assert len(model.windows) == 2  # window 2 began and stopped at its first report


def test_progress_of_a_clip_of_unknown_length_is_per_window():
    calls = []
    video_depth(FrameIdModel(), iter(grey_clip(20)), size=(16, 16), progress=lambda *a: calls.append(a))
    assert calls[0][2] == "window 1: semantics" and calls[4][1] == 1.0 and calls[5][1] == 0.0


@pytest.mark.parametrize("frames, message", [
    ([], "no frames"),
    ([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9, 3), np.uint8)], "frame 1 is 9x8, the clip's first frame 8x8"),
    ([np.zeros((8, 8), np.uint8)], "frame 0 is uint8 \\(8, 8\\)"),
    ([np.zeros((8, 8, 3), np.float32)], "frame 0 is float32"),
])
def test_bad_clips_are_refused(frames, message):
    with pytest.raises(BadInputError, match=message):
        video_depth(FrameIdModel(), frames, size=(16, 16))


def test_bad_size_and_noise_are_refused():
    with pytest.raises(BadInputError, match="multiples of 16"):
        video_depth(FrameIdModel(), grey_clip(2), size=(500, 512))
    with pytest.raises(BadInputError, match=r"noise has shape \(16, 1, 8, 8\), the window needs \(16, 1, 16, 16\)"):
        video_depth(FrameIdModel(), grey_clip(2), size=(16, 16), noise=torch.zeros(16, 1, 8, 8))


def test_a_cancel_lands_inside_the_networks(small):
    """The progress callback is asked again before each network block: a cancel stops a window mid-step."""
    calls = []

    def cancel_at_the_first_repeat(stage, fraction, message):
        if calls and calls[-1] == message:
            raise Cancelled("stopped")
        calls.append(message)

    frames = np.zeros((20, 24, 32, 3), np.uint8)
    with pytest.raises(Cancelled):
        video_depth(small, frames, size=(32, 32), progress=cancel_at_the_first_repeat)
    assert calls == ["window 1/2: semantics"]  # stopped in Pi3's first block
