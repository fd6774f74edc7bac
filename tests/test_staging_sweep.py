"""Staging folders of runs killed outright (SIGKILL) are swept: by a worker when it starts
(every folder the dead run recorded) and at each job's start in its output folders, even a
job that fails; staging folders of live runs stay."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ppd_core.client import WorkerClient
from ppd_core.files.staging import STAGING_PREFIX, make_staging, sweep_recorded_staging
from tests.test_worker import answers

REPO = Path(__file__).resolve().parents[1]
POSIX_ONLY = pytest.mark.skipif(os.name == "nt", reason="uses POSIX signals and process ids")
KILLED_RUN = ("import os, signal, sys; from pathlib import Path; from ppd_core.files.staging import make_staging; "
              "staging = make_staging(Path(sys.argv[1])); (staging / 'photo.stl').write_bytes(b'solid half'); "
              "os.kill(os.getpid(), signal.SIGKILL)")


def killed_run(folder: Path, cache: Path) -> Path:
    """A process that made a staging folder in `folder`, half wrote a file there and was
    killed; returns the staging folder it left."""
    folder.mkdir(parents=True, exist_ok=True)
    before = set(folder.iterdir())
    subprocess.run([sys.executable, "-c", KILLED_RUN, str(folder)], cwd=REPO, check=False,
                   env={**os.environ, "PYTHONPATH": str(REPO), "PPD_CACHE_DIR": str(cache)})
    (left,) = set(folder.iterdir()) - before
    assert left.name.startswith(STAGING_PREFIX) and (left / "photo.stl").is_file()
    return left


def stagings(folder: Path) -> list[Path]:
    return sorted(path for path in folder.iterdir() if path.name.startswith(STAGING_PREFIX))


@POSIX_ONLY
def test_the_record_of_a_killed_run_leads_the_sweep_to_its_folders(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("PPD_CACHE_DIR", str(cache))
    (tmp_path / "a").mkdir()
    live = make_staging(tmp_path / "a")  # this process's: alive, so it stays
    left = [killed_run(tmp_path / name, cache) for name in ("a", "b")]
    assert sorted(sweep_recorded_staging()) == sorted(left)
    assert stagings(tmp_path / "a") == [live] and stagings(tmp_path / "b") == []
    assert [record.name.rsplit("-", 1)[1] for record in (cache / "staging").iterdir()] == [str(os.getpid())]


@POSIX_ONLY
def test_a_worker_sweeps_a_killed_runs_staging_at_start_and_at_each_job_start(tmp_path, small_weights):
    cache = tmp_path / "cache"
    recorded = killed_run(tmp_path / "recorded", cache)
    unrecorded = killed_run(tmp_path / "out", cache)
    for record in (cache / "staging").iterdir():
        if str(tmp_path / "out") in record.read_text():
            record.unlink()  # as if its record were lost: only the job start finds it
    client = WorkerClient(sys.executable, env={"PYTHONPATH": str(REPO), "PPD_CACHE_DIR": str(cache)},
                          log_path=str(tmp_path / "worker.log"))
    client.start(timeout=60)
    try:
        deadline = time.monotonic() + 10
        while recorded.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not recorded.exists() and unrecorded.exists()
        (tmp_path / "corrupt.jpg").write_bytes(b"no jpeg")
        job = client.submit({"photo": str(tmp_path / "corrupt.jpg"), "outputs": {"stl": str(tmp_path / "out" / "x.stl")},
                             "options": {"weights": str(small_weights)}})
        assert answers(client, [job])[job]["kind"] == "bad_input"
        assert stagings(tmp_path / "out") == [] and not (tmp_path / "out" / "x.stl").exists()
    finally:
        client.close()


@POSIX_ONLY
def test_a_command_run_sweeps_a_killed_runs_staging_where_a_photo_writes_even_when_it_fails(tmp_path, monkeypatch,
                                                                                             capsys):
    from PIL import Image

    from ppd_core.mesh import main

    cache = tmp_path / "cache"
    monkeypatch.setenv("PPD_CACHE_DIR", str(cache))
    left = killed_run(tmp_path / "out", cache)
    Image.new("RGB", (16, 12)).save(tmp_path / "photo.png")
    (tmp_path / "wrong.npy").write_bytes(b"not an array")
    code = main([str(tmp_path / "photo.png"), "--depth", str(tmp_path / "wrong.npy"), "--stl",
                 "-o", str(tmp_path / "out"), "--quiet"])
    assert code == 1 and "wrong.npy" in capsys.readouterr().err
    assert not left.exists() and stagings(tmp_path / "out") == []
