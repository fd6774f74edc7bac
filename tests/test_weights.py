"""Where weights are looked for, and what the user is told when they are nowhere."""

import subprocess
import sys

import pytest

from ppd_core.model import weights
from ppd_core.errors import WeightsMissingError
from tests.checkpoints import write_small_weights


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """An empty Hugging Face cache, no PPD_WEIGHTS, downloads off."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.delenv("PPD_WEIGHTS", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_explicit_folder(tmp_path):
    folder = write_small_weights(tmp_path / "w")
    files = weights.find_weights(folder)
    assert files.ppd == folder / "ppd.pth" and files.encoder == folder / "depth_anything_v2_vitl.pth"


def test_environment_folder_and_safetensors_names(tmp_path, monkeypatch):
    folder = write_small_weights(tmp_path / "w")
    (folder / "ppd.pth").rename(folder / "ppd.safetensors")
    monkeypatch.setenv("PPD_WEIGHTS", str(folder))
    assert weights.find_weights().ppd == folder / "ppd.safetensors"


def test_explicit_folder_missing_a_file_says_which_and_how_to_fix(tmp_path):
    folder = write_small_weights(tmp_path / "w")
    (folder / "depth_anything_v2_vitl.pth").unlink()
    with pytest.raises(WeightsMissingError) as info:
        weights.find_weights(folder)
    message = str(info.value)
    assert "depth_anything_v2_vitl.pth" in message and str(folder) in message
    assert "ppd-weights download" in message and "\n" not in message


def test_a_file_given_as_the_folder(tmp_path):
    folder = write_small_weights(tmp_path / "w")
    with pytest.raises(WeightsMissingError, match="is a file: pass the folder"):
        weights.find_weights(folder / "ppd.pth")


def test_missing_folder(tmp_path):
    with pytest.raises(WeightsMissingError, match="does not exist"):
        weights.find_weights(tmp_path / "nope")


def test_hugging_face_cache_is_searched(tmp_path):
    for source in weights.SOURCES:
        repo = tmp_path / "hf" / f"models--{source.repo_id.replace('/', '--')}"
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text("abc123")
        snapshot = repo / "snapshots" / "abc123"
        snapshot.mkdir(parents=True)
        (snapshot / source.filename).write_bytes(b"x")
    files = weights.find_weights()
    assert files.ppd.name == "ppd.pth" and "Pixel-Perfect-Depth" in str(files.ppd)


def test_offline_and_not_cached():
    with pytest.raises(WeightsMissingError) as info:
        weights.find_weights()
    message = str(info.value)
    assert "ppd.pth and depth_anything_v2_vitl.pth" in message
    assert "HF_HUB_OFFLINE" in message and "ppd-weights download" in message


def test_download_refused_is_not_attempted(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(weights, "_download", lambda *a: pytest.fail("download attempted"))
    with pytest.raises(WeightsMissingError, match="not allowed"):
        weights.find_weights(download=False)


def test_where_command_fails_with_one_line(tmp_path):
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hf"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "ppd_core.model.weights", "where"], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: model weights missing")


def test_download_reports_progress_while_it_runs(tmp_path, monkeypatch):
    import time

    def slow_download(repo_id, filename, **kwargs):
        time.sleep(0.35)
        path = tmp_path / filename
        path.write_bytes(b"x")
        return str(path)

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(weights, "hf_hub_download", slow_download)
    monkeypatch.setattr(weights, "HEARTBEAT_S", 0.1)
    events = []
    files = weights.find_weights(on_progress=lambda *e: events.append(e))
    assert files.ppd == tmp_path / "ppd.pth" and files.encoder == tmp_path / "depth_anything_v2_vitl.pth"
    waiting = [m for stage, _, m in events if stage == "download" and m.endswith(" s)")]
    assert len(waiting) >= 4  # at least two heartbeats per file
    assert any("CC-BY-NC-4.0" in m for _, _, m in events)


def test_unreachable_hub_is_one_clear_line(monkeypatch):
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline_hub(repo_id, filename, **kwargs):
        raise LocalEntryNotFoundError("a long paragraph of advice\nover several lines")

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(weights, "hf_hub_download", offline_hub)
    with pytest.raises(WeightsMissingError) as info:
        weights.find_weights()
    message = str(info.value)
    assert "cannot reach the Hugging Face Hub" in message and "\n" not in message and "advice" not in message


def test_failed_download_is_one_clear_line(monkeypatch):
    import huggingface_hub

    def refuse(repo_id, filename, **kwargs):
        raise OSError("Name or service not known\nmore detail")

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(weights, "hf_hub_download", refuse)
    with pytest.raises(WeightsMissingError) as info:
        weights.find_weights()
    assert str(info.value) == (
        "could not download ppd.pth from https://huggingface.co/gangweix/Pixel-Perfect-Depth: Name or service not known"
    )
