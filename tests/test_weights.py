"""Where weights are looked for, and what the user is told when they are nowhere."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ppd_core.model import download as downloads
from ppd_core.model import weights
from ppd_core.errors import WeightsMissingError
from tests.checkpoints import write_small_weights

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """An empty Hugging Face cache, no PPD_WEIGHTS, downloads off."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.delenv("PPD_WEIGHTS", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(downloads, "_file_size", lambda repo, filename: None)  # no request for the size either
    monkeypatch.setattr(downloads, "check_reachable", lambda: None)  # the tests replace the hub's functions instead


def test_explicit_folder(tmp_path):
    folder = write_small_weights(tmp_path / "w")
    files = weights.find_weights(folder)
    assert files.ppd == folder / "ppd.pth" and files.encoder == folder / "depth_anything_v2_vitl.pth"
    assert files.semantics == "da2" and files.moge2 is None and "no MoGe-2 (no metric scale or sky mask of its own)" in files.describe()


def test_a_folder_chooses_the_variant_its_files_make(tmp_path):
    folder = write_small_weights(tmp_path / "w")
    (folder / "moge2.pt").write_bytes(b"x")
    files = weights.find_weights(folder)
    assert (files.semantics, files.moge2) == ("da2", folder / "moge2.pt") and "MoGe-2 geometry" in files.describe()
    (folder / "ppd_moge.pth").write_bytes(b"x")
    files = weights.find_weights(folder)
    assert (files.semantics, files.ppd, files.encoder) == ("moge2", folder / "ppd_moge.pth", folder / "moge2.pt")
    assert weights.find_weights(folder, semantics="da2").ppd == folder / "ppd.pth"
    assert weights.find_weights(folder, semantics="da2", geometry=False).moge2 is None
    (folder / "moge2.pt").unlink()
    with pytest.raises(WeightsMissingError, match="lacks moge2.pt"):
        weights.find_weights(folder, semantics="moge2")
    assert weights.find_weights(folder).semantics == "da2"  # auto falls back


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


def cache(tmp_path, repo_id: str, filename: str) -> None:
    """Put `filename` of `repo_id` into the test's Hugging Face cache, as huggingface-hub lays it out."""
    repo = tmp_path / "hf" / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text("abc123")
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True, exist_ok=True)
    (snapshot / filename).write_bytes(b"x")


def test_hugging_face_cache_is_searched(tmp_path, monkeypatch):
    for source in (weights.PPD, weights.DA2):
        cache(tmp_path, source.repo_id, source.repo_filename)
    files = weights.find_weights()
    assert files.ppd.name == "ppd.pth" and "Pixel-Perfect-Depth" in str(files.ppd) and files.moge2 is None
    cache(tmp_path, "Ruicheng/moge-2-vitl-normal", "model.pt")
    assert "moge-2-vitl-normal" in str(weights.find_weights().moge2)
    monkeypatch.setenv("PPD_MOGE2_REPO", "Ruicheng/moge-2-vits-normal")  # the ViT-S sibling, by name
    assert weights.find_weights().moge2 is None
    cache(tmp_path, "Ruicheng/moge-2-vits-normal", "model.pt")
    assert "vits" in str(weights.find_weights().moge2)
    monkeypatch.setenv("PPD_MOGE_REPO", "someone/ppd-moge")  # ppd_moge.pth from a repository the user names
    cache(tmp_path, "someone/ppd-moge", "ppd_moge.pth")
    assert weights.find_weights().semantics == "moge2"


def hub_environment(hub, tmp_path, **extra: str) -> dict:
    """The environment of a `ppd-weights` run against the stand-in hub, downloads on."""
    import os

    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HUB_CACHE": str(tmp_path / "cache"), **extra}
    env.pop("HF_HUB_OFFLINE", None)
    return env


def download_command(folder) -> list:
    return [sys.executable, "-m", "ppd_core.model.weights", "download", "--dir", str(folder), "--only", "moge2.pt",
            "--json"]


@pytest.mark.slow
def test_download_into_a_folder_resumes_and_uses_the_folder_names(tmp_path):
    """`ppd-weights download --dir` against a stand-in hub: stopped mid-file, run again, it asks
    only for the rest; MoGe-2's model.pt arrives as moge2.pt."""
    import json
    import os

    from tests.hub_server import FakeHub

    data = os.urandom(25_000_000)
    folder = tmp_path / "w"
    with FakeHub({"Ruicheng/moge-2-vitl-normal/model.pt": data}, seconds_per_chunk=0.02) as hub:  # ~8 s
        env = hub_environment(hub, tmp_path)
        first = subprocess.Popen(download_command(folder), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env=env)
        report = json.loads(first.stdout.readline())  # the first progress report: part of it is there
        first.kill()
        first.wait(timeout=30)
        [part] = folder.glob(".moge2.pt.*.part")  # named after the file's ETag
        assert report["file"] == "moge2.pt" and report["total"] == len(data) and 0 < part.stat().st_size < len(data)
        done = subprocess.run(download_command(folder), capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (folder / "moge2.pt").read_bytes() == data and not part.exists()
    assert hub.ranges[0] is None and hub.ranges[-1].startswith("bytes=") and int(hub.ranges[-1][6:-1]) > 0
    assert json.loads(done.stdout.splitlines()[-1]) == {"done": str(folder / "moge2.pt")}


def test_a_partial_file_of_another_etag_is_not_resumed(tmp_path):
    """Leftovers of another revision (or of a version that did not name them by ETag) are
    removed, and the file is fetched whole."""
    import os

    from tests.hub_server import FakeHub

    data = os.urandom(300_000)
    folder = tmp_path / "w"
    folder.mkdir()
    stale = [folder / ".moge2.pt.part", folder / ".moge2.pt.0123456789abcdef.part"]
    for path in stale:
        path.write_bytes(os.urandom(100_000))
    with FakeHub({"Ruicheng/moge-2-vitl-normal/model.pt": data}, seconds_per_chunk=0) as hub:
        done = subprocess.run(download_command(folder), capture_output=True, text=True,
                              env=hub_environment(hub, tmp_path), timeout=120)
    assert done.returncode == 0, done.stderr
    assert (folder / "moge2.pt").read_bytes() == data and hub.ranges == [None]
    assert not any(path.exists() for path in stale) and not list(folder.glob(".*part"))


@pytest.mark.parametrize("cdn_redirects, authorizations", [
    ((), ["Bearer hf_secret"]),                        # the file comes from the hub itself: token sent
    (("HEAD", "GET"), [None]),                         # the hub names a CDN URL on another host: no token there
    (("GET",), ["Bearer hf_secret", None]),            # the hub redirects the download there: dropped on the way
])
def test_the_token_goes_only_to_the_hub_host(tmp_path, cdn_redirects, authorizations):
    """A Hugging Face token is for the hub: a signed CDN URL on another host must not see it."""
    from tests.hub_server import FakeHub

    data = b"weights" * 1000
    with FakeHub({"Ruicheng/moge-2-vitl-normal/model.pt": data}, seconds_per_chunk=0,
                 cdn_redirects=cdn_redirects) as hub:
        done = subprocess.run(download_command(tmp_path / "w"), capture_output=True, text=True,
                              env=hub_environment(hub, tmp_path, HF_TOKEN="hf_secret"), timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "w" / "moge2.pt").read_bytes() == data
    file_gets = [(path, authorization) for path, authorization in hub.gets if "/resolve/" in path]
    assert [authorization for _, authorization in file_gets] == authorizations, file_gets
    assert file_gets[-1][0].startswith("/cdn/" if cdn_redirects else "/Ruicheng/")


def test_a_file_not_on_the_hub_is_named_with_its_repository_variable(monkeypatch):
    """ppd_moge.pth has no hub repository; moge2.pt has one and is not blamed."""
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("PPD_MOGE_REPO", raising=False)
    monkeypatch.setattr(weights, "download_source", lambda *a, **k: pytest.fail("download attempted"))
    with pytest.raises(WeightsMissingError) as info:
        weights.find_weights(semantics="moge2", download=True)
    message = str(info.value)
    assert message.startswith("model weights missing: ppd_moge.pth: its authors publish it on Google Drive, linked "
                              "from the README of https://github.com/gangweix/pixel-perfect-depth; download it there, "
                              "then run `ppd-weights add <the downloaded file>` (or set PPD_MOGE_REPO to a Hugging "
                              "Face repository that holds it)")
    assert "moge2.pt" not in message and "\n" not in message


def test_download_refused_is_not_attempted(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(weights, "download_source", lambda *a, **k: pytest.fail("download attempted"))
    with pytest.raises(WeightsMissingError, match="not allowed"):
        weights.find_weights(download=False)


def test_where_command_fails_with_one_line(tmp_path):
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hf"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "ppd_core.model.weights", "where"], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: model weights missing")


def test_download_reports_bytes_and_speed_while_it_runs(tmp_path, monkeypatch):
    import time

    def slow_download(repo_id, filename, **kwargs):
        """Grows the partial file where huggingface-hub keeps it, as a real download does."""
        partial = tmp_path / "hf" / f"models--{repo_id.replace('/', '--')}" / "blobs" / "etag.incomplete"
        partial.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            with partial.open("ab") as handle:
                handle.write(b"x" * 1_000_000)
            time.sleep(0.25)
        path = tmp_path / filename
        partial.replace(path)
        return str(path)

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(downloads, "hf_hub_download", slow_download)
    monkeypatch.setattr(downloads, "_file_size", lambda repo, filename: 3_000_000)
    monkeypatch.setattr(downloads, "HEARTBEAT_S", 0.1)
    events = []
    files = weights.find_weights(on_progress=lambda *e: events.append(e))
    assert files.ppd == tmp_path / "ppd.pth" and files.encoder == tmp_path / "depth_anything_v2_vitl.pth"
    waiting = [(fraction, m) for stage, fraction, m in events if stage == "download" and "MB/s" in m]
    assert len(waiting) >= 6  # at least two reports per file
    assert any(m.startswith("downloading ppd.pth: ") and " of 3 MB, " in m for _, m in waiting)
    assert any(0 < fraction < 1 for fraction, _ in waiting)
    assert any("CC-BY-NC-4.0" in m for _, _, m in events)


def test_unreachable_hub_is_one_clear_line(monkeypatch):
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline_hub(repo_id, filename, **kwargs):
        raise LocalEntryNotFoundError("a long paragraph of advice\nover several lines")

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(downloads, "hf_hub_download", offline_hub)
    with pytest.raises(WeightsMissingError) as info:
        weights.find_weights()
    message = str(info.value)
    assert "cannot reach the Hugging Face Hub" in message and "\n" not in message and "advice" not in message


def test_failed_download_is_one_clear_line(monkeypatch):
    def refuse(repo_id, filename, **kwargs):
        raise OSError("Name or service not known\nmore detail")

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(downloads, "hf_hub_download", refuse)
    with pytest.raises(WeightsMissingError) as info:
        weights.find_weights()
    assert str(info.value) == (
        "could not download ppd.pth from https://huggingface.co/gangweix/Pixel-Perfect-Depth: Name or service not known"
    )


def test_the_weights_code_loads_without_torch_and_where_json_answers(tmp_path):
    """`ppd_core.model` imports its networks lazily: the add-on's weights check runs
    `ppd-weights where --json` in the backend without paying for (or needing) torch."""
    folder = write_small_weights(tmp_path / "w")
    code = ("import sys, runpy; sys.argv = ['ppd-weights', 'where', '--json', '--weights', sys.argv[1]]; "
            "import ppd_core.model.weights as w; code = w.main(); "
            "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, check=False,
                          env={"PATH": "", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["ready"] and record["semantics"] == "da2" and record["folder"] == str(folder)
    assert record["files"] == [str(folder / "ppd.pth"), str(folder / "depth_anything_v2_vitl.pth")]
    (folder / "ppd.pth").unlink()
    missing = weights.weights_record(folder)
    assert not missing["ready"] and "lacks ppd.pth" in missing["problem"] and "\n" not in missing["problem"]


def test_the_networks_are_still_exported_by_name():
    import ppd_core.model as model

    assert model.PixelPerfectDepth.__module__ == "ppd_core.model.ppd" and model.MoGe2.__name__ == "MoGe2"
    assert set(model.__all__) <= set(dir(model)) and all(getattr(model, name) is not None for name in model.__all__)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        model.Nope
