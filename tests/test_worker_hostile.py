"""The worker protocol, fed the hostile way: brackets nested past Python's recursion limit,
a line of megabytes, file names with a NUL. Each is one error event, and the worker reads
and runs the next job as before."""

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from ppd_core.client import WorkerClient
from ppd_core.protocol import MAX_REQUEST_BYTES
from tests.test_worker import answers, send_raw, wait_for

REPO = Path(__file__).resolve().parents[1]


def test_malformed_and_oversized_requests_are_one_error_each_and_the_worker_goes_on(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(tmp_path / "p.png")
    np.save(tmp_path / "d.npy", np.full((48, 64), 2.0, np.float32))

    def job(job_id: str, output: str) -> bytes:
        return json.dumps({"type": "job", "id": job_id, "photo": str(tmp_path / "p.png"), "outputs": {"stl": output},
                           "options": {"depth_file": str(tmp_path / "d.npy"), "preset": "tabletop"}}).encode() + b"\n"

    client = WorkerClient(sys.executable, env={"PYTHONPATH": str(REPO)}, log_path=str(tmp_path / "worker.log"))
    client.start(timeout=60)
    try:
        hostile = {
            "nested": (b"[" * 100_000 + b"]" * 100_000 + b"\n", "nested too deeply"),
            "oversized": (b'{"type": "job", "id": "' + b"x" * (2 * MAX_REQUEST_BYTES) + b'"}\n', "longer than"),
            "a NUL in a name": (job("nul", str(tmp_path / "a\u0000b.stl")), "cannot hold a NUL character"),
            "a name too long": (job("long", str(tmp_path / ("x" * 300 + ".stl"))), "File name too long"),
        }
        for what, (line, problem) in hostile.items():
            send_raw(client, line)
            error = wait_for(client, lambda event: event["type"] in ("error", "result"), timeout=30)[-1]
            assert error["type"] == "error" and error["kind"] == "bad_input" and problem in error["message"], what
        send_raw(client, job("after", str(tmp_path / "p.stl")))
        assert answers(client, ["after"])["after"]["type"] == "result" and (tmp_path / "p.stl").is_file()
        assert sorted(path.name for path in tmp_path.iterdir()) == ["d.npy", "p.png", "p.stl", "worker.log"]
    finally:
        client.close()
