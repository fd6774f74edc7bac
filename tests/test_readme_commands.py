"""README.md's commands, run as a user types them (bash, in a fresh folder, the console script
and `python -m`), with the small random weights in PPD_WEIGHTS. Every command of "The main
job" and "Many photos" must be here: a README line nobody runs is a promise nobody keeps.

Slow (each network run is seconds even for the small network at the default 1024x768):
`python -m pytest -q -m slow` runs it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ppd_core.mesh import main
from tests.checkpoints import write_small_weights

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
H, W = 48, 64


def readme_commands(section: str) -> list[str]:
    """The commands of the first bash block under `## section`, comments stripped."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    body = text.split(f"## {section}\n", 1)[1]
    block = re.search(r"```bash\n(.*?)```", body, re.S).group(1)
    return [re.sub(r"\s+#.*$", "", line).strip() for line in block.splitlines() if line.strip()]


def save_depth_png(path: Path, depth_m: np.ndarray) -> None:
    Image.fromarray(np.round(depth_m * 1000).astype(np.uint16)).save(path)


@pytest.fixture(scope="module")
def fixture_folder(tmp_path_factory) -> Path:
    """What the README's commands name: photos, a depth map, a LiDAR-like reference, a saved
    result of photo.jpg, a shoot with a subfolder, and a list of keepers."""
    folder = tmp_path_factory.mktemp("readme")
    rng = np.random.default_rng(5)
    for name in ("photo.jpg", "a.jpg", "b.jpg", "shoot/a.jpg", "shoot/b.jpg", "shoot/sub/c.jpg"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(folder / name)
    depth = np.full((H, W), 2.0)
    depth[10:35, 15:45] = 1.2
    save_depth_png(folder / "d.png", depth)
    save_depth_png(folder / "lidar.png", depth[::4, ::4])
    (folder / "keepers.txt").write_text("# the ones to print\nshoot/a.jpg\n\nshoot/sub/c.jpg\n")
    cwd = os.getcwd()
    try:
        os.chdir(folder)
        assert main(["photo.jpg", "--depth", "d.png", "--npz", "--quiet"]) == 0
    finally:
        os.chdir(cwd)
    return folder


@pytest.fixture(scope="module")
def environment(tmp_path_factory) -> dict:
    """The user's shell: the venv's `python` and `ppd-mesh` first on PATH, the small weights,
    no network, a home of its own."""
    home = tmp_path_factory.mktemp("home")
    weights = write_small_weights(tmp_path_factory.mktemp("weights"))
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PPD_", "RAY_"))}
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}", HOME=str(home),
               PPD_WEIGHTS=str(weights), HF_HUB_OFFLINE="1", PPD_CACHE_DIR=str(home / "cache"),
               PYTHONPATH=str(REPO))
    return env


def run(command: str, folder: Path, env: dict) -> subprocess.CompletedProcess:
    done = subprocess.run(["bash", "-c", command], cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    return done


def fresh(fixture_folder: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "work"
    shutil.copytree(fixture_folder, folder)
    return folder


MAIN_JOB = {  # command -> (files it must write, words its output must hold)
    "python -m ppd_core.mesh photo.jpg": (["photo.glb"], ["photo.glb: ", "depth scale: "]),
    "python -m ppd_core.mesh photo.jpg --stl": (["photo.stl"], ["photo.stl: ", "watertight yes", "check: "]),
    "python -m ppd_core.mesh photo.jpg --3mf --filaments 4 --frame-mm 5 --hanger hole": (
        ["photo.3mf"], ["photo.3mf: ", "watertight yes", "filaments in slot order"]),
    "python -m ppd_core.mesh photo.jpg --glb --obj": (
        ["photo.glb", "photo.obj", "photo.mtl", "photo_texture.png"], ["photo.glb: ", "photo.obj: "]),
    "python -m ppd_core.mesh photo.jpg --points --ply": (["photo.ply"], [" points, "]),
    "python -m ppd_core.mesh a.jpg b.jpg --3mf -o prints/": (
        ["prints/a.3mf", "prints/b.3mf"], ["2 photos: 2 done, 0 skipped, 0 failed"]),
    "python -m ppd_core.mesh photo.jpg --depth d.png --depth-kind metric --ply": (
        ["photo.ply"], ["depth scale: depth file (metres)"]),
    "python -m ppd_core.mesh photo.jpg --align-to lidar.png --glb": (["photo.glb"], ["depth scale: fit to lidar.png: "]),
    "python -m ppd_core.mesh photo.jpg --depth photo.npz --stl": (["photo.stl"], ["depth scale: saved result ("]),
    "python -m ppd_core.mesh shoot/ --stl --preview": (
        ["shoot/a.stl", "shoot/a_preview.png", "shoot/b.stl", "shoot/b_preview.png", "ppd-mesh-manifest.jsonl"],
        ["2 photos: 2 done"]),
    "python -m ppd_core.mesh --help": ([], ["usage: ppd-mesh", "examples:"]),
}


def test_every_main_job_command_is_tested():
    assert readme_commands("The main job") == list(MAIN_JOB)


@pytest.mark.parametrize("command", list(MAIN_JOB))
def test_a_main_job_command_works_in_a_fresh_folder(command, fixture_folder, environment, tmp_path):
    folder = fresh(fixture_folder, tmp_path)
    before = {path for path in folder.rglob("*")}
    done = run(command, folder, environment)
    files, words = MAIN_JOB[command]
    for name in files:
        assert folder / name in set(folder.rglob("*")) - before, name
    for phrase in words:
        assert phrase in done.stdout, (phrase, done.stdout)
    assert "Traceback" not in done.stderr


def test_the_many_photos_commands_work_one_after_the_other(fixture_folder, environment, tmp_path):
    folder = fresh(fixture_folder, tmp_path)
    commands = readme_commands("Many photos")
    ray = commands.pop()
    assert ray.endswith("--ray") and len(commands) == 4
    out = run(commands[0], folder, environment).stdout  # a folder, into a folder that is not there yet
    assert sorted(p.name for p in (folder / "prints").iterdir()) == ["a.stl", "b.stl", "ppd-mesh-manifest.jsonl"]
    assert out.splitlines()[-1].startswith("2 photos: 2 done")
    run(commands[1], folder, environment)  # a quoted glob: ** reaches the subfolder
    assert all((folder / name).is_file() for name in ("shoot/a.glb", "shoot/b.glb", "shoot/sub/c.glb"))
    run(commands[2], folder, environment)  # the @list: its comment and blank line skipped
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.3mf")) == ["shoot/a.3mf", "shoot/sub/c.3mf"]
    out = run(commands[3], folder, environment).stdout  # resume: nothing left to do
    assert out.splitlines()[-1].startswith("2 photos: 0 done, 2 skipped, 0 failed")
    if shutil.which("ray", path=environment["PATH"]) is None:
        pytest.skip("Ray is not installed (the ray extra)")
    run(ray, folder, environment)
    prints = Path(environment["HOME"]) / "prints"
    assert sorted(p.name for p in prints.iterdir()) == ["a.stl", "b.stl", "ppd-mesh-manifest.jsonl"]


VIDEO = {  # command -> (files it must write, words its output must hold)
    "python -m ppd_core.mesh clip.mp4 --ply": (
        ["clip/clip_000000.ply", "clip/clip_000004.ply", "clip/depth/clip_000004.png", "clip/clip_depth.mp4",
         "clip/clip_clip.json"], ["clip.mp4: 5 frames -> clip ", "depth scale: fit to MoGe-2 on frames 0, 4"]),
    "python -m ppd_core.mesh clip.mp4 --usd --frames 0:4 --stride 2 -o takes/": (
        ["takes/clip/clip_000000.usdc", "takes/clip/clip_000002.usdc", "takes/clip/clip.usda"],
        ["clip.mp4: 2 frames -> takes/clip "]),
    "python -m ppd_core.mesh frames/ --video --glb": (
        ["frames_3d/frames_000000.glb", "frames_3d/frames_000002.glb", "frames_3d/frames_depth.mp4"],
        ["frames: 3 frames -> frames_3d "]),
    "python -m ppd_core.mesh clip.mp4 --ply --skip-existing": (["clip/clip_000003.ply"], ["(5 written, 0 kept)"]),
}


@pytest.fixture(scope="module")
def video_environment(environment, tmp_path_factory) -> dict:
    """The user's shell with the tiny video weights (ppvd.pth, pi3.safetensors, moge2.pt) in PPD_WEIGHTS."""
    from tests.checkpoints import write_small_moge
    from tests.video_weights import tiny_video_model, write_video_weights

    folder = tmp_path_factory.mktemp("video_weights")
    write_video_weights(folder, tiny_video_model(seed=5))[1].rename(folder / "pi3.safetensors")
    write_small_moge(folder)
    return {**environment, "PPD_WEIGHTS": str(folder), "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def video_folder(tmp_path_factory) -> Path:
    """What the video commands name: clip.mp4 (5 frames) and a folder frames/ of 3."""
    from benchmarks.clip_scenes import write_clip_video

    folder = tmp_path_factory.mktemp("video")
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 255, (H, W, 3), dtype=np.uint8) for _ in range(5)]
    write_clip_video(folder / "clip.mp4", frames)
    (folder / "frames").mkdir()
    for k in range(3):
        Image.fromarray(frames[k]).save(folder / "frames" / f"f{k + 1}.png")
    return folder


def test_every_video_command_is_tested():
    assert readme_commands("Video") == list(VIDEO)


@pytest.mark.parametrize("command", list(VIDEO))
def test_a_video_command_works_in_a_fresh_folder(command, video_folder, video_environment, tmp_path):
    folder = fresh(video_folder, tmp_path)
    done = run(command, folder, video_environment)
    files, words = VIDEO[command]
    for name in files:
        assert (folder / name).is_file(), name
    for phrase in words:
        assert phrase in done.stdout, (phrase, done.stdout)
    assert "Traceback" not in done.stderr
