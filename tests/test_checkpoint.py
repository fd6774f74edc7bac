"""Loading checkpoints in every accepted layout, and refusing bad ones clearly."""

import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from ppd_core.errors import CheckpointError
from ppd_core.model.checkpoint import load_pixel_perfect_depth, read_state_dict
from tests.checkpoints import small_model, write_small_weights


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    folder = write_small_weights(tmp_path_factory.mktemp("w"))
    model = load_pixel_perfect_depth(folder / "ppd.pth", folder / "depth_anything_v2_vitl.pth")
    return folder, run(model)


def run(model) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    image = torch.rand((1, 3, 32, 48), generator=g)
    noise = torch.randn((1, 1, 32, 48), generator=g)
    return model.sample(image, noise, steps=2)


def states(folder: Path):
    dit = torch.load(folder / "ppd.pth", weights_only=True)
    enc = torch.load(folder / "depth_anything_v2_vitl.pth", weights_only=True)
    return dit, enc


def test_small_weights_match_the_model_they_came_from(tmp_path):
    model = small_model(seed=3)
    folder = write_small_weights(tmp_path, model=model)
    loaded = load_pixel_perfect_depth(folder / "ppd.pth", folder / "depth_anything_v2_vitl.pth")
    assert loaded.config == model.config
    assert torch.equal(run(loaded), run(model))


DIT_LAYOUTS = {
    "bare": lambda d: {k[len("dit."):]: v for k, v in d.items()},
    "module": lambda d: {"module." + k: v for k, v in d.items()},
    "state_dict": lambda d: {"state_dict": d},
    "pipeline": lambda d: {"pipeline." + k: v for k, v in d.items()},
}
ENCODER_LAYOUTS = {
    "no_head": lambda e: {k: v for k, v in e.items() if not k.startswith("depth_head.")},
    "sem_encoder": lambda e: {"sem_encoder." + k: v for k, v in e.items() if k.startswith("pretrained.")},
    "module_wrapped": lambda e: {"model": {"module." + k: v for k, v in e.items()}},
}


@pytest.mark.parametrize("layout", sorted(DIT_LAYOUTS))
def test_ppd_layouts_load_identically(reference, tmp_path, layout):
    folder, expected = reference
    dit, _ = states(folder)
    torch.save(DIT_LAYOUTS[layout](dit), tmp_path / "ppd.pth")
    model = load_pixel_perfect_depth(tmp_path / "ppd.pth", folder / "depth_anything_v2_vitl.pth")
    assert torch.equal(run(model), expected)


@pytest.mark.parametrize("layout", sorted(ENCODER_LAYOUTS))
def test_encoder_layouts_load_identically(reference, tmp_path, layout):
    folder, expected = reference
    _, enc = states(folder)
    torch.save(ENCODER_LAYOUTS[layout](enc), tmp_path / "enc.pth")
    model = load_pixel_perfect_depth(folder / "ppd.pth", tmp_path / "enc.pth")
    assert torch.equal(run(model), expected)


def test_safetensors_and_half_precision_files(reference, tmp_path):
    folder, expected = reference
    dit, enc = states(folder)
    save_file({k: v.contiguous() for k, v in dit.items()}, str(tmp_path / "ppd.safetensors"))
    save_file({k: v.contiguous() for k, v in enc.items()}, str(tmp_path / "enc.safetensors"))
    model = load_pixel_perfect_depth(tmp_path / "ppd.safetensors", tmp_path / "enc.safetensors")
    assert torch.equal(run(model), expected)
    torch.save({k: v.half() for k, v in dit.items()}, tmp_path / "half.pth")
    half = load_pixel_perfect_depth(tmp_path / "half.pth", folder / "depth_anything_v2_vitl.pth")
    assert all(p.dtype == torch.float32 for p in half.parameters())


def test_encoder_keys_in_ppd_file_override_the_encoder_file(reference, tmp_path):
    folder, expected = reference
    dit, enc = states(folder)
    override = {"sem_encoder.pretrained.norm.bias": enc["pretrained.norm.bias"] + 1.0}
    torch.save({**dit, **override}, tmp_path / "ppd.pth")
    model = load_pixel_perfect_depth(tmp_path / "ppd.pth", folder / "depth_anything_v2_vitl.pth")
    assert torch.equal(model.sem_encoder.pretrained.norm.bias, override["sem_encoder.pretrained.norm.bias"])
    assert not torch.equal(run(model), expected)


def test_truncated_file(reference, tmp_path):
    folder, _ = reference
    data = (folder / "ppd.pth").read_bytes()
    (tmp_path / "ppd.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"ppd\.pth.*(truncated|corrupt)"):
        load_pixel_perfect_depth(tmp_path / "ppd.pth", folder / "depth_anything_v2_vitl.pth")


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "x.pth").write_text("hello")
    with pytest.raises(CheckpointError, match=r"x\.pth: not a readable checkpoint \(it is not a PyTorch or safetensors file\)"):
        read_state_dict(tmp_path / "x.pth")
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty\.pth: .*the file is empty"):
        read_state_dict(tmp_path / "empty.pth")


def test_missing_and_unexpected_keys_are_listed(reference, tmp_path):
    folder, _ = reference
    dit, enc = states(folder)
    broken = dict(dit)
    del broken["dit.final_layer.linear.bias"]
    torch.save(broken, tmp_path / "ppd.pth")
    with pytest.raises(CheckpointError, match=r"ppd\.pth: 1 DiT keys missing: final_layer\.linear\.bias"):
        load_pixel_perfect_depth(tmp_path / "ppd.pth", folder / "depth_anything_v2_vitl.pth")
    torch.save({**dit, "dit.extra.weight": torch.zeros(1), "something_else": torch.zeros(1)}, tmp_path / "ppd.pth")
    with pytest.raises(CheckpointError, match=r"unexpected keys.*something_else"):
        load_pixel_perfect_depth(tmp_path / "ppd.pth", folder / "depth_anything_v2_vitl.pth")
    torch.save({**enc, "pretrained.extra_token": torch.zeros(1)}, tmp_path / "enc.pth")
    with pytest.raises(CheckpointError, match=r"enc\.pth: 1 unexpected encoder keys: extra_token"):
        load_pixel_perfect_depth(folder / "ppd.pth", tmp_path / "enc.pth")


def test_wrong_shape_names_key_and_both_shapes(reference, tmp_path):
    folder, _ = reference
    dit, _ = states(folder)
    dit["dit.blocks.1.attn.proj.bias"] = torch.zeros(65)
    torch.save(dit, tmp_path / "ppd.pth")
    with pytest.raises(CheckpointError, match=r"blocks\.1\.attn\.proj\.bias.*\(65,\).*\(64,\)"):
        load_pixel_perfect_depth(tmp_path / "ppd.pth", folder / "depth_anything_v2_vitl.pth")


def test_mismatched_pair_of_files(reference, tmp_path):
    folder, _ = reference
    _, enc = states(folder)
    wide = {k: torch.zeros([128 if s == 64 else s for s in v.shape]) for k, v in enc.items() if k.startswith("pretrained.")}
    torch.save(wide, tmp_path / "enc.pth")
    with pytest.raises(CheckpointError, match="do not belong together"):
        load_pixel_perfect_depth(folder / "ppd.pth", tmp_path / "enc.pth")


class RunsCode:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"dit.x": RunsCode(str(marker))}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match=r"evil\.pth: refused to load"):
        read_state_dict(tmp_path / "evil.pth")
    assert not marker.exists()


def test_non_tensor_entries_are_refused(tmp_path):
    torch.save({"dit.x": torch.zeros(1), "epoch": 3}, tmp_path / "c.pth")
    with pytest.raises(CheckpointError, match="'epoch' is a int"):
        read_state_dict(tmp_path / "c.pth")
