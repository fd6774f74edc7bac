"""Checkpoints that declare absurd sizes are refused in one line before any network is
built: a MoGe-2 `model_config` (thousands of blocks, a token budget needing terabytes,
block counts its own weights do not hold) and PPD files whose tensors give impossible sizes."""

import copy
import json
import time
from pathlib import Path

import pytest
import torch

from ppd_core.errors import CheckpointError
from ppd_core.model.checkpoint import load_moge2, load_pixel_perfect_depth, load_ppd_moge
from ppd_core.model.moge2 import MoGe2
from ppd_core.model.sizes import check_moge2_config
from tests.checkpoints import SMALL_MOGE_CONFIG, write_small_moge, write_small_ppd_moge, write_small_weights

RELEASED = Path(__file__).parent / "data" / "keys_moge2_vitl.json"


@pytest.fixture(scope="module")
def small_moge_file(tmp_path_factory) -> dict:
    folder = write_small_moge(tmp_path_factory.mktemp("moge"))
    return torch.load(folder / "moge2.pt", weights_only=True)


def refused_quickly(load, *args, match: str) -> None:
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match=match) as refused:
        load(*args)
    assert time.perf_counter() - start < 2, "the refusal came after building"
    assert "\n" not in str(refused.value)


def with_config(small: dict, path: Path, change) -> Path:
    config = copy.deepcopy(small["model_config"])
    change(config)
    torch.save({"model": small["model"], "model_config": config}, path)
    return path


@pytest.mark.parametrize("change,match", [
    (lambda c: c["encoder"]["backbone"].update(depth=5000), r"block count is 5000, outside 1\.\.64"),
    (lambda c: c["encoder"]["backbone"].update(depth=3), r"asks for 3 blocks, the weights hold 2"),
    (lambda c: c.update(num_tokens_range=[1200, 10**9]), r"num_tokens_range is 1000000000, outside 1200\.\.10000"),
    (lambda c: c["neck"].update(num_res_blocks=[0, 5000, 1, 1, 0]), r"neck.num_res_blocks is 5000, outside 0\.\.16"),
    (lambda c: c["points_head"].update(num_res_blocks=[0, 2, 1, 1, 0]),
     r"points_head level 1 asks for 2 residual blocks, the weights hold 1"),
    (lambda c: c["encoder"].update(dim_out=10**9), r"encoder.dim_out is 1000000000, outside 1\.\.8192"),
    (lambda c: c["mask_head"].update(dim_res_blocks=[64] * 40), r"mask_head.dim_res_blocks must list 1\.\.6"),
    (lambda c: c["scale_head"].update(dims=[64, "1024", 1]), r"scale_head.dims is '1024', not a whole number"),
    (lambda c: c["encoder"].update(backbone="dinov2_vitz99"), r"backbone is not understood"),
    (lambda c: c.update(extra={}), r"model_config has entries no MoGe-2 has: extra"),
])
def test_an_absurd_moge2_config_is_refused_before_building(small_moge_file, tmp_path, change, match):
    path = with_config(small_moge_file, tmp_path / "moge2.pt", change)
    refused_quickly(load_moge2, path, match=rf"moge2\.pt: .*{match}")


def test_the_ppd_with_moge2_semantics_checks_the_config_too(tmp_path):
    folder = write_small_ppd_moge(tmp_path)
    small = torch.load(folder / "moge2.pt", weights_only=True)
    with_config(small, folder / "moge2.pt", lambda c: c["encoder"]["backbone"].update(depth=5000))
    refused_quickly(load_ppd_moge, folder / "ppd_moge.pth", folder / "moge2.pt", match="outside 1..64")


def test_the_released_config_is_within_the_limits():
    config = json.loads(RELEASED.read_text())["model_config"]
    with torch.device("meta"):
        state = MoGe2(**config).state_dict()
    check_moge2_config(config, state, Path("moge2.pt"))  # raises if a limit were below the released size
    assert sum(v.numel() for v in state.values()) > 300e6


def _ppd_with(folder: Path, change) -> Path:
    dit = torch.load(folder / "ppd.pth", weights_only=True)
    change(dit)
    torch.save(dit, folder / "ppd.pth")
    return folder


@pytest.mark.parametrize("change,match", [
    (lambda dit: dit.update({f"blocks.{n}.attn.proj.bias": torch.zeros(1) for n in range(2, 5000)}),
     r"the DiT's block count is 5000, outside 2\.\.64"),
    (lambda dit: dit.update({"blocks.0.attn.q_norm.weight": torch.zeros(0)}), r"shapes no PPD DiT has"),
    (lambda dit: dit.update({"x_embedder.proj.weight": torch.zeros(4, 4)}), r"shapes no PPD DiT has"),
    (lambda dit: dit.update({"blocks.0.attn.q_norm.weight": torch.zeros(6)}), r"does not split into"),
])
def test_a_ppd_file_whose_tensors_give_impossible_sizes_is_refused(tmp_path, change, match):
    folder = _ppd_with(write_small_weights(tmp_path), change)
    refused_quickly(load_pixel_perfect_depth, folder / "ppd.pth", folder / "depth_anything_v2_vitl.pth",
                    match=rf"ppd\.pth: .*{match}")


def test_an_encoder_file_without_positions_is_refused(tmp_path):
    folder = write_small_weights(tmp_path)
    encoder = torch.load(folder / "depth_anything_v2_vitl.pth", weights_only=True)
    encoder["pretrained.pos_embed"] = torch.zeros(1, 0, 64)
    torch.save(encoder, folder / "depth_anything_v2_vitl.pth")
    refused_quickly(load_pixel_perfect_depth, folder / "ppd.pth", folder / "depth_anything_v2_vitl.pth",
                    match=r"depth_anything_v2_vitl\.pth: the encoder's tensors have shapes no DINOv2 has")


def test_a_failed_cpu_allocation_is_said_as_out_of_memory():
    """What a size past every limit ends in at run time: torch's CPU allocator's own words."""
    from ppd_core.batch import error_text
    from ppd_core.errors import is_out_of_memory

    with pytest.raises(RuntimeError) as failed:
        torch.empty(10**15, dtype=torch.uint8)
    assert is_out_of_memory(failed.value)
    assert error_text(failed.value).startswith("out of memory") and "internal error" not in error_text(failed.value)
