"""The network against the vectors computed by the original implementation (SPEC §11)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ppd_core.model import DinoConfig, DiTConfig, PixelPerfectDepth, PPDConfig, timesteps
from ppd_core.model.dinov2 import SemanticEncoder
from ppd_core.model.dit import DiT, TimestepEmbedder
from ppd_core.model.dit import apply_rope, rope_tables
from ppd_core.model.inference import resize_for_network, working_size

DATA = Path(__file__).parent / "data"
ATOL = 1e-5  # exact on the generating CPU; other CPUs' kernels differ by ~2e-6 (SPEC §8)
# A CPU's float32 exp may round a timestep frequency one ulp away from the generating CPU's;
# at t = 1000 that moves the sinusoid by up to 1000 * 2**-23 = 1.2e-4, and the DiT's output by ~2e-5.
ATOL_TIMESTEP = 4e-5

SMALL_DIT = DiTConfig(hidden_size=64, depth=4, num_heads=4, mlp_hidden=256, semantic_dim=1024)
TINY_DINO = DinoConfig(embed_dim=64, depth=2, num_heads=2, mlp_hidden=256)


@pytest.fixture(scope="module")
def vectors():
    return np.load(DATA / "vectors.npz")


def params(vectors, prefix: str, add: str = "") -> dict:
    return {add + k[len(prefix):]: torch.from_numpy(vectors[k]) for k in vectors.keys() if k.startswith(prefix)}


def t(vectors, key):
    return torch.from_numpy(vectors[key])


@pytest.mark.parametrize("steps", [1, 4, 10, 20])
def test_timestep_lists(vectors, steps):
    assert timesteps(steps, "official_cpu") == vectors[f"timesteps/steps_{steps}"].tolist()
    assert timesteps(steps, "exact") == vectors[f"timesteps/exact_halfeven/steps_{steps}"].tolist()


def test_timestep_quirks():
    assert timesteps(4) == [1000, 750, 500, 249]
    assert timesteps(20, "official_cpu")[10] == 499 and timesteps(20)[10] == 500
    cpu29 = timesteps(29, "official_cpu")
    assert len(cpu29) == 30 and cpu29[-3:] == [68, 34, -1]
    with pytest.raises(ValueError):
        timesteps(0)


def test_timestep_embedding(vectors):
    steps = t(vectors, "func/timestep_embedding/t")
    emb = TimestepEmbedder.sinusoid(steps)
    one_ulp_per_frequency = 1e-6 + steps[:, None].double() * 2.0**-23
    assert torch.all((emb - t(vectors, "func/timestep_embedding/emb")).abs() <= one_ulp_per_frequency)


def test_rope(vectors):
    positions = t(vectors, "func/rope/positions")  # (B, N, 2): per-sample positions
    cos, sin = rope_tables(positions, 64, int(positions.max()) + 1, base=100.0)
    out = apply_rope(t(vectors, "func/rope/tokens"), cos[:, None], sin[:, None])
    torch.testing.assert_close(out, t(vectors, "func/rope/out"), atol=1e-6, rtol=0)


@pytest.fixture(scope="module")
def small_dit(vectors):
    dit = DiT(SMALL_DIT)
    dit.load_state_dict(params(vectors, "dit_small/param/"), strict=True)
    return dit.eval()


@pytest.mark.parametrize(
    "case", ["b1_32x48", "b1_48x32", "b2_32x48", "b2_48x32", "b2_48x32_tvec", "b1_64x64_t0", "b1_32x48_t1000"]
)
def test_small_dit(vectors, small_dit, case):
    with torch.no_grad():
        out = small_dit(
            t(vectors, f"dit_small/{case}/x"), t(vectors, f"dit_small/{case}/semantics"), t(vectors, f"dit_small/{case}/timestep")
        )
    torch.testing.assert_close(out, t(vectors, f"dit_small/{case}/out"), atol=ATOL_TIMESTEP, rtol=0)


def test_small_dit_fusion_intermediate(vectors, small_dit):
    """The 2x2 split of fused tokens: fine tokens entering block 2 from the reference block-1 output."""
    case = "dit_small/b1_32x48/inter/"
    sem = t(vectors, "dit_small/b1_32x48/semantics")
    with torch.no_grad():
        fine = small_dit.proj_fusion(t(vectors, case + "block_1"), sem, (2, 3))
    torch.testing.assert_close(fine, t(vectors, case + "fused_fine_tokens"), atol=ATOL, rtol=0)


@pytest.fixture(scope="module")
def tiny_encoder(vectors):
    enc = SemanticEncoder(TINY_DINO)
    enc.load_state_dict(params(vectors, "dino_tiny/param/", "pretrained."), strict=True)
    return enc.eval()


@pytest.mark.parametrize("case", ["img_32x48", "img_48x32", "b2_32x48", "img_96x160", "img_592x592"])
def test_tiny_dino(vectors, tiny_encoder, case):
    with torch.no_grad():
        out = tiny_encoder(t(vectors, f"dino_tiny/{case}/image"))
    torch.testing.assert_close(out, t(vectors, f"dino_tiny/{case}/semantics"), atol=ATOL, rtol=0)


@pytest.mark.parametrize("case,grid", [("img_32x48", (2, 3)), ("img_48x32", (3, 2)), ("img_96x160", (6, 10))])
def test_dino_position_embedding(vectors, tiny_encoder, case, grid):
    pos = tiny_encoder.pretrained.position_embedding(*grid, square=False)
    torch.testing.assert_close(pos, t(vectors, f"dino_tiny/{case}/inter/pos_embed_used"), atol=1e-6, rtol=0)


@pytest.fixture(scope="module")
def e2e_model(vectors):
    config = PPDConfig(dit=DiTConfig(hidden_size=64, depth=4, num_heads=4, mlp_hidden=256, semantic_dim=64), encoder=TINY_DINO)
    model = PixelPerfectDepth(config)
    state = params(vectors, "e2e/dit/param/", "dit.")
    state.update(params(vectors, "dino_tiny/param/", "sem_encoder.pretrained."))
    model.load_state_dict(state, strict=True)
    return model.eval()


@pytest.mark.parametrize("prefix,steps", [("e2e", 4), ("e2e_steps10", 10), ("e2e_steps20", 20), ("e2e_steps29", 29)])
def test_end_to_end_sampling(vectors, e2e_model, prefix, steps):
    schedule = vectors[f"{prefix}/timesteps"].tolist()
    assert timesteps(steps, "official_cpu") == schedule
    depth = e2e_model.sample(t(vectors, "e2e/image"), t(vectors, "e2e/noise"), schedule=schedule)
    torch.testing.assert_close(depth, t(vectors, f"{prefix}/depth"), atol=ATOL, rtol=0)


def test_end_to_end_semantics_and_steps(vectors, e2e_model):
    with torch.no_grad():
        sem = e2e_model.sem_encoder(t(vectors, "e2e/image"))
    torch.testing.assert_close(sem, t(vectors, "e2e/semantics"), atol=ATOL, rtol=0)
    seen = []
    e2e_model.sample(t(vectors, "e2e/image"), t(vectors, "e2e/noise"), steps=4, on_step=lambda d, n: seen.append((d, n)))
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_sample_is_deterministic_given_noise(e2e_model, vectors):
    image, noise = t(vectors, "e2e/image"), t(vectors, "e2e/noise")
    a = e2e_model.sample(image, noise, steps=4)
    b = e2e_model.sample(image, noise, steps=4)
    assert torch.equal(a, b)
    assert not torch.equal(a, e2e_model.sample(image, noise + 0.1, steps=4))


def test_preprocess_size_table(vectors):
    for in_h, in_w, out_h, out_w, cubic in vectors["preprocess/size_table"]:
        H, W, shrink = working_size(int(in_h), int(in_w))
        assert (H, W, not shrink) == (out_h, out_w, bool(cubic)), (in_h, in_w)


@pytest.mark.parametrize("case", ["up_480x640", "down_960x1280", "odd_300x701"])
def test_preprocess_images(vectors, case):
    out = resize_for_network(vectors[f"preprocess/{case}/in_bgr_u8"])
    expected = vectors[f"preprocess/{case}/out_bgr_u8"]
    assert out.shape == expected.shape
    # exact with the same OpenCV build; one grey level across builds (SPEC §11)
    assert np.abs(out.astype(int) - expected.astype(int)).max() <= 1


def test_released_size_keys_and_shapes():
    listing = json.loads((DATA / "keys_ppd_da2.json").read_text())["ppd_da2_module"]
    expected = {**listing["sem_encoder"], **listing["dit"]}
    with torch.device("meta"):
        model = PixelPerfectDepth()
    got = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert got == expected
    assert list(got) == list(expected)  # registration order too: sem_encoder first, then dit
    assert sum(v.numel() for v in model.parameters()) == 499_842_112 + 304_368_640
