"""The add-on's words for the backend's messages (bpy-free, so no Blender needed): the weights
messages the project really produces lose every terminal instruction, keep what is missing and
where, and end with a next step in Blender's terms."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from ppd_core.errors import WeightsMissingError
from ppd_core.model import download as downloads
from ppd_core.model import weights
from tests.checkpoints import write_small_weights

ADDON = Path(__file__).resolve().parents[1] / "addon"
TERMINAL_WORDS = ("ppd-weights", "--weights", "PPD_WEIGHTS", "HF_HUB_OFFLINE", "PPD_MOGE_REPO", "hf auth", "--dir")


@pytest.fixture(scope="module")
def wording():
    sys.path.insert(0, str(ADDON))  # the bpy-free package alone, as `backend`
    try:
        yield importlib.import_module("backend.wording")
    finally:
        sys.path.remove(str(ADDON))
        for name in [name for name in sys.modules if name == "backend" or name.startswith("backend.")]:
            del sys.modules[name]


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(weights, "added_weights_folder", lambda: tmp_path / "added", raising=False)
    monkeypatch.delenv("PPD_WEIGHTS", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _problem(**kwargs) -> str:
    with pytest.raises(WeightsMissingError) as info:
        weights.find_weights(**kwargs)
    return str(info.value)


def _assert_blender_words(text: str, *kept: str) -> None:
    assert not any(word in text for word in TERMINAL_WORDS), text
    assert all(part in text for part in kept), text
    assert text.count(" Next: ") == 1 and text.endswith(".")


def test_real_weights_messages_in_blenders_words(wording, tmp_path):
    folder = write_small_weights(tmp_path / "w")
    (folder / "ppd.pth").unlink()
    lacks = _problem(folder=folder)
    assert "ppd-weights" in lacks  # the command line's own words, before
    text = wording.weights_problem(lacks, online=True, folder_set=True)
    _assert_blender_words(text, f"the Weights Folder {folder} lacks ppd.pth", "Next: use Download Weights")
    text = wording.weights_problem(_problem(folder=tmp_path / "gone"), online=True, folder_set=True)
    _assert_blender_words(text, f"the Weights Folder {tmp_path / 'gone'} does not exist")
    text = wording.weights_problem(_problem(), online=False, folder_set=False)
    _assert_blender_words(text, "depth_anything_v2_vitl.pth not in the Hugging Face cache and Blender's online "
                                "access is off", "Next: allow online access")
    text = wording.weights_problem(_problem(semantics="moge2"), online=False, folder_set=False)
    _assert_blender_words(text, "ppd_moge.pth", "Next: download ppd_moge.pth from its authors")


def test_an_unreachable_hub_in_blenders_words(wording, monkeypatch):
    monkeypatch.setattr(downloads.hub_constants, "ENDPOINT", "http://127.0.0.1:9")
    try:
        downloads.check_reachable(timeout=2)
    except ConnectionError as error:
        message = f"could not download ppd.pth from https://huggingface.co/x: {error}"
    else:
        pytest.skip("a server answers on port 9 here")
    text = wording.download_failure(message)
    _assert_blender_words(text, "could not download ppd.pth", "cannot reach http://127.0.0.1:9",
                          "Next: press Download Weights again")

