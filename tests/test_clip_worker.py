"""A clip through a real worker process, as Blender sends it: progress of the whole clip, the result's
folder, record and USD stage, the video model kept for the next clip, and a bad clip answered
with one error."""

from __future__ import annotations

from pathlib import Path

import sys

from benchmarks.clip_scenes import write_clip_video
from ppd_core.client import WorkerClient
from tests.test_clip_cli import frames, weights  # noqa: F401 (a fixture)
from tests.test_worker import REPO, answers, wait_for


def test_a_clip_job_writes_its_folder_and_stage_and_keeps_the_model(tmp_path, weights):  # noqa: F811
    clip = write_clip_video(tmp_path / "walk.mkv", frames(3))
    out = tmp_path / "out"
    env = {"PYTHONPATH": str(REPO), "PPD_WEIGHTS": str(weights), "OMP_NUM_THREADS": "1"}
    with WorkerClient(sys.executable, env=env, log_path=str(tmp_path / "worker.log")) as client:
        client.start(timeout=120)
        job = {"photo": str(clip), "outputs": {"usd": str(out), "npz": str(out)}, "options": {"preset": "tabletop"}}
        first = client.submit(job)
        events = wait_for(client, lambda event: event.get("id") == first and event["type"] in ("result", "error"),
                          timeout=180)
        result = events[-1]
        assert result["type"] == "result", result
        progress = [event["fraction"] for event in events if event["type"] == "progress"]
        assert progress == sorted(progress) and progress[-1] == 1.0 and len(progress) > 3
        stats = result["stats"]
        assert stats["folder"] == str(out / "walk") and stats["frames"] == 3
        assert Path(stats["stage"]).is_file() and Path(stats["record"]).is_file()
        assert stats["clip"]["camera"]["width"] == 56 and result["outputs"] == {"usd": str(out), "npz": str(out)}
        assert sorted(p.name for p in (out / "walk").glob("*.usdc")) == [f"walk_{k:06d}.usdc" for k in range(3)]
        again = client.submit({**job, "options": {"preset": "tabletop", "frames": "1:3"}})
        bad = client.submit({**job, "photo": str(tmp_path / "missing.mp4")})
        found = answers(client, [again, bad], timeout=180)
    assert found[again]["type"] == "result" and found[again]["stats"]["frames"] == 2
    assert found[bad]["type"] == "error" and found[bad]["kind"] == "bad_input"
    assert "no such file" in found[bad]["message"]
    assert found[again]["stats"]["model_loads"] == 1  # the video model stayed loaded for the second clip
