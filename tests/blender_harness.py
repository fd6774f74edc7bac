"""Helpers for the Blender add-on tests (the `importer` fixture is in conftest.py).

Blender (the bpy wheel) is imported once per process with a throw-away user folder, the
extension is built with `addon/build.py` (Blender's own builder), installed with
`bpy.ops.extensions.package_install_files` and enabled, exactly as a user would.
"""

from __future__ import annotations

import atexit
import functools
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
USER_DIR = tempfile.mkdtemp(prefix="ppd-blender-user-")
atexit.register(shutil.rmtree, USER_DIR, ignore_errors=True)
if "bpy" not in sys.modules:
    os.environ["BLENDER_USER_RESOURCES"] = USER_DIR
# The add-on keeps its backend, weights and logs in the user's data folder: a private one here.
os.environ.setdefault("XDG_DATA_HOME", os.path.join(USER_DIR, "data"))

bpy = pytest.importorskip("bpy", reason="bpy (Blender as a module) is needed for the add-on tests")

# The Python that runs the worker and the CLI (torch, ppd_core). The tests' own Python by
# default; set PPD_TEST_WORKER_PYTHON to run these tests under another bpy (say Blender 5.1's
# Python 3.13 with numpy 2) while the worker runs elsewhere, as in real use.
WORKER_PYTHON = os.environ.get("PPD_TEST_WORKER_PYTHON", sys.executable)

ADDON_ID = "depth_from_image"
REPO_MODULE = "user_default"
MODULE = f"bl_ext.{REPO_MODULE}.{ADDON_ID}"


def build_zip(output_dir: str) -> Path:
    """Run the documented build command; return the zip it printed."""
    done = subprocess.run([sys.executable, str(REPO / "addon" / "build.py"), "--output-dir", output_dir],
                          capture_output=True, text=True, cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr
    return Path(done.stdout.strip().splitlines()[-1])


@functools.lru_cache(maxsize=1)
def installed_zip() -> Path:
    """Build the zip and install + enable it into this process's throw-away user folder."""
    extensions = bpy.utils.user_resource("EXTENSIONS")
    if not extensions.startswith(USER_DIR):
        pytest.skip("bpy was imported before the add-on tests could give it a private user folder")
    zip_path = build_zip(os.path.join(USER_DIR, "dist"))
    bpy.ops.extensions.package_install_files(filepath=str(zip_path), repo=REPO_MODULE, enable_on_install=True)
    return zip_path


def addon(submodule: str = ""):
    """The installed add-on package (or one of its modules), enabling it if needed."""
    import addon_utils

    installed_zip()
    if not addon_utils.check(MODULE)[1]:
        bpy.ops.preferences.addon_enable(module=MODULE)
    return importlib.import_module(f"{MODULE}.{submodule}" if submodule else MODULE)


def prefs():
    return bpy.context.preferences.addons[MODULE].preferences


def clear_scene() -> None:
    """Remove every object and data-block the tests can create."""
    data = bpy.data
    doomed = [*data.objects, *data.meshes, *data.cameras, *data.materials, *data.images,
              *data.node_groups, *data.collections]
    data.batch_remove(doomed)


def datablock_counts() -> dict:
    data = bpy.data
    return {name: len(getattr(data, name)) for name in
            ("objects", "meshes", "cameras", "materials", "images", "node_groups", "collections")}


def write_photo(path: Path, width: int, height: int, seed: int = 0) -> Path:
    """A random RGB PNG written with Blender's own image writer (no Pillow needed here)."""
    rng = np.random.default_rng(seed)
    image = bpy.data.images.new("photo-writer", width, height)
    pixels = np.ones((height, width, 4), np.float32)
    pixels[..., :3] = rng.random((height, width, 3))
    image.pixels.foreach_set(pixels.ravel())
    image.filepath_raw = str(path)
    image.file_format = "PNG"
    image.save()
    bpy.data.images.remove(image)
    return path


def grid_result(width=40, height=30, fx=50.0, cx=21.5, cy=13.0, depth=None, seed=0):
    """Arrays of a per-pixel grid mesh lifted with the architecture's formula (OpenCV frame)."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width]
    z = rng.uniform(1.0, 3.0, (height, width)) if depth is None else np.broadcast_to(depth, (height, width))
    vertices = np.stack([(xs + 0.5 - cx) / fx * z, (ys + 0.5 - cy) / fx * z, z], -1).reshape(-1, 3)
    index = np.arange(width * height).reshape(height, width)
    a, b = index[:-1, :-1].ravel(), index[:-1, 1:].ravel()
    c, d = index[1:, :-1].ravel(), index[1:, 1:].ravel()
    # Counter-clockwise as seen from the camera (image y points down).
    faces = np.concatenate([np.stack([a, c, b], 1), np.stack([b, c, d], 1)])
    uvs = np.stack([(xs + 0.5) / width, 1.0 - (ys + 0.5) / height], -1).reshape(-1, 2)
    colors = rng.integers(0, 256, (width * height, 3), dtype=np.uint8)
    return {"vertices": vertices.astype(np.float32), "faces": faces.astype(np.int32),
            "uvs": uvs.astype(np.float32), "colors": colors,
            "intrinsics": np.array([fx, fx, cx, cy], np.float64), "image_size": np.array([width, height], np.int32)}


def write_result_npz(path: Path, arrays: dict, *, kind="mesh", image_path="", sensor_mm=36.0) -> Path:
    """A result file written by the product's own writer; the camera from the intrinsics."""
    from mesh.data import MeshData
    from ppd_core.files.result_file import result_bytes
    from ppd_core.geometry.camera import Intrinsics, camera_record

    fx, fy, cx, cy = (float(v) for v in arrays["intrinsics"])
    width, height = (int(v) for v in arrays["image_size"])
    faces = arrays["faces"] if kind != "points" else np.zeros((0, 3), np.int32)
    mesh = MeshData(arrays["vertices"], faces, uvs=arrays["uvs"], colors=arrays["colors"],
                    frame="print_mm" if kind == "solid" else "opencv")
    camera = camera_record(Intrinsics(fx, fy, cx, cy, width, height), sensor_width_mm=sensor_mm)
    path.write_bytes(result_bytes(mesh, kind, camera, str(image_path)))
    return path


def projected_pixels(scene, camera, obj, indices) -> np.ndarray:
    """Image coordinates (x right, y down, pixel centres at +0.5) of mesh vertices seen by
    `camera` at the scene's render resolution, via bpy_extras.world_to_camera_view."""
    from bpy_extras.object_utils import world_to_camera_view

    width, height = scene.render.resolution_x, scene.render.resolution_y
    out = []
    for index in indices:
        ndc = world_to_camera_view(scene, camera, obj.matrix_world @ obj.data.vertices[int(index)].co)
        out.append((ndc.x * width, (1.0 - ndc.y) * height))
    return np.array(out)


def render_through_camera(scene, path: Path) -> np.ndarray:
    """Render `scene` with Cycles (CPU, one sample, no pixel filter, Standard view, black
    world) and return the image as (height, width, 3) floats, top row first."""
    render = scene.render
    render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 1
    scene.cycles.use_denoising = False
    scene.cycles.filter_width = 0.01
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    scene.view_settings.exposure, scene.view_settings.gamma = 0.0, 1.0
    if scene.world is None:
        scene.world = bpy.data.worlds.new("black")
    scene.world.color = (0.0, 0.0, 0.0)
    if scene.world.node_tree is not None:
        scene.world.node_tree.nodes.clear()
    render.film_transparent = False
    render.image_settings.file_format = "PNG"
    render.image_settings.color_depth = "8"
    render.filepath = str(path)
    bpy.ops.render.render(write_still=True, scene=scene.name)
    image = bpy.data.images.load(str(path))
    width, height = image.size
    pixels = np.empty(width * height * 4, np.float32)
    image.pixels.foreach_get(pixels)
    bpy.data.images.remove(image)
    return pixels.reshape(height, width, 4)[::-1, :, :3]


class RecordingLayout:
    """Stands in for bpy.types.UILayout so a panel's or the preferences' draw() can run in
    background mode: it records every label, property, operator and progress bar drawn."""

    def __init__(self, log: list | None = None, parent: "RecordingLayout | None" = None) -> None:
        self.log = [] if log is None else log
        self.parent = parent
        self.active = True

    def _child(self, *args, **kwargs) -> "RecordingLayout":
        return RecordingLayout(self.log, self)

    def is_active(self) -> bool:
        """False when this layout or one it sits in was greyed out (`active = False`)."""
        return self.active and (self.parent is None or self.parent.is_active())

    box = row = column = split = grid_flow = _child

    def label(self, *, text: str = "", icon: str = "NONE", **kwargs) -> None:
        self.log.append(("label", text, icon))

    def prop(self, data, attribute: str, **kwargs) -> None:
        self.log.append(("prop", attribute, kwargs.get("text"), self.is_active()))

    def template_ID(self, data, attribute: str, **kwargs) -> None:
        self.log.append(("prop", attribute, None))

    def progress(self, *, factor: float = 0.0, text: str = "", **kwargs) -> None:
        self.log.append(("progress", text, factor))

    def operator(self, idname: str, **kwargs):
        button = _OperatorButton(idname, kwargs.get("text"))
        self.log.append(("operator", button))
        return button

    def separator(self, **kwargs) -> None:
        pass

    def labels(self) -> list:
        return [entry[1] for entry in self.log if entry[0] == "label"]

    def operators(self) -> list:
        return [entry[1] for entry in self.log if entry[0] == "operator"]


class _OperatorButton:
    """What layout.operator() returns: its properties (url, ...) are set after drawing."""

    def __init__(self, idname: str, text) -> None:
        self.idname, self.text = idname, text


class DrawSelf:
    """`self` for a draw() call: a recording layout, everything else from `target`."""

    def __init__(self, target) -> None:
        self._target = target
        self.layout = RecordingLayout()

    def __getattr__(self, name: str):
        return getattr(self._target, name)


def worker_env() -> dict:
    """The environment for WORKER_PYTHON: this checkout's ppd_core, no network."""
    return dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")


def write_small_weights(folder: Path, writer: str = "write_small_weights") -> Path:
    """A small random-weight checkpoint of tests/checkpoints.py (`writer` names which), written by WORKER_PYTHON."""
    code = f"import sys; from tests.checkpoints import {writer}; {writer}(sys.argv[1])"
    done = subprocess.run([WORKER_PYTHON, "-c", code, str(folder)], capture_output=True, text=True,
                          cwd=REPO, env=worker_env(), check=False)
    if done.returncode != 0:
        pytest.skip(f"no worker Python with torch: {done.stderr.strip().splitlines()[-1:]}")
    return folder


def drain_timers(timeout=60.0) -> None:
    """Background Blender runs no timers: run the add-on's task timer until every task it
    started has ended and its outcome is in (`state.poll_tasks`)."""
    import time

    state = addon("state")
    deadline = time.monotonic() + timeout
    while state.pending():
        state.poll_tasks()
        assert time.monotonic() < deadline, "a background task did not finish"
        time.sleep(0.05)


def drive(session, timeout=240.0, on_step=None):
    """Call the add-on's timer step until the run ends; return the outcome."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        outcome = session.SESSION.step(bpy.context)
        if on_step is not None:
            on_step()
        if outcome != session.RUNNING:
            return outcome
        assert time.monotonic() < deadline, "the run did not finish in time"
        time.sleep(0.02)
