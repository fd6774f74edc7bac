"""The batch on a local Ray (2 CPUs, 2 actors): the same geometry and failures as one process,
and a photo whose actor is killed mid-photo is retried on a new one.

One Ray run serves every test: the kill comes from a worker setup hook of this test (Ray's
`worker_process_setup_hook`), which makes the first attempt of one photo SIGKILL its own
actor process while that photo's outputs are half staged. Nothing in the product knows of it.
"""

import os
from pathlib import Path

import numpy as np
import pytest

from ppd_core.batch import read_manifest
from ppd_core.files.output_check import output_problem
from ppd_core.files.staging import STAGING_PREFIX
from ppd_core.mesh import main
from tests.batch_helpers import PHOTOS, make_shoot, small_run

VICTIM = "img03.png"

pytestmark = pytest.mark.slow  # a local Ray cluster starts in 20-50 s


def kill_first_attempt_hook(victim: str, attempts: str):
    """A Ray worker setup hook: the first attempt at `victim` kills its own process after the
    first output is staged (every attempt's pid is appended to the file `attempts`)."""

    def hook() -> None:
        import os
        import signal

        from ppd_core import pipeline

        real = pipeline.run_photo

        def run_photo(photo, outputs, options, **kwargs):
            if os.path.basename(str(photo)) == victim:
                with open(attempts, "a") as log:
                    log.write(f"{os.getpid()}\n")
                with open(attempts) as log:
                    first = len(log.read().split()) == 1

                def on_progress(stage, fraction, message):
                    if first and stage == "export" and fraction > 0:  # one output staged, one to come
                        os.kill(os.getpid(), signal.SIGKILL)

                kwargs["on_progress"] = on_progress
            return real(photo, outputs, options, **kwargs)

        pipeline.run_photo = run_photo

    return hook


def resume_on_ray(root: Path, photos: list, weights) -> dict:
    """The first photo's STL cut short, then both resumed on Ray with a GLB added: {code, manifest, stamps}."""
    folder = root / "ray"
    (folder / f"{photos[0].stem}.stl").write_bytes((folder / f"{photos[0].stem}.stl").read_bytes()[:999])
    kept = [folder / f"{photos[0].stem}.npz", folder / f"{photos[1].stem}.npz", folder / f"{photos[1].stem}.stl"]
    before = {path: (path.stat().st_ino, path.stat().st_mtime_ns) for path in kept}
    manifest = root / "resumed.jsonl"
    code = main([*map(str, photos), "--npz", "--stl", "--glb", "--skip-existing", "--quiet", *small_run(weights),
                 "-o", str(folder), "--manifest", str(manifest), "--ray", "--ray-actors", "2"])
    after = {path: (path.stat().st_ino, path.stat().st_mtime_ns) for path in kept}
    return {"code": code, "manifest": manifest, "untouched": before == after, "folder": folder}


@pytest.fixture(scope="module")
def runs(small_weights, tmp_path_factory):
    """The same shoot run in this process and on Ray: {out folders, manifests, attempts file}."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    root = tmp_path_factory.mktemp("ray_batch")
    photos = make_shoot(root / "shoot")
    result = {"photos": photos, "attempts": root / "attempts.txt"}
    for name in ("local", "ray"):
        (root / name).mkdir()
        result[name] = root / name
        result[f"{name}_manifest"] = root / f"{name}.jsonl"
    common = [str(root / "shoot"), "--npz", "--stl", "--quiet", *small_run(small_weights)]
    result["local_code"] = main(common + ["-o", str(root / "local"), "--manifest", str(result["local_manifest"])])
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False,
             runtime_env={"worker_process_setup_hook": kill_first_attempt_hook(VICTIM, str(result["attempts"]))})
    try:
        result["ray_code"] = main(common + ["-o", str(root / "ray"), "--manifest", str(result["ray_manifest"]),
                                            "--ray", "--ray-actors", "2"])
        result["resumed"] = resume_on_ray(root, photos[:2], small_weights)
    finally:
        ray.shutdown()
    return result


def test_ray_gives_the_same_geometry_as_one_process(runs):
    assert runs["local_code"] == runs["ray_code"] == 1  # the corrupt photo
    for photo in runs["photos"]:
        with np.load(runs["local"] / f"{photo.stem}.npz") as local, np.load(runs["ray"] / f"{photo.stem}.npz") as ray:
            assert str(local["kind"]) == str(ray["kind"]) == "solid"
            np.testing.assert_array_equal(local["faces"], ray["faces"])
            np.testing.assert_allclose(ray["vertices"], local["vertices"], rtol=0, atol=1e-5)
        stl = f"{photo.stem}.stl"
        assert (runs["ray"] / stl).stat().st_size == (runs["local"] / stl).stat().st_size


def test_ray_records_the_same_failure_and_every_photo_once(runs):
    local, ray = read_manifest(runs["local_manifest"]), read_manifest(runs["ray_manifest"])
    assert len(ray) == len(local) == PHOTOS + 1
    assert sorted(r["photo"] for r in ray) == sorted(r["photo"] for r in local)
    failed = [[(r["photo"], r["error"]) for r in records if r["status"] == "failed"] for records in (local, ray)]
    assert failed[0] == failed[1] and len(failed[0]) == 1 and failed[0][0][0].endswith("corrupt.jpg")
    named = {r["photo"]: r["outputs"] for r in ray}  # as the command named them, not as the actors saw them
    assert named == {r["photo"]: {kind: path.replace(str(runs["local"]), str(runs["ray"]))
                                  for kind, path in r["outputs"].items()} for r in local}


def test_an_actor_killed_mid_photo_is_retried_on_a_new_one(runs):
    attempts = runs["attempts"].read_text().split()
    assert len(attempts) == 2 and attempts[0] != attempts[1]  # killed once, retried in another process
    with pytest.raises(ProcessLookupError):
        os.kill(int(attempts[0]), 0)
    victim = [r for r in read_manifest(runs["ray_manifest"]) if Path(r["photo"]).name == VICTIM]
    assert len(victim) == 1 and victim[0]["status"] == "done"
    stem = Path(VICTIM).stem
    assert (runs["ray"] / f"{stem}.npz").is_file() and (runs["ray"] / f"{stem}.stl").is_file()
    assert not [p for p in runs["ray"].iterdir() if p.name.startswith(STAGING_PREFIX)]  # the killed one's is gone


def test_a_resumed_batch_on_ray_keeps_what_is_complete_and_redoes_what_was_cut_short(runs):
    resumed = runs["resumed"]
    assert resumed["code"] == 0 and resumed["untouched"]
    first, second = sorted(read_manifest(resumed["manifest"]), key=lambda record: record["photo"])
    assert first["status"] == second["status"] == "done"
    assert first["kept"] == ["npz"] and list(first["redone"]) == ["stl"] and "cut short" in first["redone"]["stl"]
    assert second["kept"] == ["stl", "npz"] and "redone" not in second
    for record in (first, second):
        assert all(output_problem(kind, Path(path)) is None for kind, path in record["outputs"].items())
