"""The accuracy check behind reduced precision: every layer shape and block of the networks run in
bf16 and fp32 on this machine, the choice it leads to, its reasons and its cache."""

import json

import numpy as np

import pytest
import torch

from ppd_core.model import device as device_module
from ppd_core.model import precision_check
from ppd_core.model.dinov2 import DinoConfig, DinoVisionTransformer
from ppd_core.model.dit import DiT, DiTConfig
from ppd_core.model.inference import DepthModel
from ppd_core.model.layers import PatchEmbed
from ppd_core.model.moge2 import MoGe2
from tests.checkpoints import write_small_weights
from tests.test_precision import released_size

CPU = torch.device("cpu")
MOGE2_CONFIG = json.loads(open("tests/data/keys_moge2_vitl.json", encoding="utf-8").read())["model_config"]


def released_networks() -> list:
    """The released-size DiT, DINOv2-L and MoGe-2 (with its conv stack), built on the meta device."""
    with torch.device("meta"):
        return [("dit", DiT(DiTConfig())), ("encoder", DinoVisionTransformer(DinoConfig())),
                ("moge2", MoGe2(**MOGE2_CONFIG))]


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PPD_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "precision.json"


def pretend_bf16_pays(monkeypatch) -> None:
    """This CPU as one whose bf16 matmuls are native and fast, so that "auto" considers bf16."""
    monkeypatch.setattr(device_module, "cpu_bf16_feature", lambda: "AVX512_BF16")
    monkeypatch.setattr(device_module, "cpu_bf16_speedup", lambda: 2.0)


def test_every_layer_shape_of_the_released_networks_is_probed():
    found = precision_check.probes(released_networks())
    kinds = {probe.what.split(" ")[0] for probe in found}
    assert {"patch", "linear", "Conv2d", "ConvTranspose2d", "DiT", "ViT", "residual"} <= kinds
    whats = [probe.what for probe in found]
    assert "patch embedding 4->1024, 16x16 patches" in whats and "patch embedding 3->1024, 14x14 patches" in whats
    assert len(whats) == len(set(whats)) and not any(name.endswith("x_embedder.proj") for name in whats)
    # the DiT's 24 blocks and DINOv2's share shapes: one probe each, not one per instance
    assert sum(probe.block for probe in found) == 3 and len(found) < 40


def test_the_products_bf16_path_agrees_with_fp32_on_every_released_shape_or_auto_falls_back(monkeypatch, own_cache):
    """Runs each distinct layer shape and block of the released-size networks (seeded weights)
    both ways on the machine the suite runs on. Where torch's bf16 is right, every probe is
    within its bound; where it is wrong for a shape, "auto" must choose fp32 and name it."""
    found = precision_check.probes(released_networks())
    for probe in found:
        probe.module = released_size(probe.module)
    networks = [(probe.name, probe.module) for probe in found]
    verdict = precision_check.run_check(networks, CPU, torch.bfloat16)
    assert verdict.probes == len(found)
    if verdict.ok:
        assert 0 < verdict.error <= verdict.bound <= 8 * 2**-8
    else:
        pretend_bf16_pays(monkeypatch)
        choice = precision_check.choose_precision("auto", CPU, networks)
        assert choice.precision == "fp32" and verdict.layer in choice.why


def break_the_dit_patch_embedding_in_bf16(monkeypatch) -> None:
    """What oneDNN's bf16 convolution does to this shape on AMX CPUs: a result of noise."""
    forward = PatchEmbed.forward

    def wrong(self, x):
        out = forward(self, x)
        if self.proj.weight.dtype == torch.bfloat16 and self.proj.in_channels == 4:
            return torch.randn(out.shape, generator=torch.Generator().manual_seed(1)).to(out.dtype)
        return out

    monkeypatch.setattr(PatchEmbed, "forward", wrong)


def test_auto_chooses_fp32_and_names_the_layer_when_bf16_is_wrong_here(tmp_path, monkeypatch, own_cache):
    pretend_bf16_pays(monkeypatch)
    folder = write_small_weights(tmp_path / "weights")
    right = DepthModel.load(folder, device="cpu", precision="auto")
    assert right.precision == "bf16" and "agree with fp32" in right.precision_choice.why

    break_the_dit_patch_embedding_in_bf16(monkeypatch)
    own_cache.unlink()  # the verdict above was cached: a broken torch is a new machine
    messages = []
    model = DepthModel.load(folder, device="cpu", precision="auto",
                            on_progress=lambda stage, fraction, message: messages.append(message))
    choice = model.precision_choice
    assert model.precision == "fp32" and choice.precision == "fp32" and not choice.warning
    assert "bf16 is wrong on this machine at ppd.dit.x_embedder (patch embedding 4->" in choice.why
    assert model.network.dit.x_embedder.proj.weight.dtype == torch.float32
    assert any("(fp32: bf16 is wrong" in message for message in messages)


def test_an_explicit_bf16_where_it_is_wrong_runs_but_warns_naming_the_layer(tmp_path, monkeypatch, own_cache):
    break_the_dit_patch_embedding_in_bf16(monkeypatch)
    messages = []
    model = DepthModel.load(write_small_weights(tmp_path), device="cpu", precision="bf16",
                            on_progress=lambda stage, fraction, message: messages.append(message))
    assert model.precision == "bf16" and model.network.dit.x_embedder.proj.weight.dtype == torch.bfloat16
    assert "ppd.dit.x_embedder" in model.precision_choice.warning
    assert model.precision_choice.describe()["warning"] == model.precision_choice.warning
    assert any(message.startswith("warning: bf16 is wrong on this machine at ppd.dit.x_embedder")
               for message in messages)


def test_the_verdict_is_cached_per_machine_and_network(tmp_path, monkeypatch, own_cache):
    pretend_bf16_pays(monkeypatch)
    runs = []
    run_check = precision_check.run_check
    monkeypatch.setattr(precision_check, "run_check", lambda *args: runs.append(1) or run_check(*args))
    folder = write_small_weights(tmp_path)
    first = DepthModel.load(folder, device="cpu").precision_choice
    again = DepthModel.load(folder, device="cpu").precision_choice
    assert len(runs) == 1 and first == again and own_cache.is_file()
    (key,) = json.loads(own_cache.read_text()).keys()
    assert torch.__version__ in key and "bfloat16" in key
    with torch.device("meta"):
        other = DiT(DiTConfig(hidden_size=64, depth=2, num_heads=2, mlp_hidden=128, semantic_dim=64))
    assert precision_check.network_key([("ppd", other)]) not in key


def test_an_unwritable_cache_only_means_checking_again(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("PPD_CACHE_DIR", str(blocker / "cache"))
    pretend_bf16_pays(monkeypatch)
    model = DepthModel.load(write_small_weights(tmp_path / "w"), device="cpu")
    assert model.precision == "bf16"


@pytest.mark.parametrize("where", ["in process", "--subprocess"])
def test_the_summary_the_npz_and_the_manifest_say_the_precision_and_why(tmp_path, small_weights, capsys, where):
    from ppd_core.batch import read_manifest
    from ppd_core.mesh import main
    from tests.batch_helpers import make_shoot, small_run

    shoot = make_shoot(tmp_path / "shoot", photos=1)[0].parent
    (shoot / "corrupt.jpg").unlink()
    manifest = tmp_path / "run.jsonl"
    (tmp_path / "out").mkdir()
    extra = ["--subprocess"] if where == "--subprocess" else ["--manifest", str(manifest)]
    code = main([str(shoot), "--npz", "-o", str(tmp_path / "out"), *extra, *small_run(small_weights)])
    out = capsys.readouterr().out
    assert code == 0
    with np.load(tmp_path / "out" / "img00.npz") as data:
        precision = json.loads(str(data["depth_info"]))["precision"]
    assert precision["name"] in ("fp32", "bf16") and precision["why"]
    assert f"  precision: {precision['name']} ({precision['why']})" in out.splitlines()
    if where == "in process":
        (record,) = read_manifest(manifest)
        assert record["precision"] == precision
