"""The add-on's "Download weights" step, through the real code path, with the hub replaced at
its network edge by a server on 127.0.0.1: licence accept, byte progress, cancel, resume."""

from __future__ import annotations

import os
import sys
import time

import pytest

from tests.blender_harness import REPO, addon, bpy, prefs
from tests.hub_server import FakeHub

SIZES = {"ppd.pth": 30_000_000, "depth_anything_v2_vitl.pth": 300_000, "model.pt": 600_000}
REPOS = {"ppd.pth": "gangweix/Pixel-Perfect-Depth", "depth_anything_v2_vitl.pth":
         "depth-anything/Depth-Anything-V2-Large", "model.pt": "Ruicheng/moge-2-vitl-normal"}


@pytest.fixture
def hub():
    files = {f"{REPOS[name]}/{name}": os.urandom(size) for name, size in SIZES.items()}
    with FakeHub(files, seconds_per_chunk=0.01) as server:  # ppd.pth takes ~5 s: progress reports come every 2 s
        yield server


def environment(hub: FakeHub, tmp_path) -> dict:
    env = {key: value for key, value in os.environ.items() if key not in ("HF_HUB_OFFLINE", "PPD_MOGE_REPO")}
    env.update(HF_ENDPOINT=hub.url, HF_HUB_CACHE=str(tmp_path / "cache"), PYTHONPATH=str(REPO))
    return env


def test_the_download_needs_the_licences_accepted_first():
    addon()
    p = prefs()
    saved = p.accept_licences
    p.accept_licences = False
    assert not bpy.ops.depth_from_image.download_weights.poll()
    p.accept_licences = True
    assert bpy.ops.depth_from_image.download_weights.poll()
    p.accept_licences = saved


def test_download_shows_bytes_can_be_cancelled_and_resumes(hub, tmp_path):
    downloads = addon("backend.weights_download")
    folder = tmp_path / "weights"
    names = ["ppd.pth", "depth_anything_v2_vitl.pth", "moge2.pt"]
    first = downloads.start_download(sys.executable, str(folder), names, environment(hub, tmp_path))
    deadline = time.monotonic() + 60
    while not 0 < first.status().done_bytes < SIZES["ppd.pth"]:  # part of ppd.pth has arrived
        assert not first.status().done and time.monotonic() < deadline, first.status().error
        time.sleep(0.05)
    seen = first.status()
    assert seen.current == "ppd.pth" and seen.total_bytes == SIZES["ppd.pth"] and seen.bytes_per_second > 0
    assert seen.line().startswith("ppd.pth: 0.0") and " of 0.03 GB, " in seen.line()
    first.cancel()
    stopped = first.join(30)
    assert stopped.error.startswith("cancelled") and not (folder / "ppd.pth").exists()
    [part] = folder.glob(".ppd.pth.*.part")  # named after the file's ETag
    partial = part.stat().st_size
    assert partial > 0  # kept for the next run

    second = downloads.start_download(sys.executable, str(folder), names, environment(hub, tmp_path))
    finished = second.join(120)
    assert finished.done and not finished.error, finished.error
    assert any(r and r.startswith("bytes=") and int(r[6:].split("-")[0]) >= partial for r in hub.ranges), (partial, hub.ranges)
    for name, served in (("ppd.pth", "ppd.pth"), ("depth_anything_v2_vitl.pth", "depth_anything_v2_vitl.pth"),
                         ("moge2.pt", "model.pt")):  # MoGe-2's model.pt arrives under the folder's name
        assert (folder / name).read_bytes() == hub.files[f"{REPOS[served]}/{served}"]
    assert sorted(os.path.basename(path) for path in finished.finished_files) == sorted(names)


def test_an_unreachable_hub_is_one_line(tmp_path):
    downloads = addon("backend.weights_download")
    env = {key: value for key, value in os.environ.items() if key != "HF_HUB_OFFLINE"}
    env.update(HF_ENDPOINT="http://127.0.0.1:9", HF_HUB_CACHE=str(tmp_path / "cache"), PYTHONPATH=str(REPO))
    run = downloads.start_download(sys.executable, str(tmp_path / "w"), ["ppd.pth"], env)
    status = run.join(120)
    assert status.done and "could not download ppd.pth" in status.error and "\n" not in status.error
