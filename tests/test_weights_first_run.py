"""The weights at a user's first run: a licence that restricts use is said before its bytes
arrive, no network is said in a second, and the file the hub lacks (ppd_moge.pth) has a way in:
where to get it, and `ppd-weights add`, which checks it before it takes its place."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from ppd_core.errors import WeightsMissingError
from ppd_core.model import weights
from tests.checkpoints import write_small_moge, write_small_ppd_moge, write_small_weights
from tests.hub_server import FakeHub

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPOS = {"ppd.pth": "gangweix/Pixel-Perfect-Depth", "depth_anything_v2_vitl.pth":
         "depth-anything/Depth-Anything-V2-Large", "moge2.pt": "Ruicheng/moge-2-vitl-normal"}
SERVED_AS = {"moge2.pt": "model.pt"}


def environment(tmp_path, endpoint: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "PPD_WEIGHTS", "PPD_MOGE_REPO")}
    env.update(HF_ENDPOINT=endpoint, HF_HUB_CACHE=str(tmp_path / "hf"), PPD_CACHE_DIR=str(tmp_path / "ppd"),
               PYTHONPATH=REPO)
    return env


@pytest.mark.slow
def test_the_first_run_says_the_non_commercial_licence_before_downloading_that_file(tmp_path):
    folder = write_small_moge(write_small_weights(tmp_path / "files"))
    files = {f"{REPOS[name]}/{SERVED_AS.get(name, name)}": (folder / name).read_bytes() for name in REPOS}
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(photo)
    with FakeHub(files, seconds_per_chunk=0.0) as hub:
        done = subprocess.run([sys.executable, "-m", "ppd_core.mesh", str(photo), "--depth-png", "--steps", "1",
                               "--resolution", str(64 * 48)], env=environment(tmp_path, hub.url),
                              capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (notice,) = [line for line in done.stderr.splitlines() if "is licensed" in line]  # only restrictive licences
    assert notice == ("depth_anything_v2_vitl.pth is licensed CC-BY-NC-4.0, non-commercial use only "
                      "(https://huggingface.co/depth-anything/Depth-Anything-V2-Large): do not use its results "
                      "commercially")
    assert (tmp_path / "photo_depth.png").is_file()


def test_the_notice_comes_before_the_first_byte(monkeypatch, caplog):
    from ppd_core.model import download
    from ppd_core.weight_sources import DA2

    said_before = []
    monkeypatch.setattr(download, "check_reachable", lambda: None)
    monkeypatch.setattr(download, "_into_cache", lambda *args: said_before.append(caplog.text) or "x")
    download.download_source(DA2)
    assert "depth_anything_v2_vitl.pth is licensed CC-BY-NC-4.0" in said_before[0]


def test_no_network_is_said_in_seconds_not_after_half_a_minute_of_retries(tmp_path):
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "ppd_core.model.weights", "download", "--only", "ppd.pth"],
                          env=environment(tmp_path, "http://127.0.0.1:9"), capture_output=True, text=True, timeout=120)
    assert time.monotonic() - start < 15  # the interpreter and torch-free imports; the probe itself is instant
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 1 and "cannot reach http://127.0.0.1:9" in line and "--weights DIR" in line


def test_ppd_moge_is_not_on_the_hub_so_the_message_says_where_to_get_it(tmp_path, monkeypatch):
    monkeypatch.delenv("PPD_MOGE_REPO", raising=False)
    monkeypatch.setenv("PPD_CACHE_DIR", str(tmp_path / "ppd"))
    with pytest.raises(WeightsMissingError) as missing:
        weights.find_weights(tmp_path / "empty" if (tmp_path / "empty").mkdir() is None else None, semantics="moge2")
    text = str(missing.value)
    assert "lacks ppd_moge.pth and moge2.pt" in text
    assert "Google Drive" in text and "github.com/gangweix/pixel-perfect-depth" in text
    assert "`ppd-weights add <the downloaded file>`" in text


def test_ppd_weights_add_checks_the_file_and_the_command_then_finds_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PPD_CACHE_DIR", str(tmp_path / "ppd"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.delenv("PPD_WEIGHTS", raising=False)
    downloads = write_small_ppd_moge(tmp_path / "Downloads")
    (downloads / "model.pt").write_bytes((downloads / "moge2.pt").read_bytes())  # the hub's name for it
    # the wrong file under the right name is refused, nothing is placed
    assert weights.main(["add", str(downloads / "model.pt"), "--as", "ppd_moge.pth"]) == 1
    assert "unexpected keys for a PPD" in capsys.readouterr().err
    assert not (tmp_path / "ppd" / "weights").exists()
    assert weights.main(["add", str(downloads / "ppd_moge.pth")]) == 0
    assert weights.main(["add", str(downloads / "model.pt"), "--as", "moge2.pt"]) == 0
    out = capsys.readouterr()
    assert out.out.splitlines() == [str(tmp_path / "ppd" / "weights" / name) for name in ("ppd_moge.pth", "moge2.pt")]
    assert "a PPD DiT of" in out.err and "MoGe-2 (" in out.err
    assert weights.main(["add", str(downloads / "ppd_moge.pth")]) == 1  # already there: --force to replace
    assert "already exists" in capsys.readouterr().err
    files = weights.find_weights(download=False)
    assert files.semantics == "moge2" and files.ppd == tmp_path / "ppd" / "weights" / "ppd_moge.pth"
    assert not list((tmp_path / "ppd" / "weights").glob(".*part"))
