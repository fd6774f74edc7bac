"""`ppd-mesh --show`: each finished photo's result in an Open3D window, where a display exists.

The window opens in a child process (`python -m ppd_core.viewer KIND FILE`) after the
photo's outputs are written, and the run goes on when it is closed; a graphics driver that
crashes, or an Open3D that cannot open a window, costs one line, never the batch. Where no
window can open, one line says so and the run writes its outputs as usual.

Open3D falls back to an invisible offscreen window when GLFW finds no display, and its
`run()` would then wait for ever, so the display is looked for first as GLFW looks for it
(an X server that answers at DISPLAY, a Wayland compositor's socket at WAYLAND_DISPLAY), and
the child still refuses a window that Open3D reports as offscreen.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, Optional, Sequence

from ppd_core.options import OUTPUT_KINDS
from ppd_core.progress_display import say

NO_WINDOW_EXIT = 3
"""The child's exit code when Open3D cannot open a window (its last stderr line says why)."""


def _x_display_answers(name: str) -> bool:
    """True when an X server answers at display `name` (libX11's XOpenDisplay, as GLFW does)."""
    library = ctypes.util.find_library("X11")
    if library is None:
        return False
    x11 = ctypes.CDLL(library)
    x11.XOpenDisplay.restype = ctypes.c_void_p
    x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
    x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
    connection = x11.XOpenDisplay(name.encode())
    if not connection:
        return False
    x11.XCloseDisplay(connection)
    return True


def _wayland_answers(name: str) -> bool:
    """True when a Wayland compositor listens on the socket `name` (in XDG_RUNTIME_DIR unless absolute)."""
    path = name if os.path.isabs(name) else os.path.join(os.environ.get("XDG_RUNTIME_DIR", ""), name)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        try:
            client.connect(path)
        except OSError:
            return False
    return True


def display_problem() -> Optional[str]:
    """Why no window can open here, or None when a display answers (Windows and macOS: always)."""
    if sys.platform in ("win32", "darwin"):
        return None
    x_name, wayland = os.environ.get("DISPLAY", ""), os.environ.get("WAYLAND_DISPLAY", "")
    if not x_name and not wayland:
        return "no display here (DISPLAY and WAYLAND_DISPLAY are not set)"
    if (x_name and _x_display_answers(x_name)) or (wayland and _wayland_answers(wayland)):
        return None
    named = " or ".join(f"{variable}={value}" for variable, value in (("DISPLAY", x_name),
                                                                       ("WAYLAND_DISPLAY", wayland)) if value)
    return f"no display answers at {named}"


VIEWABLE = ("ply", "glb", "obj", "stl", "npz", "3mf")
"""Output kinds the window can show (not depth maps or pictures)."""


def shown_output(outputs: dict[str, str]) -> Optional[tuple[str, str]]:
    """(kind, path) of the output to look at: the first that holds a mesh, solid or points."""
    return next(((kind, path) for kind, path in outputs.items() if kind in VIEWABLE), None)


def load_geometry(kind: str, path: str):
    """The output at `path` as an Open3D geometry: a mesh (textured where the file is), or a
    point cloud; a result file in glTF's frame (y up), like the PLY, OBJ and GLB beside it."""
    import open3d as o3d  # heavy (~3 s to load): only in the viewer's process

    if kind == "npz":
        from mesh.data import MeshData
        from mesh.export import gltf_frame
        from ppd_core.files.result_file import read_result

        result = read_result(path)
        shape = MeshData(result.vertices, result.faces, result.uvs, result.colors, result.normals, result.frame)
        return gltf_frame(shape).to_open3d()
    if kind == "3mf":  # Open3D reads no 3MF; pymeshlab (lib3mf) does
        import pymeshlab

        meshes = pymeshlab.MeshSet()
        meshes.load_new_mesh(path)
        loaded = meshes.current_mesh()
        geometry = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(loaded.vertex_matrix()),
                                             o3d.utility.Vector3iVector(loaded.face_matrix()))
    else:
        with o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error):
            geometry = o3d.io.read_triangle_mesh(path, enable_post_processing=True)
        if not geometry.has_triangles():
            return o3d.io.read_point_cloud(path)
    if not geometry.has_vertex_normals():
        geometry.compute_vertex_normals()
    return geometry


def _open_window(vis, title: str) -> Optional[str]:
    """Open the visualiser's window; why not when it cannot, or when Open3D made it offscreen
    (what it prints to stdout is read from a temporary file)."""
    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile() as said:
        os.dup2(said.fileno(), 1)
        try:
            opened = vis.create_window(window_name=title)
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        said.seek(0)
        words = said.read().decode("utf-8", "replace")
    if not opened:
        return "Open3D cannot open a window here"
    if "offscreen" in words.lower():
        vis.destroy_window()
        return "Open3D found no display to open a window on"
    return None


def view(kind: str, path: str) -> int:
    """The child: show the output at `path` until its window is closed; `NO_WINDOW_EXIT` with
    one line on stderr when no window opens."""
    import open3d as o3d

    geometry = load_geometry(kind, path)
    vis = o3d.visualization.Visualizer()
    problem = _open_window(vis, f"{Path(path).name} - ppd-mesh")
    if problem:
        print(problem, file=sys.stderr)
        return NO_WINDOW_EXIT
    vis.add_geometry(geometry)
    vis.run()
    vis.destroy_window()
    return 0


def show_outputs(outputs: dict[str, str]) -> Optional[str]:
    """Show a finished photo's result in a window (in a child process, until it is closed);
    a one-line reason when it could not be shown, else None."""
    shown = shown_output(outputs)
    if shown is None:
        kinds = ", ".join(OUTPUT_KINDS[kind].flag for kind in outputs)
        return f"nothing to look at among {kinds} (a mesh, solid or point cloud output is shown)"
    kind, path = shown
    child = subprocess.run([sys.executable, "-m", "ppd_core.viewer", kind, os.path.abspath(path)],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if child.returncode == 0:
        return None
    last = (child.stderr.decode("utf-8", "replace").strip().splitlines() or [""])[-1]
    if child.returncode == NO_WINDOW_EXIT:
        return f"{path}: {last}"
    return f"{path}: the viewer stopped ({last or f'exit code {child.returncode}'})"


def result_viewer(wanted: bool) -> Optional[Callable[[dict], None]]:
    """--show: a function that shows a finished photo's outputs ({kind: path}) and says in one
    line when it cannot; None when not wanted, or when no display exists (said once, here)."""
    if not wanted:
        return None
    problem = display_problem()
    if problem:
        say(f"ppd-mesh: --show: {problem}; the outputs are written as usual", sys.stderr)
        return None

    def show(outputs: dict) -> None:
        problem = show_outputs(outputs)
        if problem:
            say(f"ppd-mesh: --show: {problem}", sys.stderr)

    return show


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The viewer's process: KIND FILE."""
    kind, path = sys.argv[1:3] if argv is None else argv
    try:
        return view(kind, path)
    except Exception as error:  # an unreadable file, a broken Open3D: one line for the parent to show
        print(f"{type(error).__name__}: {error}".splitlines()[0], file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
