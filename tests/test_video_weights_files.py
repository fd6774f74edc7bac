"""The video model's weight files: found, never downloaded by a run, fetched only after their terms
are accepted (ppvd.pth through Google Drive's confirmation page, here a local stand-in), checked
before they take their name, and added by hand under their own or their hub name."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from ppd_core.errors import BadInputError, CheckpointError, WeightsMissingError
from ppd_core.model.drive_download import download_published
from ppd_core.model.video_weights import download_video_weights, find_video_weights, video_weights_record
from ppd_core.model.weights import add_file
from ppd_core.weight_sources import PPVD, VIDEO_TERMS
from tests.checkpoints import write_small_moge
from tests.video_weights import tiny_video_model, write_video_weights

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def released_layout(tmp_path_factory) -> tuple[Path, Path]:
    """ppvd.pth and Pi3's model.safetensors (its hub name) of a tiny model in the released key layouts."""
    return write_video_weights(tmp_path_factory.mktemp("files"), tiny_video_model(seed=2))


def test_a_folder_lacking_a_video_file_says_which_and_how_to_get_it(tmp_path, released_layout):
    (tmp_path / "ppvd.pth").write_bytes(released_layout[0].read_bytes())
    with pytest.raises(WeightsMissingError, match=r"pi3\.safetensors not in weights folder .*--video"):
        find_video_weights(tmp_path)
    (tmp_path / "pi3.safetensors").write_bytes(released_layout[1].read_bytes())
    found = find_video_weights(tmp_path)
    assert (found.ppvd.name, found.pi3.name, found.moge2) == ("ppvd.pth", "pi3.safetensors", None)
    write_small_moge(tmp_path)
    assert find_video_weights(tmp_path).moge2 == tmp_path / "moge2.pt"
    record = video_weights_record(tmp_path)
    assert record["ready"] and record["terms"] == VIDEO_TERMS and "CC BY-NC 4.0" in VIDEO_TERMS


def test_nothing_is_fetched_before_the_terms_are_accepted(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("a download started")

    monkeypatch.setattr("ppd_core.model.video_weights.download_source", no_network)
    with pytest.raises(BadInputError, match="terms were not accepted"):
        download_video_weights(tmp_path, accepted=False)
    result = subprocess.run([sys.executable, "-m", "ppd_core.model.weights", "download", "--video", "--dir",
                             str(tmp_path)], cwd=REPO, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                            env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "PPD_CACHE_DIR": str(tmp_path)})
    assert result.returncode == 1
    assert "CC BY-NC 4.0" in result.stderr and "not accepted" in result.stderr
    assert list(tmp_path.glob("*.pth")) == [] and list(tmp_path.glob("*.safetensors")) == []


def test_pi3_added_by_its_hub_name_is_checked_and_takes_the_folder_name(tmp_path, released_layout):
    target = add_file(released_layout[1], folder=tmp_path / "added")
    assert target.name == "pi3.safetensors"
    assert add_file(released_layout[0], folder=tmp_path / "added").name == "ppvd.pth"


def test_a_ppvd_missing_a_key_is_refused_by_name(tmp_path, released_layout):
    state = torch.load(released_layout[0], weights_only=True)
    del state["dit_video.temporal_blocks.1.attn.qkv.weight"]
    torch.save(state, tmp_path / "ppvd.pth")
    with pytest.raises(CheckpointError, match=r"temporal_blocks\.1\.attn\.qkv\.weight"):
        add_file(tmp_path / "ppvd.pth", folder=tmp_path / "added")
    assert not (tmp_path / "added" / "ppvd.pth").exists()


class FakeDrive:
    """Google Drive's two answers to a large file's link, on 127.0.0.1: a page whose form asks to
    confirm the download, then the file (or, with `quota`, the page again)."""

    def __init__(self, payload: bytes, quota: bool = False) -> None:
        drive = self
        self.requests: list = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                drive.requests.append((self.path, self.headers.get("Cookie")))
                if "confirm=t" in self.path and "uuid=abc" in self.path and not quota:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                page = ("<html><head><title>Google Drive - Virus scan warning</title></head><body>"
                        "<form id='download-form' action='/download' method='get'>"
                        "<input type='hidden' name='id' value='XYZ'><input type='hidden' name='confirm' value='t'>"
                        "<input type='hidden' name='uuid' value='abc'><input type='submit' value='Download anyway'>"
                        "</form></body></html>").encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Set-Cookie", "NID=1")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/uc?export=download&id=XYZ"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_ppvd_comes_through_drives_confirmation_page_and_is_checked(tmp_path, released_layout):
    drive = FakeDrive(released_layout[0].read_bytes())
    try:
        path = download_published(dataclasses.replace(PPVD, url=drive.url), tmp_path)
    finally:
        drive.close()
    assert path == tmp_path / "ppvd.pth" and path.read_bytes() == released_layout[0].read_bytes()
    assert drive.requests[1][0].startswith("/download?") and drive.requests[1][1] == "NID=1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ppvd.pth"]


def test_a_refused_or_wrong_download_says_how_to_fetch_it_by_hand_and_leaves_nothing(tmp_path, released_layout):
    drive = FakeDrive(b"", quota=True)
    try:
        with pytest.raises(WeightsMissingError, match=r"did not hand out .* `ppd-weights add"):
            download_published(dataclasses.replace(PPVD, url=drive.url), tmp_path)
    finally:
        drive.close()
    drive = FakeDrive(released_layout[1].read_bytes())  # Pi3's file where ppvd.pth should be
    try:
        with pytest.raises(CheckpointError, match="not it"):
            download_published(dataclasses.replace(PPVD, url=drive.url), tmp_path)
    finally:
        drive.close()
    assert list(tmp_path.iterdir()) == []
