"""Loading the video model's files strictly: the released key layout, refusals named by key."""

import pickle
import warnings

import pytest
import torch
from safetensors.torch import load_file, save_file

from ppd_core.errors import CheckpointError
from ppd_core.model import PixelPerfectVideoDepth
from ppd_core.model.checkpoint_video import PI3_UNUSED_PREFIXES, load_video_depth
from tests.video_weights import FULL_KEYS_DIT, FULL_KEYS_PI3, KEYS, tiny_video_model, write_video_weights
from tests.video_weights import one_thread  # noqa: F401 (a fixture)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """(model, ppvd.pth, model.safetensors) of a tiny model with the released key names."""
    model = tiny_video_model(seed=5)
    ppvd, pi3 = write_video_weights(tmp_path_factory.mktemp("video_weights"), model)
    return model, ppvd, pi3


def window_output(model) -> torch.Tensor:
    g = torch.Generator().manual_seed(2)
    frames = torch.rand((4, 3, 32, 32), generator=g)
    return model.sample_window(frames, torch.randn((4, 1, 32, 32), generator=g), steps=2)


def test_released_size_keys_and_shapes():
    """At released size (built on the meta device: nothing allocated) the keys and shapes are the
    official module's: all of DiT_Video, and of Pi3 exactly those its semantic path uses."""
    with torch.device("meta"):
        model = PixelPerfectVideoDepth()
    got = {k: list(v.shape) for k, v in model.state_dict().items()}
    listing = KEYS["ppvd_module"]
    used = set(KEYS["pi3_split"]["used_by_forward_semantics"])
    expected = {f"sem_encoder.{k}": listing["sem_encoder"][f"sem_encoder.{k}"] for k in used}
    expected.update(listing["dit_video"])
    assert got == expected
    assert len(got) == 994 + 395
    def parameters(prefix: str) -> int:
        return sum(v.numel() for k, v in model.state_dict().items() if k.startswith(prefix))

    assert parameters("dit_video.") == listing["counts"]["dit_video_params"]
    assert parameters("sem_encoder.") == KEYS["pi3_split"]["counts"]["used_params"]
    assert used | {k for k in KEYS["pi3_model_safetensors_presumed"]["keys"] if k.startswith(PI3_UNUSED_PREFIXES)} \
        == set(KEYS["pi3_model_safetensors_presumed"]["keys"])


def test_tiny_files_hold_the_released_key_names(written):
    _, ppvd, pi3 = written
    assert set(torch.load(ppvd, weights_only=True)) == set(KEYS["ppvd_pth_presumed"]["keys"])
    assert set(load_file(str(pi3))) == set(KEYS["pi3_model_safetensors_presumed"]["keys"])


def test_files_load_strictly_into_the_model_they_came_from(written):
    model, ppvd, pi3 = written
    loaded = load_video_depth(ppvd, pi3)
    assert loaded.sem_encoder.config == model.sem_encoder.config
    assert loaded.dit_video.config == model.dit_video.config
    original = model.state_dict()
    assert loaded.state_dict().keys() == original.keys()
    assert all(torch.equal(v, original[k]) for k, v in loaded.state_dict().items())
    assert not any(p.requires_grad for p in loaded.parameters())
    assert torch.equal(window_output(loaded), window_output(model))


def test_weights_held_in_bf16(written):
    _, ppvd, pi3 = written
    loaded = load_video_depth(ppvd, pi3, dtype=torch.bfloat16)
    assert loaded.dit_video.blocks[0].attn.qkv.weight.dtype == torch.bfloat16
    assert loaded.sem_encoder.encoder.patch_embed.proj.weight.dtype == torch.bfloat16
    assert loaded.dit_video.pos_embed.dtype == loaded.sem_encoder.image_mean.dtype == torch.float32


def edit_ppvd(tmp_path, ppvd, change) -> object:
    state = torch.load(ppvd, weights_only=True)
    change(state)
    path = tmp_path / "ppvd.pth"
    torch.save(state, path)
    return path


def edit_pi3(tmp_path, pi3, change) -> object:
    state = load_file(str(pi3))
    change(state)
    path = tmp_path / "model.safetensors"
    save_file(state, str(path))
    return path


@pytest.mark.parametrize("key", ["dit_video.temporal_blocks.2.mlp.fc2.bias", "dit_video.pos_embed"])
def test_missing_dit_key_is_refused_by_name(written, tmp_path, key):
    _, ppvd, pi3 = written
    path = edit_ppvd(tmp_path, ppvd, lambda s: s.pop(key))
    with pytest.raises(CheckpointError, match=f"{path}.*missing.*{key[len('dit_video.'):]}"):
        load_video_depth(path, pi3)


@pytest.mark.parametrize("key", ["dit_video.extra.weight", "blocks.0.attn.qkv.weight", "dit.final_layer.linear.bias"])
def test_unexpected_ppvd_key_is_refused_by_name(written, tmp_path, key):
    _, ppvd, pi3 = written
    path = edit_ppvd(tmp_path, ppvd, lambda s: s.__setitem__(key, torch.zeros(1)))
    named = key[len("dit_video."):] if key.startswith("dit_video.") else key
    with pytest.raises(CheckpointError, match=f"{path}.*unexpected.*{named}"):
        load_video_depth(path, pi3)


def test_missing_pi3_key_is_refused_by_name(written, tmp_path):
    _, ppvd, pi3 = written
    path = edit_pi3(tmp_path, pi3, lambda s: s.pop("decoder.35.ls2.gamma"))
    with pytest.raises(CheckpointError, match=f"{path}.*missing.*decoder.35.ls2.gamma"):
        load_video_depth(ppvd, path)


def test_unexpected_pi3_key_is_refused_by_name(written, tmp_path):
    _, ppvd, pi3 = written
    path = edit_pi3(tmp_path, pi3, lambda s: s.__setitem__("encoder.mask_token", torch.zeros(1, 32)))
    with pytest.raises(CheckpointError, match=f"{path}.*unexpected.*encoder.mask_token"):
        load_video_depth(ppvd, path)


def test_pi3_without_its_unused_heads_loads(written, tmp_path):
    model, ppvd, pi3 = written
    path = edit_pi3(tmp_path, pi3, lambda s: [s.pop(k) for k in list(s) if k.startswith(PI3_UNUSED_PREFIXES)])
    assert torch.equal(window_output(load_video_depth(ppvd, path)), window_output(model))


def test_wrong_shape_is_refused_by_name(written, tmp_path):
    _, ppvd, pi3 = written
    path = edit_ppvd(tmp_path, ppvd, lambda s: s.__setitem__("dit_video.blocks.3.mlp.fc1.bias", torch.zeros(7)))
    with pytest.raises(CheckpointError, match=r"blocks.3.mlp.fc1.bias.*\(7,\)"):
        load_video_depth(path, pi3)


def test_files_that_do_not_belong_together(written, tmp_path):
    _, ppvd, _ = written
    other = tiny_video_model(seed=1, pi3={**FULL_KEYS_PI3, "enc_embed_dim": 64},
                             dit={**FULL_KEYS_DIT, "semantic_dim": 128})
    _, pi3 = write_video_weights(tmp_path, other)
    with pytest.raises(CheckpointError, match="expects 64-channel semantics but .* gives 128: the two files do not"):
        load_video_depth(ppvd, pi3)


def test_pi3_overrides_in_ppvd_apply(written, tmp_path):
    model, ppvd, pi3 = written
    gain = torch.full((32,), 0.25)
    path = edit_ppvd(tmp_path, ppvd, lambda s: s.update({"sem_encoder.decoder.3.ls2.gamma": gain,
                                                         "sem_encoder.point_head.proj.weight": torch.zeros(2)}))
    loaded = load_video_depth(path, pi3)
    assert torch.equal(loaded.sem_encoder.decoder[3].ls2.gamma, gain)


def test_position_table_other_than_sincos_warns(written, tmp_path):
    _, ppvd, pi3 = written
    path = edit_ppvd(tmp_path, ppvd, lambda s: s["dit_video.pos_embed"].add_(0.01))
    with pytest.warns(UserWarning, match="pos_embed differs from the 2-D sin-cos table"):
        loaded = load_video_depth(path, pi3)
    assert torch.allclose(loaded.dit_video.pos_embed, torch.load(path, weights_only=True)["dit_video.pos_embed"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_video_depth(ppvd, pi3)


class Payload:
    def __reduce__(self):
        return (print, ("this ran",))


def test_pickle_that_runs_code_is_refused(written, tmp_path):
    _, _, pi3 = written
    path = tmp_path / "ppvd.pth"
    torch.save({"dit_video.x": Payload()}, path, pickle_module=pickle)
    with pytest.raises(CheckpointError, match="refused to load"):
        load_video_depth(path, pi3)


def test_sizes_beyond_any_pi3_are_refused_before_building(written, tmp_path):
    _, ppvd, pi3 = written
    extra_blocks = {f"decoder.{i}.ls1.gamma": torch.zeros(1) for i in range(36, 500)}
    path = edit_pi3(tmp_path, pi3, lambda s: s.update(extra_blocks))
    with pytest.raises(CheckpointError, match="decoder blocks: 500, outside 2..64; refusing to build"):
        load_video_depth(ppvd, path)


def test_position_table_of_no_square_grid_is_refused(written, tmp_path):
    _, ppvd, pi3 = written
    path = edit_ppvd(tmp_path, ppvd, lambda s: s.__setitem__("dit_video.pos_embed", torch.zeros(1, 6, 32)))
    with pytest.raises(CheckpointError, match="pos_embed has 6 positions, not a square grid"):
        load_video_depth(path, pi3)
