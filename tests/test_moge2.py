"""MoGe-2 and the MoGe-2-semantics PPD against the vectors of the official code (SPEC_MOGE2 §15).

Network outputs must match to 1e-5 (bit for bit on the generating setup). Focal and shift
come from scipy's Levenberg-Marquardt with a loose ftol: exact with the generating scipy
minor version, within ~1e-2 with others (SPEC_MOGE2 §14), and so are the depths built on them.
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import scipy
import torch

from ppd_core.errors import CheckpointError
from ppd_core.model import DiTConfig, MoGe2, PixelPerfectDepth, PPDConfig, euler_step, timesteps
from ppd_core.model.checkpoint import load_moge2, load_ppd_moge
from ppd_core.model.moge2 import token_grid, tokens_for_level
from ppd_core.model.moge2_camera import (
    depth_to_points,
    focal_from_fov_x,
    image_uv,
    intrinsics_from_focal,
    normalized_view_plane_uv,
    recover_focal_shift,
)
from ppd_core.model.moge2_convstack import ConvStack
from tests.checkpoints import SMALL_MOGE_CONFIG, small_moge, write_small_moge, write_small_ppd_moge

DATA = Path(__file__).parent / "data"
# Exact on the generating CPU; another CPU's float32 kernels (exp, the order of sums) move
# outputs by up to ~1.1e-5, and the DiT's by ~2e-5 more through the timestep frequencies
# (one float32 ulp of a frequency at t = 1000; tests/test_model_vectors.py).
ATOL = 2e-5
ATOL_TIMESTEP = 4e-5
VECTORS = np.load(DATA / "vectors_moge2.npz")
META = json.loads(str(VECTORS["meta/json"]))
SAME_SCIPY = scipy.__version__.split(".")[:2] == META["generator"]["scipy"].split(".")[:2]
SOLVER_ATOL = 1e-5 if SAME_SCIPY else 2e-2


def t(key: str) -> torch.Tensor:
    return torch.from_numpy(VECTORS[key])


def params(prefix: str) -> dict:
    return {k[len(prefix):]: torch.from_numpy(VECTORS[k]) for k in VECTORS.keys() if k.startswith(prefix)}


def close(actual: torch.Tensor, key: str, atol: float = ATOL) -> None:
    torch.testing.assert_close(actual, t(key), atol=atol, rtol=0)


def tiny_config(**changes) -> dict:
    """The vectors' tiny MoGe config, its hub name replaced by the ViT sizes it stands for."""
    config, arch = META["moge_tiny"]["config"], META["moge_tiny"]["backbone_arch"]
    backbone = {k: arch[k] for k in ("embed_dim", "depth", "num_heads", "patch_size", "img_size")}
    return {**config, "encoder": {**config["encoder"], "backbone": backbone}, **changes}


def tiny_moge(**changes) -> MoGe2:
    model = MoGe2(**tiny_config(**changes))
    model.load_state_dict(params("moge_tiny/param/"), strict=True)
    return model.eval()


@pytest.fixture(scope="module")
def moge():
    return tiny_moge()


# -- functions ------------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(META["func"]["normalized_view_plane_uv"]))
def test_view_plane_uv(case):
    spec = META["func"]["normalized_view_plane_uv"][case]
    uv = normalized_view_plane_uv(spec["width"], spec["height"], spec["aspect_ratio"])
    assert torch.equal(uv, t(f"func/normalized_view_plane_uv/{case}"))


def test_token_budgets_and_grids():
    assert [tokens_for_level(level) for level in range(10)] == VECTORS["func/num_tokens_for_resolution_level"].tolist()
    for H, W, num_tokens, rows, cols in VECTORS["func/base_grid_table"].tolist():
        assert token_grid(H, W, num_tokens) == (rows, cols), (H, W, num_tokens)
    assert token_grid(768, 1024, 3600) == (51, 69)  # floored, not rounded as upstream MoGe does now


def test_single_pass_grid_rule_fails_where_the_official_sweep_did():
    """token_grid(H, W, (H/16)(W/16)) is not always (H/16, W/16): why forward_grid takes the grid."""
    for H, W, grid in META["single_pass"]["sweep"]["mismatches"]:
        assert token_grid(H, W, (H // 16) * (W // 16)) == tuple(grid) != (H // 16, W // 16)
    for size, case in META["single_pass"].items():
        if size != "sweep":
            H, W = map(int, size.split("x"))
            assert token_grid(H, W, case["num_tokens"]) == tuple(case["forward_encoder_grid"])


def test_camera_functions():
    intrinsics = intrinsics_from_focal(t("func/utils3d/fx"), t("func/utils3d/fy"))
    assert torch.equal(intrinsics, t("func/utils3d/intrinsics"))
    close(depth_to_points(t("func/utils3d/depth"), intrinsics), "func/utils3d/points", atol=1e-6)
    assert torch.equal(image_uv(5, 7), t("func/utils3d/image_uv_5x7"))


# -- network --------------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(META["encoder"]["cases"]))
def test_encoder(moge, case):
    spec = META["encoder"]["cases"][case]
    rows, cols = spec["token_rows"], spec["token_cols"]
    image = t(f"encoder/{case}/image")
    with torch.no_grad():
        features, cls_token = moge.encode(image, rows, cols)
        close(features, f"encoder/{case}/features")
        close(cls_token, f"encoder/{case}/cls_token")
        if f"encoder/{case}/inter/image_14" not in VECTORS:
            return
        x = moge.encoder.prepare(image, rows, cols)
        close(x, f"encoder/{case}/inter/image_14")
        pos = moge.encoder.backbone.position_embedding(rows, cols, square=x.shape[-1] == x.shape[-2])
        close(pos, f"encoder/{case}/inter/pos_embed_used")
        layers = moge.encoder.backbone.intermediate_layers(x, moge.encoder.layers)
    for j, tokens in enumerate(layers):
        close(tokens[:, 1:], f"encoder/{case}/inter/layer_{j}_tokens")
        close(tokens[:, 0], f"encoder/{case}/inter/layer_{j}_cls")


@pytest.mark.parametrize("case", sorted(META["forward"]["cases"]))
def test_forward(moge, case):
    image, num_tokens = t(f"forward/{case}/image"), int(VECTORS[f"forward/{case}/num_tokens"])
    assert token_grid(*image.shape[-2:], num_tokens) == tuple(VECTORS[f"forward/{case}/base_grid"].tolist())
    with torch.no_grad():
        out = moge(image, num_tokens)
    assert set(out) == {"points", "normal", "mask", "metric_scale"}
    for name in out:
        close(out[name], f"forward/{case}/{name}")


@pytest.mark.parametrize("case", [c for c, spec in sorted(META["forward"]["cases"].items()) if spec["intermediates"]])
def test_forward_intermediates(moge, case):
    prefix = f"forward/{case}/inter/"
    image = t(f"forward/{case}/image")
    H, W = image.shape[-2:]
    rows, cols = VECTORS[f"forward/{case}/base_grid"].tolist()
    with torch.no_grad():
        features, cls_token = moge.encode(image, rows, cols)
        close(features, prefix + "encoder_features")
        close(cls_token, prefix + "encoder_cls")
        inputs = moge.neck_inputs(features, W / H)
        levels = moge.neck(inputs)
        for level in range(5):
            close(inputs[level], prefix + f"neck_in_{level}")
            close(levels[level], prefix + f"neck_out_{level}")
        for name in ("points", "normal", "mask"):
            close(getattr(moge, f"{name}_head")(levels)[-1], prefix + f"{name}_raw")
        close(moge.scale_head(cls_token), prefix + "scale_raw")


@pytest.mark.parametrize("mode", ["linear", "sinh", "exp", "sinh_exp"])
def test_remap_modes(mode):
    model = tiny_moge(remap_output=mode)
    with torch.no_grad():
        out = model(t("forward/b1_60x80_nt12/image"), 12)
    close(out["points"], f"remap/{mode}/points")


@pytest.mark.parametrize("case", sorted(META["semantics"]["cases"]))
def test_semantics(moge, case):
    with torch.no_grad():
        close(moge.forward_semantics(t(f"semantics/{case}/image")), f"semantics/{case}/semantics")


def test_one_encoder_pass_for_semantics_and_geometry(moge):
    image = t("semantics/b1_64x96/image")
    with torch.no_grad():
        single = moge.forward_grid(image, 4, 6)
        assert torch.equal(single.pop("semantics"), moge.forward_semantics(image))
        two_pass = moge(image, 24)  # token_grid(64, 96, 24) == (4, 6)
    assert single.keys() == two_pass.keys()
    assert all(torch.equal(single[k], two_pass[k]) for k in single)


def test_convstack_norm_options():
    model = ConvStack(**META["convstack_norms"]["config"])
    model.load_state_dict(params("convstack_norms/param/"), strict=True)
    with torch.no_grad():
        outs = model.eval()([t("convstack_norms/in_0"), None, t("convstack_norms/in_2"), None])
    assert len(outs) == 4
    for i, out in enumerate(outs):
        close(out, f"convstack_norms/out_{i}")


# -- focal / shift and infer ----------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(META["focal_shift"]["cases"]))
def test_recover_focal_shift(case):
    prefix = f"focal_shift/{case}/"
    mask = t(prefix + "mask") if prefix + "mask" in VECTORS else None
    focal_in = t(prefix + "focal_in") if prefix + "focal_in" in VECTORS else None
    focal, shift = recover_focal_shift(t(prefix + "points"), mask, focal=focal_in)
    assert focal.dtype == shift.dtype == torch.float32
    close(focal, prefix + "focal", atol=SOLVER_ATOL)
    close(shift, prefix + "shift", atol=SOLVER_ATOL)


def test_synthetic_focal_shift_is_recovered():
    for case, truth in META["focal_shift"]["synthetic_truth"].items():
        mask = None if "nomask" in case else t(f"focal_shift/{case}/mask")
        focal, shift = recover_focal_shift(t(f"focal_shift/{case}/points"), mask)
        assert abs(focal.item() - truth["focal"]) < 1e-5 and abs(shift.item() - truth["shift"]) < 1e-5


@pytest.mark.parametrize("case", sorted(META["infer"]["cases"]))
def test_infer(moge, case):
    prefix = f"infer/{case}/"
    kwargs = dict(META["infer"]["cases"][case]["kwargs"])
    if "fov_x" in kwargs:
        kwargs["fov_x"] = VECTORS[prefix + "fov_x"]
    depth, mask, intrinsics = moge.infer(t(prefix + "image"), **kwargs)
    expected_depth, expected_mask = VECTORS[prefix + "depth"], VECTORS[prefix + "mask"]
    assert depth.shape == expected_depth.shape and depth.dtype == np.float32
    assert mask.dtype == bool and intrinsics.shape == VECTORS[prefix + "intrinsics"].shape
    if SAME_SCIPY:
        np.testing.assert_array_equal(mask, expected_mask)
    else:
        assert (mask == expected_mask).mean() > 0.99
    both = mask & expected_mask
    np.testing.assert_array_equal(np.isinf(depth), ~mask)
    np.testing.assert_allclose(depth[both], expected_depth[both], rtol=SOLVER_ATOL, atol=0)
    intrinsics_atol = 1e-6 if SAME_SCIPY else SOLVER_ATOL
    np.testing.assert_allclose(intrinsics, VECTORS[prefix + "intrinsics"], atol=intrinsics_atol, rtol=0)


@pytest.mark.parametrize("case", sorted(META["infer"]["cases"]))
def test_infer_intermediates(moge, case):
    """The token budget, the forward output and the focal / shift that infer() works from."""
    prefix = f"infer/{case}/"
    kwargs = META["infer"]["cases"][case]["kwargs"]
    image = t(prefix + "image")
    image = image[None] if image.dim() == 3 else image
    num_tokens = kwargs.get("num_tokens") or tokens_for_level(kwargs.get("resolution_level", 9))
    assert num_tokens == int(VECTORS[prefix + "inter/num_tokens"])
    with torch.no_grad():
        out = moge(image, num_tokens)
    close(out["points"], prefix + "inter/points_before_shift")
    mask = out["mask"] > 0.5
    assert torch.equal(mask, t(prefix + "inter/mask_before_depth_check"))
    focal = None
    if "fov_x" in kwargs:
        B, _, H, W = image.shape
        focal = focal_from_fov_x(VECTORS[prefix + "fov_x"], W / H, B, image.device)
    focal, shift = recover_focal_shift(out["points"], mask, focal=focal)
    close(focal, prefix + "inter/focal", atol=SOLVER_ATOL)
    close(shift, prefix + "inter/shift", atol=SOLVER_ATOL)


def test_infer_is_float32_under_autocast_and_keeps_the_mask_when_asked(moge):
    image = t("infer/b1_60x80_nt30/image")
    expected = moge.infer(image, num_tokens=30)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        again = moge.infer(image, num_tokens=30)
    assert all(np.array_equal(a, b) for a, b in zip(expected, again))
    depth, mask, _ = moge.infer(image, num_tokens=30, apply_mask=False)
    assert np.isfinite(depth).all() and np.array_equal(mask, expected[1])
    np.testing.assert_array_equal(depth[mask], expected[0][mask])


# -- PixelPerfectDepth with MoGe-2 semantics ------------------------------------------------

E2E_DIT = DiTConfig(hidden_size=64, depth=4, num_heads=4, patch_size=8, mlp_hidden=256, semantic_dim=32)


@pytest.fixture(scope="module")
def ppd_moge(moge):
    model = PixelPerfectDepth(PPDConfig(dit=E2E_DIT, encoder=None), sem_encoder=moge)
    state = {f"sem_encoder.{k}": v for k, v in params("moge_tiny/param/").items()}
    state.update({f"dit.{k}": v for k, v in params("ppd_moge_e2e/dit/param/").items()})
    model.load_state_dict(state, strict=True)
    return model.eval()


@pytest.mark.parametrize("steps", [1, 4])
def test_ppd_moge_end_to_end(ppd_moge, steps):
    prefix = f"ppd_moge_e2e/steps{steps}/"
    image, noise = t("ppd_moge_e2e/image"), t("ppd_moge_e2e/noise")
    schedule = VECTORS[prefix + "timesteps"].tolist()
    assert schedule == timesteps(steps) == timesteps(steps, "official_cpu")
    with torch.no_grad():
        semantics = ppd_moge.sem_encoder.forward_semantics(image)
        close(semantics, "ppd_moge_e2e/semantics")
        latent = noise
        for i, step in enumerate(schedule):
            step_tensor = torch.tensor([step], dtype=torch.int32)
            pred = ppd_moge.dit(torch.cat([latent, image - 0.5], dim=1), semantics, step_tensor)
            close(pred, prefix + f"pred/{i}", atol=ATOL_TIMESTEP)
            latent = euler_step(latent, pred, step, schedule[i + 1] if i + 1 < len(schedule) else -1)
            close(latent, prefix + f"latent/{i}", atol=ATOL_TIMESTEP)
    close(ppd_moge.sample(image, noise, steps=steps), prefix + "depth")


def test_encoder_and_dit_must_agree_on_the_semantic_width(moge):
    with pytest.raises(ValueError, match="32-channel semantics, the DiT expects 64"):
        dit = DiTConfig(hidden_size=64, depth=2, num_heads=1, semantic_dim=64)
        PixelPerfectDepth(PPDConfig(dit=dit, encoder=None), sem_encoder=moge)


# -- released size --------------------------------------------------------------------------

KEYS = json.loads((DATA / "keys_moge2_vitl.json").read_text())
DA2_KEYS = json.loads((DATA / "keys_ppd_da2.json").read_text())


def shapes(module: torch.nn.Module) -> dict:
    return {k: list(v.shape) for k, v in module.state_dict().items()}


def test_released_moge2_keys_and_shapes():
    with torch.device("meta"):
        model = MoGe2(**KEYS["model_config"])
    expected = KEYS["moge2_vitl_normal"]["model"]
    got = shapes(model)
    assert got == expected and list(got) == list(expected)  # order too
    assert sum(p.numel() for p in model.parameters()) == KEYS["moge2_vitl_normal"]["counts"]["params"] == 330_901_544
    assert model.encoder.layers == [5, 11, 17, 23] and model.semantic_dim == 1024


def test_released_ppd_moge_layout():
    with torch.device("meta"):
        moge = MoGe2(**KEYS["model_config"])
        model = PixelPerfectDepth(PPDConfig(encoder=None), sem_encoder=moge)
        da2 = PixelPerfectDepth()
    got = shapes(model)
    assert len(got) == 873
    dit = {k: v for k, v in got.items() if k.startswith("dit.")}
    da2_dit = {k: v for k, v in shapes(da2).items() if k.startswith("dit.")}
    assert dit == da2_dit and list(dit) == list(da2_dit) == list(DA2_KEYS["ppd_da2_module"]["dit"])
    listing = KEYS["ppd_moge2_module"]
    assert got == {**listing["sem_encoder"], **listing["dit"]}
    assert list(got) == [*listing["sem_encoder"], *listing["dit"]]


def smaller_config(backbone: str, dim: int, neck_blocks: list, scale_dims: list, normals: bool = True) -> dict:
    """The released config re-sized (SPEC_MOGE2 §2.2 table: ViT-S / ViT-B MoGe-2)."""
    config = json.loads(json.dumps(KEYS["model_config"]))
    config["encoder"].update(backbone=backbone, dim_out=dim, intermediate_layers=[5, 11])
    config["neck"].update(dim_in=[dim + 2, 2, 2, 2, 2], num_res_blocks=neck_blocks)
    config["neck"]["dim_res_blocks"][0] = dim
    for head in ("points_head", "normal_head", "mask_head"):
        config[head]["dim_in"][0] = config[head]["dim_res_blocks"][0] = dim
    config["scale_head"]["dims"] = scale_dims
    if not normals:
        del config["normal_head"]
    return config


def test_other_released_configurations_build():
    with torch.device("meta"):
        vits = MoGe2(**smaller_config("dinov2_vits14", 384, [0, 1, 1, 1, 0], [384, 384, 384, 1]))
        vitb = MoGe2(**smaller_config("dinov2_vitb14", 768, [0, 1, 1, 1, 0], [768, 768, 768, 1]))
        config = {k: v for k, v in KEYS["model_config"].items() if k != "normal_head"}
        no_normals = MoGe2(**config)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert (count(vits), count(vitb), count(no_normals)) == (35_103_656, 104_743_592, 326_209_221)
    assert no_normals.normal_head is None


# -- loading --------------------------------------------------------------------------------


def smooth_image(seed: int, height: int, width: int) -> torch.Tensor:
    """(1, 3, H, W) random colour blobs: a bilinear upsampling of an (H/8, W/8) noise image."""
    noise = torch.rand((1, 3, height // 8, width // 8), generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.interpolate(noise, (height, width), mode="bilinear")


def run(model: MoGe2) -> dict:
    image = smooth_image(2, 48, 64)
    with torch.no_grad():
        return model(image, 24)


@pytest.fixture(scope="module")
def small_files(tmp_path_factory):
    return write_small_ppd_moge(tmp_path_factory.mktemp("moge"))


def test_small_moge_file_loads_identically(tmp_path):
    model = small_moge(seed=4)
    folder = write_small_moge(tmp_path, model=model)
    loaded = load_moge2(folder / "moge2.pt")
    assert not any(p.requires_grad for p in loaded.parameters()) and not loaded.training
    expected, got = run(model), run(loaded)
    assert all(torch.equal(expected[k], got[k]) for k in expected)


def test_small_moge_geometry_is_plausible(small_files):
    moge = load_moge2(small_files / "moge2.pt")
    image = smooth_image(3, 48, 64)
    depth, mask, intrinsics = moge.infer(image, num_tokens=24)
    assert mask.mean() > 0.7 and (depth[mask] > 0).all() and np.isfinite(depth[mask]).all()
    assert intrinsics[0, 0] > 0 and intrinsics[1, 1] > 0


def test_bf16_held_moge_infers_close_to_fp32(small_files):
    """Weights held in bf16 run `infer` under bf16 autocast (fp32 cannot multiply them); the
    bounds are those of the bf16 estimates in tests/test_precision.py (measured: depth 1-2 %)."""
    exact = load_moge2(small_files / "moge2.pt")
    low = load_moge2(small_files / "moge2.pt", dtype=torch.bfloat16)
    assert low.encoder.backbone.patch_embed.proj.weight.dtype == torch.bfloat16
    image = smooth_image(3, 48, 64)
    depth, mask, intrinsics = exact.infer(image, num_tokens=24)
    low_depth, low_mask, low_intrinsics = low.infer(image, num_tokens=24)
    assert low_depth.dtype == np.float32 and low_mask.dtype == bool and low_intrinsics.dtype == np.float32
    both = mask & low_mask
    assert both.mean() > 0.9 and np.isfinite(low_depth[low_mask]).all()
    assert np.abs(low_depth[both] / depth[both] - 1).max() < 0.05
    np.testing.assert_allclose(low_intrinsics, intrinsics, rtol=0.05, atol=1e-3)


def save_moge(path: Path, state: dict, config) -> Path:
    torch.save({"model": state, "model_config": config}, path)
    return path


def test_bad_moge_files_are_refused_clearly(small_files, tmp_path):
    data = torch.load(small_files / "moge2.pt", weights_only=True)
    state, config = data["model"], data["model_config"]
    missing = {k: v for k, v in state.items() if k != "neck.input_blocks.0.bias"}
    with pytest.raises(CheckpointError, match=r"a\.pt: 1 MoGe-2 keys missing: neck\.input_blocks\.0\.bias"):
        load_moge2(save_moge(tmp_path / "a.pt", missing, config))
    with pytest.raises(CheckpointError, match=r"b\.pt: 1 unexpected MoGe-2 keys: neck\.extra\.weight"):
        load_moge2(save_moge(tmp_path / "b.pt", {**state, "neck.extra.weight": torch.zeros(1)}, config))
    wrong_shape = r"c\.pt: MoGe-2 key 'scale_head\.4\.bias' has shape \(2,\), the network needs \(1,\)"
    with pytest.raises(CheckpointError, match=wrong_shape):
        load_moge2(save_moge(tmp_path / "c.pt", {**state, "scale_head.4.bias": torch.zeros(2)}, config))
    torch.save({"model": state}, tmp_path / "d.pt")
    with pytest.raises(CheckpointError, match=r"d\.pt: no 'model_config'"):
        load_moge2(tmp_path / "d.pt")
    torch.save(state, tmp_path / "e.pt")
    with pytest.raises(CheckpointError, match=r"e\.pt: not a MoGe-2 checkpoint"):
        load_moge2(tmp_path / "e.pt")
    for text in ("not weights", "abc", "{}"):
        (tmp_path / "f.pt").write_text(text)
        with pytest.raises(CheckpointError, match=r"f\.pt: not a readable checkpoint \(it is not a PyTorch"):
            load_moge2(tmp_path / "f.pt")
    torch.save({"model": state, "model_config": config, "hook": os.system}, tmp_path / "g.pt")
    with pytest.raises(CheckpointError, match=r"g\.pt: refused to load: .*could run code"):
        load_moge2(tmp_path / "g.pt")
    with pytest.raises(CheckpointError, match=r"h\.pt: model_config has entries no MoGe-2 has: depth_head"):
        load_moge2(save_moge(tmp_path / "h.pt", state, {**config, "depth_head": {}}))


def test_ppd_moge_loads_and_samples(small_files, tmp_path):
    model = load_ppd_moge(small_files / "ppd_moge.pth", small_files / "moge2.pt")
    assert isinstance(model.sem_encoder, MoGe2) and model.config.encoder is None
    keys = list(model.state_dict())
    assert keys[0] == "sem_encoder.encoder.image_mean" and all(k.startswith(("sem_encoder.", "dit.")) for k in keys)
    image = smooth_image(5, 32, 48)
    noise = torch.randn((1, 1, 32, 48), generator=torch.Generator().manual_seed(6))
    depth = model.sample(image, noise, steps=2)
    assert depth.shape == (1, 1, 32, 48) and torch.isfinite(depth).all()

    dit = torch.load(small_files / "ppd_moge.pth", weights_only=True)
    override = {"sem_encoder.encoder.output_projections.0.bias": torch.ones(64)}
    torch.save({**{"pipeline." + k: v for k, v in dit.items()}, **override}, tmp_path / "p.pth")
    overridden = load_ppd_moge(tmp_path / "p.pth", small_files / "moge2.pt")
    assert torch.equal(overridden.sem_encoder.encoder.output_projections[0].bias, torch.ones(64))
    assert not torch.equal(overridden.sample(image, noise, steps=2), depth)


def test_ppd_moge_pairs_that_do_not_belong_together(small_files, tmp_path):
    dit = torch.load(small_files / "ppd_moge.pth", weights_only=True)
    dit["dit.proj_fusion.0.weight"] = dit["dit.proj_fusion.0.weight"][:, :96]  # 64 hidden + 32 semantic channels
    torch.save(dit, tmp_path / "ppd_moge.pth")
    with pytest.raises(CheckpointError, match=r"ppd_moge\.pth: the DiT expects 32-channel semantics but .*pt gives 64"):
        load_ppd_moge(tmp_path / "ppd_moge.pth", small_files / "moge2.pt")
    torch.save({"dit.x": torch.zeros(1), "depth_head.y": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match=r"other\.pth: unexpected keys .*depth_head\.y"):
        load_ppd_moge(tmp_path / "other.pth", small_files / "moge2.pt")
    with pytest.raises(CheckpointError, match=r"ppd_moge\.pth: not a MoGe-2 checkpoint"):
        load_ppd_moge(small_files / "ppd_moge.pth", small_files / "ppd_moge.pth")


def test_small_moge_config_is_the_released_layout():
    assert set(SMALL_MOGE_CONFIG) == set(KEYS["model_config"])
    for name in ("neck", "points_head", "normal_head", "mask_head"):
        assert set(SMALL_MOGE_CONFIG[name]) == set(KEYS["model_config"][name])
