"""The video model and pipeline against the vectors computed by the official code (SPEC_PPVD §12).

tests/data/vectors_ppvd.npz is the shared vectors file without what no test reads (the
DiT's intermediate activations, most of Pi3's, windows 1-2's semantics and per-step
velocities, the RNG state); every array kept is the original, bit for bit. Tolerance 1e-4
in fp32 (§12.3: 0.0 on the generating CPU, up to 4.2e-5 on other CPUs).
"""

import json

import numpy as np
import pytest
import torch

from ppd_core.model import PixelPerfectVideoDepth, timesteps
from ppd_core.model.dit import apply_rope, rope_tables
from ppd_core.model.dit_video import sincos_position_table
from ppd_core.video import (MODEL_CHANNEL_ORDER, OVERLAP, align_window, model_input, scale_and_shift, video_depth,
                            window_count)
from tests.video_weights import TINY_DIT, TINY_PI3, VECTORS
from tests.video_weights import one_thread  # noqa: F401 (a fixture)

ATOL = 1e-4
DIT_CASES = ["n5_64x96_t750", "n3_64x64_t249", "n16_32x32_t1000", "n4_64x32_t0"]
PI3_CASES = ["n5_64x96", "n2_32x32", "n3_96x64"]


@pytest.fixture(scope="module")
def vectors():
    return np.load(VECTORS)


def tensor(vectors, key: str) -> torch.Tensor:
    return torch.from_numpy(vectors[key])


def params(vectors, prefix: str) -> dict:
    return {k[len(prefix):]: tensor(vectors, k) for k in vectors.files if k.startswith(prefix)}


@pytest.fixture(scope="module")
def tiny(vectors):
    """The tiny model of the vectors, its parameters loaded strictly; `pos_embed` is the 64x96 grid's."""
    model = PixelPerfectVideoDepth(TINY_PI3, {**TINY_DIT, "input_size": (64, 96)})
    model.sem_encoder.load_state_dict(params(vectors, "pi3_tiny/param/"), strict=True)
    model.dit_video.load_state_dict(params(vectors, "dit_video_tiny/param/"), strict=True)
    return model.eval()


def close(actual, expected, atol: float = ATOL) -> None:
    torch.testing.assert_close(torch.as_tensor(actual), torch.as_tensor(expected), atol=atol, rtol=0)


# -- functions --------------------------------------------------------------------------------


def test_timesteps(vectors):
    assert timesteps(4) == vectors["func/timesteps_steps4"].tolist() == vectors["e2e/timesteps"].tolist()


def test_sincos_position_tables(vectors):
    close(sincos_position_table(32, 4, 6)[0], tensor(vectors, "func/sincos_pos_embed/d32_grid4x6"), atol=1e-6)
    rows = vectors["func/sincos_pos_embed/d1024_grid32x32_token_ids"]
    table = sincos_position_table(1024, 32, 32)[0, rows]
    close(table, tensor(vectors, "func/sincos_pos_embed/d1024_grid32x32_rows"), atol=1e-6)
    for case in DIT_CASES:  # the table each DiT case used is the formula's for its grid
        H, W = vectors[f"dit_video_tiny/{case}/x"].shape[-2:]
        close(sincos_position_table(32, H // 16, W // 16), tensor(vectors, f"dit_video_tiny/{case}/pos_embed"), 1e-6)


def test_pi3_rope(vectors):
    positions = tensor(vectors, "func/pi3_rope/positions").long()  # (B, N, 2): 5 registers at (0, 0), grid + 1
    cos, sin = rope_tables(positions, 16, int(positions.max()) + 1, base=100.0)
    out = apply_rope(tensor(vectors, "func/pi3_rope/tokens"), cos[:, None], sin[:, None])
    close(out, tensor(vectors, "func/pi3_rope/out"), atol=1e-6)


@pytest.mark.parametrize("case", ["case0", "case1", "case2"])
def test_scale_and_shift(vectors, case):
    prefix = f"func/scale_shift/{case}/"
    mask = vectors[prefix + "mask"].astype(bool)  # case1 masks some out: the fit over the kept values
    fitted = scale_and_shift(vectors[prefix + "prediction"][mask], vectors[prefix + "target"][mask])
    np.testing.assert_allclose(np.array(fitted, dtype=np.float32), vectors[prefix + "scale_shift"], rtol=1e-5)


# -- the networks -----------------------------------------------------------------------------


@pytest.mark.parametrize("case", PI3_CASES)
def test_pi3_semantics(vectors, tiny, case):
    frames = tensor(vectors, f"pi3_tiny/{case}/frames_u8").float() / 255
    with torch.no_grad():
        close(tiny.semantics(frames), tensor(vectors, f"pi3_tiny/{case}/semantics"))


def test_pi3_encoder_positions_and_tokens(vectors, tiny):
    """The 37x37 position grid resampled with antialiased bicubic to exactly 4x6, and the patch tokens."""
    encoder = tiny.sem_encoder.encoder
    positions = encoder.position_embedding(4, 6, square=False)
    close(positions, tensor(vectors, "pi3_tiny/n5_64x96/inter/pos_embed_used"), 1e-5)
    frames = tensor(vectors, "pi3_tiny/n5_64x96/frames_u8").float() / 255
    x = torch.nn.functional.interpolate(frames, size=(56, 84), mode="bilinear", align_corners=False)
    x = (x - tiny.sem_encoder.image_mean) / tiny.sem_encoder.image_std
    with torch.no_grad():
        close(encoder(x), tensor(vectors, "pi3_tiny/n5_64x96/inter/enc_patchtokens"))


@pytest.mark.parametrize("case", DIT_CASES)
def test_dit_video(vectors, tiny, case):
    prefix = f"dit_video_tiny/{case}/"
    with torch.no_grad():
        out = tiny.velocity(tensor(vectors, prefix + "x"), tensor(vectors, prefix + "semantics"),
                            tensor(vectors, prefix + "timestep"))
    close(out, tensor(vectors, prefix + "out"))


def test_one_window(vectors, tiny):
    depth = tiny.sample_window(tensor(vectors, "e2e/model_frames")[:16], tensor(vectors, "e2e/noise"), steps=4)
    close(depth, tensor(vectors, "e2e/window0/depth"))


# -- the pipeline -----------------------------------------------------------------------------


def test_model_sees_bgr(vectors):
    assert MODEL_CHANNEL_ORDER == "BGR"
    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 0] = 255
    x = model_input(red, (16, 16), torch.device("cpu"))
    assert x[2].min() == 1 and x[:2].abs().max() == 0  # red arrives last, as the released weights expect
    frames = vectors["e2e/frames_rgb_u8"]
    inputs = torch.stack([model_input(frame, (64, 64), torch.device("cpu")) for frame in frames])
    close(inputs, tensor(vectors, "e2e/model_frames"), atol=1e-6)


def test_whole_clip(vectors, tiny):
    """30 frames of 40x56: three windows (the last holding 12 copies of frame 29), alignment, resize back."""
    frames = vectors["e2e/frames_rgb_u8"]
    depth = video_depth(tiny, frames, noise=tensor(vectors, "e2e/noise"), steps=4, size=(64, 64))
    assert depth.shape == (30, 40, 56) and depth.dtype == np.float32
    close(depth, tensor(vectors, "e2e/depth"))


def test_window_count(vectors):
    for length, padded, windows, _ in vectors["schedule/table"]:
        if length >= 4:  # the official code makes no window of a 1-3 frame clip (and crashes); here one
            assert window_count(int(length)) == windows == (padded - 16) // 13 + 1
    assert [window_count(n) for n in (1, 2, 3)] == [1, 1, 1]


@pytest.mark.parametrize("case", ["three_windows", "det_zero", "one_window"])
def test_alignment(vectors, case):
    windows = vectors[f"align/{case}/in"][:, :, 0]  # (n, 16, H, W): each window's depth
    frames, references = [], []
    for window in windows:
        first_new = OVERLAP if frames else 0
        aligned, references = align_window(window, references)
        frames.extend(aligned[first_new:])
    assert np.stack(frames).dtype == np.float32
    close(np.stack(frames), vectors[f"align/{case}/out"])


def test_compute_matches_the_official_networks(vectors):
    """FLOPs counted by torch on the meta device equal the official networks' (tiny and released sizes):
    the same matmuls and attention of the same shapes."""
    from torch.utils.flop_counter import FlopCounterMode

    meta = json.loads(str(vectors["meta/json"]))

    def flops(pi3, dit, frames, H, W):
        with torch.device("meta"):
            model = PixelPerfectVideoDepth(pi3, dit)
            images, x = torch.empty(frames, 3, H, W), torch.empty(frames, 4, H, W)
            t = torch.empty((), dtype=torch.int32)
        with torch.inference_mode(), FlopCounterMode(display=False) as semantics:
            tokens = model.semantics(images)
        with torch.inference_mode(), FlopCounterMode(display=False) as velocity:
            model.velocity(x, tokens, t)
        return semantics.get_total_flops(), velocity.get_total_flops()

    tiny = meta["flops_tiny_check"]
    assert flops(TINY_PI3, {**TINY_DIT, "input_size": (64, 96)}, 5, 64, 96) == (
        tiny["pi3_tiny_n5_64x96"]["flop_counter"], tiny["dit_video_tiny_n5_64x96"]["flop_counter"])
    full = meta["flops_full"]
    assert flops(None, None, 16, 512, 512) == (full["pi3_semantics_per_window_16_frames_512"]["total"],
                                               full["dit_video_per_eval_16_frames_512"]["total"])
