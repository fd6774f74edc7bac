"""Batches on one machine: folders, globs and lists; a manifest; a corrupt photo; a run killed
outright and resumed with --skip-existing (small random weights, CPU)."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ppd_core.batch import MANIFEST_NAME, LocalRunner, PhotoRecord, find_photos, read_manifest, run_batch
from ppd_core.files.staging import STAGING_PREFIX
from ppd_core.mesh import main
from ppd_core.options import JobOptions
from tests.batch_helpers import H, PHOTOS, W, make_shoot, small_run


def test_a_folder_with_a_corrupt_photo_runs_to_the_end_with_one_recorded_failure(small_weights, tmp_path, monkeypatch,
                                                                                  capsys):
    photos = make_shoot(tmp_path / "shoot")
    monkeypatch.chdir(tmp_path)  # the default manifest goes into the current folder
    code = main([str(tmp_path / "shoot"), "--npz", "--quiet", *small_run(small_weights)])
    captured = capsys.readouterr()
    assert code == 1  # one photo failed, the others ran
    assert captured.err.count("\n") == 1 and "corrupt.jpg" in captured.err
    assert f"12 photos: {PHOTOS} done, 0 skipped, 1 failed" in captured.out and "photos per minute" in captured.out
    records = read_manifest(tmp_path / MANIFEST_NAME)
    keys = {"photo", "outputs", "status", "seconds", "error"}  # and the precision of a network run
    assert len(records) == 12 and all(keys <= set(r) <= keys | {"precision"} for r in records)
    failed = [r for r in records if r["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["photo"].endswith("corrupt.jpg") and "corrupt.jpg" in failed[0]["error"]
    assert sorted(Path(r["photo"]).name for r in records if r["status"] == "done") == [p.name for p in photos]
    assert all(r["seconds"] > 0 and r["error"] is None for r in records if r["status"] == "done")
    assert all(photo.with_suffix(".npz").is_file() for photo in photos)


def outputs_of(photo: Path) -> list[Path]:
    return [photo.with_suffix(".npz"), photo.with_suffix(".stl")]


def test_a_killed_batch_resumes_with_skip_existing_without_redoing_finished_photos(small_weights, tmp_path):
    photos = make_shoot(tmp_path / "shoot")
    manifest = tmp_path / "run.jsonl"
    command = [sys.executable, "-m", "ppd_core.mesh", str(tmp_path / "shoot"), "--npz", "--stl", "--quiet",
               "--manifest", str(manifest), *small_run(small_weights)]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while first.poll() is None and time.monotonic() < deadline:  # kill it once 4 photos are settled
        if manifest.exists() and len(read_manifest(manifest)) >= 4:
            first.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    assert first.wait(timeout=60) == -signal.SIGKILL, "the batch ended before it could be killed"
    settled = read_manifest(manifest)
    for photo in photos:  # all or none of a photo's outputs, even after SIGKILL
        assert len({path.exists() for path in outputs_of(photo)}) == 1, photo
    finished = {photo for photo in photos if photo.with_suffix(".npz").exists()}
    recorded = {Path(r["photo"]) for r in settled if r["status"] == "done"}
    assert recorded <= finished and len(finished - recorded) <= 1  # the manifest lacks at most the photo in flight
    assert 3 <= len(finished) < PHOTOS
    before = {path: (path.stat().st_ino, path.stat().st_mtime_ns) for photo in finished for path in outputs_of(photo)}

    second = subprocess.run(command + ["--skip-existing"], capture_output=True, text=True, timeout=120)
    assert second.returncode == 1 and second.stderr.count("\n") == 1 and "corrupt.jpg" in second.stderr, second.stderr
    assert f"12 photos: {PHOTOS - len(finished)} done, {len(finished)} skipped, 1 failed" in second.stdout
    assert {path: (path.stat().st_ino, path.stat().st_mtime_ns) for path in before} == before  # not redone
    resumed = read_manifest(manifest)[len(settled):]
    assert {Path(r["photo"]) for r in resumed if r["status"] == "skipped"} == finished
    assert {Path(r["photo"]) for r in resumed if r["status"] == "done"} == set(photos) - finished
    assert all(path.is_file() for photo in photos for path in outputs_of(photo))
    left = sorted(path.name for path in (tmp_path / "shoot").iterdir())
    assert left == sorted([p.name for p in photos] + [p.name for photo in photos for p in outputs_of(photo)]
                          + ["corrupt.jpg"])  # no staging folder, no stray file


def test_folders_globs_and_lists_name_each_photo_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    photos = make_shoot(tmp_path / "shoot", 3)
    deep = tmp_path / "shoot" / "day2" / "deep.JPG"
    deep.parent.mkdir()
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(deep, format="JPEG")
    hidden = tmp_path / "shoot" / (STAGING_PREFIX + "host-1-x")
    hidden.mkdir()
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(hidden / "img00.png")
    for made in ("img00_texture.png", "img00_depth.png", "img00_depth_preview.png", "img00.stl", "notes.txt"):
        (tmp_path / "shoot" / made).write_bytes(b"an output, not a photo")
    corrupt = tmp_path / "shoot" / "corrupt.jpg"
    shallow = [corrupt, *photos]

    assert find_photos(["shoot"]) == ([Path("shoot") / p.name for p in shallow], [])
    assert find_photos(["shoot"], recursive=True)[0] == sorted([Path("shoot") / p.name for p in shallow] + [
        Path("shoot/day2/deep.JPG")])
    assert find_photos(["shoot/img*.png", "shoot/**/*.JPG"])[0] == [Path("shoot") / p.name for p in photos] + [
        Path("shoot/day2/deep.JPG")]
    Path("list.txt").write_text("# the keepers\nshoot/img01.png\n\n  shoot/day2/deep.JPG  \nshoot/img01.png\n")
    found, problems = find_photos(["@list.txt", "shoot/img01.png", "@missing.txt", "none/*.jpg", "gone.jpg"])
    assert found == [Path("shoot/img01.png"), Path("shoot/day2/deep.JPG"), Path("gone.jpg")]  # checked when run
    assert [str(error) for _, error in problems] == ["@missing.txt: no such list file", "none/*.jpg: no photos match"]
    Path("empty").mkdir()
    assert "no photos in this folder" in str(find_photos(["empty"])[1][0][1])


def test_run_batch_yields_a_record_per_photo_with_one_model_load(small_weights, tmp_path):
    from ppd_core.photo_depth import ModelCache

    photos = make_shoot(tmp_path / "shoot", 3)
    options = JobOptions(weights=str(small_weights), resolution=H * W, steps=2, preset="tabletop", solid=True)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"photo": "cut short')  # a line a kill cut short must not swallow the next one
    models = ModelCache()
    records = list(run_batch([*photos, tmp_path / "shoot" / "corrupt.jpg"], ["stl"], options, manifest=manifest,
                             runner=LocalRunner(models)))
    assert [r.status for r in records] == ["done", "done", "done", "failed"] and models.loads == 1
    assert all(isinstance(r, PhotoRecord) and r.stats["outputs"]["stl"] == r.outputs["stl"] for r in records[:3])
    assert [r["photo"] for r in read_manifest(manifest)] == [str(p) for p in photos] + [records[3].photo]
    again = list(run_batch(photos, ["stl"], options, skip_existing=True))
    assert [r.status for r in again] == ["skipped"] * 3
    refused = list(run_batch(photos[:1], ["stl"], options))  # no skip, no replace: refused, not overwritten
    assert refused[0].status == "failed" and "already exists (use --force" in refused[0].error
    line = json.loads(PhotoRecord("a.jpg", {"stl": "a.stl"}, "done", 1.23456).manifest_line())
    assert line == {"photo": "a.jpg", "outputs": {"stl": "a.stl"}, "status": "done", "seconds": 1.235, "error": None}


def test_batch_usage_errors_exit_2(tmp_path, monkeypatch, capsys):
    photos = make_shoot(tmp_path / "shoot", 1)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    assert main([str(photos[0]), "--stl", "--ray"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'depth-from-image[ray]'" in err
    assert main([str(photos[0]), "--stl", "--subprocess", "--manifest", str(tmp_path / "m.jsonl")]) == 2
    assert main([str(photos[0]), "--stl", "--ray-actors", "0"]) == 2
    assert main([str(tmp_path / "shoot"), "--stl", "--manifest", str(tmp_path / "no" / "m.jsonl")]) == 2
    assert "cannot write the manifest" in capsys.readouterr().err
    assert sorted(path.name for path in (tmp_path / "shoot").iterdir()) == ["corrupt.jpg", "img00.png"]


def test_a_photo_that_runs_out_of_gpu_memory_is_recorded_with_advice_on_one_line():
    from ppd_core.batch import error_text

    class OutOfMemoryError(RuntimeError):  # torch.cuda's, by name
        pass

    text = error_text(OutOfMemoryError("CUDA out of memory.\nTried to allocate 2.00 GiB"))
    assert text.startswith("out of memory (CUDA out of memory. Tried") and "resolution" in text and "\n" not in text
    assert "internal error" not in text
    internal = error_text(ValueError("first\nsecond"))
    assert internal.startswith("internal error (ValueError: first second)") and "\n" not in internal


def test_a_batch_never_plans_an_output_over_the_align_to_reference(tmp_path):
    from ppd_core.batch import plan_batch

    photo = tmp_path / "p.jpg"
    Image.new("RGB", (8, 8)).save(photo)
    reference = tmp_path / "p_depth.png"
    reference.write_bytes(b"scan")
    plan = plan_batch([photo], ["depth_png"], JobOptions(align_to=str(reference)), replace=True)
    assert not plan.jobs and "refusing to overwrite the metric reference" in plan.settled[0].error
