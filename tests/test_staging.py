"""Staging folders: dead runs' leftovers are cleaned, moves into place are all or none."""

import os
import subprocess
import sys

import pytest

from ppd_core.errors import OutputError
from ppd_core.files.staging import STAGING_PREFIX, _host, make_staging, move_into_place, remove_stale_staging

POSIX_ONLY = pytest.mark.skipif(os.name == "nt", reason="pid checks are POSIX only")


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@POSIX_ONLY
def test_only_dead_runs_of_this_host_are_cleaned(tmp_path):
    names = {
        "dead": f"{STAGING_PREFIX}{_host()}-{dead_pid()}-abc123",
        "alive": f"{STAGING_PREFIX}{_host()}-{os.getppid()}-abc123",
        "other_host": f"{STAGING_PREFIX}elsewhere-{dead_pid()}-abc123",
        "not_ours": ".ppd-staging-notes",
    }
    for name in names.values():
        (tmp_path / name).mkdir()
        (tmp_path / name / "photo.stl").write_bytes(b"half")
    fresh = make_staging(tmp_path)
    assert fresh.name.startswith(f"{STAGING_PREFIX}{_host()}-{os.getpid()}-")
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([fresh.name, names["alive"], names["other_host"], names["not_ours"]])
    assert remove_stale_staging(tmp_path) == []  # our own live folder stays too


def test_a_failed_move_puts_every_file_back(tmp_path):
    staging = make_staging(tmp_path)
    for name in ("a.stl", "a.ply", "a.glb"):
        (staging / name).write_bytes(b"new " + name.encode())
    (tmp_path / "a.stl").write_bytes(b"old stl")  # overwritten with --force
    (tmp_path / "a.glb").mkdir()  # os.replace of a file onto a folder fails
    (tmp_path / "a.glb" / "inside").write_bytes(b"x")
    moves = [(staging / n, tmp_path / n) for n in ("a.stl", "a.ply", "a.glb")]
    with pytest.raises(OutputError, match="a.glb: is a folder"):
        move_into_place(moves)
    assert (tmp_path / "a.stl").read_bytes() == b"old stl"
    assert not (tmp_path / "a.ply").exists()
    (tmp_path / "a.glb" / "inside").unlink()
    (tmp_path / "a.glb").rmdir()
    move_into_place(moves)
    assert [(tmp_path / n).read_bytes() for n in ("a.stl", "a.ply", "a.glb")] == [b"new a.stl", b"new a.ply",
                                                                                    b"new a.glb"]


def test_without_replace_a_file_that_appeared_meanwhile_is_kept(tmp_path):
    staging = make_staging(tmp_path)
    for name in ("a.stl", "a.ply"):
        (staging / name).write_bytes(b"ours")
    (tmp_path / "a.ply").write_bytes(b"another run's")  # made after the up-front check
    moves = [(staging / n, tmp_path / n) for n in ("a.stl", "a.ply")]
    with pytest.raises(OutputError, match="a.ply: already exists"):
        move_into_place(moves, replace=False)
    assert (tmp_path / "a.ply").read_bytes() == b"another run's" and not (tmp_path / "a.stl").exists()
    (tmp_path / "a.ply").unlink()
    move_into_place(moves, replace=False)
    assert [(tmp_path / n).read_bytes() for n in ("a.stl", "a.ply")] == [b"ours", b"ours"]
    assert sorted(p.name for p in staging.iterdir()) == []
