"""bf16 on CPUs that have it: what "auto" chooses and says, weights held in bf16, the blocked
attention, and bf16 against fp32 on the released-size networks."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ppd_core.model import attention as attention_module
from ppd_core.model import device as device_module
from ppd_core.model.attention import attention, blocked_attention
from ppd_core.model.checkpoint import load_pixel_perfect_depth, load_ppd_moge
from ppd_core.model.device import MATMUL_LAYERS, auto_precision, autocast_parameters, resolve_precision
from ppd_core.model.dinov2 import DinoConfig, DinoVisionTransformer
from ppd_core.model.dit import DiT, DiTConfig
from ppd_core.model.inference import DepthModel
from ppd_core.protocol import handshake_event
from tests.checkpoints import write_small_moge, write_small_ppd_moge, write_small_weights

CPU = torch.device("cpu")


# -- what "auto" chooses ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "capabilities,speedup,precision,why",
    [
        ({"architecture": "x86_64", "avx512_bf16": True, "amx_bf16": False}, 2.3, "bf16", "AVX512_BF16 and runs"),
        ({"architecture": "x86_64", "avx512_bf16": True, "amx_bf16": False}, 0.5, "fp32", "only 0.5x as fast"),
        ({"architecture": "x86_64", "avx512_bf16": True, "amx_bf16": True}, 6.0, "bf16", "AMX-BF16"),
        ({"architecture": "x86_64", "avx512_bf16": False, "avx2": True}, None, "fp32", "no native bf16"),
        ({"architecture": "arm64", "neon": True}, None, "fp32", "no native bf16"),
    ],
)
def test_auto_is_bf16_where_the_cpu_has_native_bf16_that_pays(monkeypatch, capabilities, speedup, precision, why):
    def measured() -> float:
        assert speedup is not None, "no bf16 matmul is timed on a CPU without native bf16"
        return speedup

    monkeypatch.setattr(device_module, "cpu_capabilities", lambda: capabilities)
    monkeypatch.setattr(device_module, "cpu_bf16_speedup", measured)
    chosen, reason = auto_precision(CPU)
    assert chosen == precision and why in reason
    assert resolve_precision("auto", CPU) == (chosen, reason)
    assert resolve_precision("fp32", CPU) == ("fp32", "as asked") and resolve_precision("bf16", CPU)[0] == "bf16"


def test_the_bf16_speedup_is_measured_once_per_process():
    first = device_module.cpu_bf16_speedup()
    assert math.isfinite(first) and first > 0
    assert device_module.cpu_bf16_speedup() == first and device_module.cpu_bf16_speedup.cache_info().hits >= 1


def test_the_capability_is_torchs_own_probe():
    capabilities = device_module.cpu_capabilities()
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert (device_module.cpu_bf16_feature() is not None) == native
    assert bool(capabilities.get("avx512_bf16")) == torch.cpu._is_avx512_bf16_supported()


def test_the_handshake_and_the_model_message_say_what_auto_chose_and_why(tmp_path, monkeypatch):
    monkeypatch.setenv("PPD_CACHE_DIR", str(tmp_path / "cache"))
    by_speed, why = auto_precision(CPU)
    before = handshake_event()["precision"]["cpu"]
    assert before["auto"] == by_speed and before["why"].startswith(why)
    messages = []
    model = DepthModel.load(write_small_weights(tmp_path), device="cpu",
                            on_progress=lambda stage, fraction, message: messages.append((stage, fraction, message)))
    choice = model.precision_choice
    assert model.precision == choice.precision and choice.why.startswith(why)
    assert any(stage == "model" and fraction == 1.0 and f"({choice.precision}: {choice.why})" in message
               for stage, fraction, message in messages)
    if by_speed == "bf16":  # the accuracy check ran, and the handshake now says what it found
        assert "agree with fp32" in choice.why or "wrong on this machine" in choice.why
        after = handshake_event()["precision"]["cpu"]
        assert after["auto"] == choice.precision and after["why"] != before["why"]


# -- weights held in bf16 ---------------------------------------------------------------------


def test_bf16_loads_hold_matmul_weights_in_bf16_and_everything_else_in_fp32(tmp_path):
    folder = write_small_weights(tmp_path / "da2")
    da2 = load_pixel_perfect_depth(folder / "ppd.pth", folder / "depth_anything_v2_vitl.pth", dtype=torch.bfloat16)
    folder = write_small_ppd_moge(tmp_path / "moge")
    moge = load_ppd_moge(folder / "ppd_moge.pth", folder / "moge2.pt", dtype=torch.bfloat16)
    for model in (da2, moge):
        reduced = autocast_parameters(model)
        assert reduced and "dit.blocks.0.attn.qkv.weight" in reduced
        for name, parameter in model.named_parameters():
            assert parameter.dtype == (torch.bfloat16 if name in reduced else torch.float32), name
    assert da2.dit.blocks[0].attn.q_norm.weight.dtype == torch.float32
    assert da2.sem_encoder.pretrained.pos_embed.dtype == torch.float32


def test_bf16_weights_give_what_fp32_weights_give_under_autocast(tmp_path):
    """Autocast casts exactly these weights on every call, so holding them in bf16 changes no bit."""
    folder = write_small_weights(tmp_path)
    files = folder / "ppd.pth", folder / "depth_anything_v2_vitl.pth"
    full, held = load_pixel_perfect_depth(*files), load_pixel_perfect_depth(*files, dtype=torch.bfloat16)
    g = torch.Generator().manual_seed(0)
    image, noise = torch.rand((1, 3, 48, 64), generator=g), torch.randn((1, 1, 48, 64), generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(full.sample(image, noise, steps=2), held.sample(image, noise, steps=2))


@pytest.mark.parametrize("variant", ["moge2 semantics", "da2 semantics + moge2"])
def test_bf16_estimates_with_moge2_stay_close_to_fp32(tmp_path, variant):
    """Both geometry passes run at the model's precision (the official one: `infer`, in its weights' dtype)."""
    if variant == "moge2 semantics":
        folder = write_small_ppd_moge(tmp_path)
    else:
        folder = write_small_moge(write_small_weights(tmp_path))
    exact = DepthModel.load(folder, device="cpu", precision="fp32")
    low = DepthModel.load(folder, device="cpu", precision="bf16")
    rgb = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    for moge_pass in ("shared", "official"):
        a = exact.estimate(rgb, steps=1, resolution=64 * 48, moge_pass=moge_pass)
        b = low.estimate(rgb, steps=1, resolution=64 * 48, moge_pass=moge_pass)
        assert b.geometry is not None and b.geometry.tokens == a.geometry.tokens
        assert np.abs(b.p - a.p).max() < 0.05
        both = a.geometry.mask & b.geometry.mask
        assert both.mean() > 0.9 and np.isfinite(b.geometry.depth[b.geometry.mask]).all()
        assert np.abs(b.geometry.depth[both] / a.geometry.depth[both] - 1).max() < 0.05


# -- the blocked attention --------------------------------------------------------------------


def qkv(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g) for _ in range(3)]


def test_fp32_attention_is_torchs_sdpa_bit_for_bit():
    q, k, v = qkv((2, 3, 40, 16))
    assert torch.equal(attention(q, k, v), F.scaled_dot_product_attention(q, k, v))


def test_blocked_attention_is_exact_attention_over_ragged_blocks():
    q, k, v = qkv((2, 3, 100, 16))  # 100 queries in blocks of 32: the last block is short
    exact = F.scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(blocked_attention(q, k, v, block=32), exact, atol=1e-6, rtol=0)


def test_blocked_bf16_attention_is_as_close_to_fp32_as_torchs_bf16_sdpa():
    """Scores, weights and outputs are each rounded to bf16 (8 significant bits) where torch's
    fused kernel keeps the scores in fp32, so allow 3x its error; 0.03 bounds both for
    unit-normal inputs, whose outputs are weighted means of values of size ~1."""
    q, k, v = qkv((1, 4, 300, 64))
    exact = F.scaled_dot_product_attention(q, k, v)
    low = [x.bfloat16() for x in (q, k, v)]
    blocked = blocked_attention(*low, block=128)
    assert blocked.dtype == torch.bfloat16 and attention(*low).dtype == torch.bfloat16
    ours = (blocked.float() - exact).abs().max()
    torchs = (F.scaled_dot_product_attention(*low).float() - exact).abs().max()
    assert ours < 0.03 and ours < 3 * torchs


# -- bf16 against fp32 at released size -------------------------------------------------------


def released_size(network: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """The meta-built network on the CPU with seeded weights of unit-scale activations.

    Uniform draws in place (a normal draw per parameter takes seconds at 500 M parameters):
    matrices U(+-sqrt(3 / fan_in)), so variance 1 / fan_in; norm weights 1 +- 0.3; other
    vectors +-0.15, so the adaLN gates and LayerScales are far from zero.
    """
    network = network.to_empty(device="cpu")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in network.named_parameters():
            if p.ndim >= 2:
                p.uniform_(-1, 1, generator=g).mul_(math.sqrt(3 / p[0].numel()))
            elif "norm" in name and name.endswith("weight"):
                p.uniform_(0.7, 1.3, generator=g)
            else:
                p.uniform_(-0.15, 0.15, generator=g)
    return network.eval().requires_grad_(False)


def hold_in_bf16(network: torch.nn.Module) -> None:
    for module in network.modules():
        if isinstance(module, MATMUL_LAYERS):
            module.to(torch.bfloat16)


def relative_error(low: torch.Tensor, exact: torch.Tensor) -> float:
    return float((low.float() - exact).norm() / exact.norm())


def test_released_size_dit_in_bf16_stays_close_to_fp32(monkeypatch):
    """bf16 keeps 8 significant bits (rounding error 2^-9 ~ 0.2 %); the 24 blocks' ~50 matmul
    stages round independently, so errors add like sqrt(50) x 0.2 % ~ 1.4 %, which is what
    is measured (1.3 %, as torch's own bf16 SDPA gives). Bound: 3 %, and 4 % of the largest
    output for any single pixel."""
    with torch.device("meta"):
        dit = DiT(DiTConfig())
    dit = released_size(dit)
    g = torch.Generator().manual_seed(1)
    x, semantics = torch.randn((1, 4, 64, 64), generator=g), torch.randn((1, 16, 1024), generator=g)
    t = torch.tensor([500], dtype=torch.int32)
    with torch.inference_mode():
        exact = dit(x, semantics, t)
        hold_in_bf16(dit)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = dit(x, semantics, t)
            monkeypatch.setattr(attention_module, "runs_blocked", lambda q: False)
            with_sdpa = dit(x, semantics, t)
    assert low.shape == exact.shape and torch.isfinite(low).all()
    ours, torchs = relative_error(low, exact), relative_error(with_sdpa, exact)
    assert 0 < ours < 0.03 and ours < 1.25 * torchs
    assert (low.float() - exact).abs().max() < 0.04 * exact.abs().max()


@pytest.mark.parametrize("kind", ["explicit", "sdpa"])
def test_released_size_dinov2_in_bf16_stays_within_one_percent_of_fp32(kind):
    """The encoders (Depth Anything V2's explicit attention, MoGe-2's SDPA) measure 0.3-0.4 %;
    bound 1 % (a 24-block ViT with LayerScale rounds less per block than the DiT)."""
    with torch.device("meta"):
        vit = DinoVisionTransformer(DinoConfig(attention=kind))
    vit = released_size(vit)
    image = torch.randn((1, 3, 112, 112), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        exact = vit(image)
        hold_in_bf16(vit)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = vit(image)
    assert 0 < relative_error(low, exact) < 0.01
