"""How a clip's meshes come into Blender: time and memory of the two ways, for the add-on's choice.

    python -m benchmarks.clip_blender_import                  # 100 frames of 256x192 grid meshes
    python -m benchmarks.clip_blender_import --frames 100 --width 512 --height 384

- "usd": one time-sampled USD (points, triangles, UVs and colours per frame; the topology
  changes from frame to frame, as edge-clean meshes do) written with usd-core, imported with
  Blender's own USD importer: one object whose Mesh Sequence Cache modifier reads each frame
  from the file when the frame is shown.
- "meshes": every frame a Blender mesh made with `foreach_set` (what a mesh sequence or a
  Geometry Nodes switch over a collection needs): all frames in memory at once.

Each way runs in a fresh Blender (bpy) process: the time to write and import, the resident
memory it adds, and the time to show a frame (a scrub through 10 frames).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def frame_mesh(k: int, width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(vertices (N, 3) float32 in Blender's frame, triangles (F, 3) int32, UVs (N, 2), colours (N, 3) uint8)
    of a rippled grid with a hole that moves, so that every frame's topology differs."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    z = 2.0 + 0.1 * np.sin(x / 9.0 + k / 5.0) * np.cos(y / 7.0)
    keep = (x - (k * 3) % width) ** 2 + (y - height / 2) ** 2 > (height / 6) ** 2
    index = -np.ones((height, width), np.int64)
    index[keep] = np.arange(keep.sum())
    a, b, c, d = index[:-1, :-1], index[:-1, 1:], index[1:, :-1], index[1:, 1:]
    quads = (a >= 0) & (b >= 0) & (c >= 0) & (d >= 0)
    faces = np.concatenate([np.stack([a[quads], c[quads], b[quads]], 1), np.stack([b[quads], c[quads], d[quads]], 1)])
    vertices = np.stack([(x - width / 2) / width * z, -(y - height / 2) / width * z, -z], -1)[keep]
    uvs = np.stack([(x + 0.5) / width, 1 - (y + 0.5) / height], -1)[keep]
    colours = np.repeat((128 + 100 * np.sin(x / 13.0))[..., None], 3, -1).astype(np.uint8)[keep]
    return vertices.astype(np.float32), faces.astype(np.int32), uvs.astype(np.float32), colours


def write_usd(path: Path, frames: int, width: int, height: int) -> float:
    """Write the clip's meshes as one time-sampled USD; return the seconds it took."""
    from pxr import Sdf, Usd, UsdGeom, Vt

    start = time.perf_counter()
    stage = Usd.Stage.CreateNew(str(path))
    stage.SetStartTimeCode(1)
    stage.SetEndTimeCode(frames)
    stage.SetTimeCodesPerSecond(24)
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.z)
    mesh = UsdGeom.Mesh.Define(stage, "/clip/frames")
    uv = UsdGeom.PrimvarsAPI(mesh).CreatePrimvar("st", Sdf.ValueTypeNames.TexCoord2fArray, UsdGeom.Tokens.vertex)
    colour = mesh.CreateDisplayColorPrimvar(UsdGeom.Tokens.vertex)
    for k in range(frames):
        vertices, faces, uvs, colours = frame_mesh(k, width, height)
        time_code = k + 1
        mesh.GetPointsAttr().Set(Vt.Vec3fArray.FromNumpy(vertices), time_code)
        mesh.GetFaceVertexCountsAttr().Set(Vt.IntArray.FromNumpy(np.full(len(faces), 3, np.int32)), time_code)
        mesh.GetFaceVertexIndicesAttr().Set(Vt.IntArray.FromNumpy(faces.ravel()), time_code)
        uv.Set(Vt.Vec2fArray.FromNumpy(uvs), time_code)
        colour.Set(Vt.Vec3fArray.FromNumpy((colours / 255.0).astype(np.float32)), time_code)
    stage.GetRootLayer().Save()
    return time.perf_counter() - start


def resident_mb() -> float:
    with open("/proc/self/statm") as statm:
        import os

        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def in_blender(way: str, folder: str, frames: int, width: int, height: int) -> dict:
    """Import the clip one way in this (bpy) process; the figures."""
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    before = resident_mb()
    start = time.perf_counter()
    if way == "usd":
        bpy.ops.wm.usd_import(filepath=str(Path(folder) / "clip.usdc"), set_frame_range=True)
    else:
        for k in range(frames):
            vertices, faces, uvs, colours = frame_mesh(k, width, height)
            mesh = bpy.data.meshes.new(f"frame {k}")
            mesh.vertices.add(len(vertices))
            mesh.vertices.foreach_set("co", vertices.ravel())
            mesh.loops.add(faces.size)
            mesh.loops.foreach_set("vertex_index", faces.ravel())
            mesh.polygons.add(len(faces))
            mesh.polygons.foreach_set("loop_start", np.arange(0, faces.size, 3, dtype=np.int32))
            mesh.polygons.foreach_set("loop_total", np.full(len(faces), 3, dtype=np.int32))
            mesh.uv_layers.new(name="UVMap").data.foreach_set("uv", uvs[faces.ravel()].ravel())
            rgba = np.ones((len(colours), 4), np.float32)
            rgba[:, :3] = colours / 255.0
            mesh.color_attributes.new("Col", "BYTE_COLOR", "POINT").data.foreach_set("color_srgb", rgba.ravel())
            mesh.update()
            scene.collection.objects.link(bpy.data.objects.new(f"frame {k}", mesh))
    imported = time.perf_counter() - start
    after = resident_mb()
    depsgraph = bpy.context.evaluated_depsgraph_get()
    start = time.perf_counter()
    shown = []
    for frame in range(1, min(frames, 10) + 1):
        scene.frame_set(frame)
        obj = next(o for o in scene.objects if o.type == "MESH").evaluated_get(depsgraph)
        shown.append(len(obj.data.vertices))
    scrub = (time.perf_counter() - start) / len(shown)
    return {"import_s": imported, "added_mb": after - before, "frame_s": scrub, "peak_mb": resident_mb() - before,
            "vertices_shown": shown[:3]}


def run(frames: int, width: int, height: int) -> str:
    lines = [f"{frames} frames of {width}x{height} grid meshes "
             f"({len(frame_mesh(0, width, height)[0])} vertices, {len(frame_mesh(0, width, height)[1])} triangles)"]
    with tempfile.TemporaryDirectory() as folder:
        written = write_usd(Path(folder) / "clip.usdc", frames, width, height)
        size = (Path(folder) / "clip.usdc").stat().st_size / 1e6
        lines.append(f"usd: written in {written:.1f} s ({size:.0f} MB) by usd-core")
        for way in ("usd", "meshes"):
            code = ("import json; from benchmarks.clip_blender_import import in_blender; "
                    f"print(json.dumps(in_blender({way!r}, {folder!r}, {frames}, {width}, {height})))")
            result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
            if result.returncode:
                lines.append(f"{way}: failed: {result.stderr.strip().splitlines()[-1:]}")
                continue
            figures = json.loads(result.stdout.strip().splitlines()[-1])
            lines.append(f"{way}: import {figures['import_s']:.1f} s, +{figures['added_mb']:.0f} MB resident after "
                         f"import, a frame shown in {1000 * figures['frame_s']:.0f} ms (+{figures['peak_mb']:.0f} MB "
                         f"after 10 frames; vertices {figures['vertices_shown']})")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--height", type=int, default=192)
    args = parser.parse_args()
    print(run(args.frames, args.width, args.height))


if __name__ == "__main__":
    main()
