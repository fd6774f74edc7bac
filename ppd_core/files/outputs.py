"""Writing one job's outputs: each encoded by its format writer, all moved in or none.

Every output's files are first written into a hidden staging folder beside their final
names (`ppd_core.files.staging`), then all are moved into place together, so a failure or
cancel at any point leaves the user's folders as they were.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Collection, Optional

import numpy as np

from mesh.checks import MeshReport, check_mesh
from mesh.data import MeshData, Paint
from mesh.export import glb_bytes, obj_files, ply_bytes, stl_bytes, threemf_bytes
from mesh.usd import usd_bytes
from ppd_core.errors import OutputError
from ppd_core.files.depth_exr import depth_exr_files
from ppd_core.files.depth_file import DEPTH_PNG_MAX_M, depth_png_bytes
from ppd_core.files.preview import preview_png, preview_size, renderer_for
from ppd_core.files.result_file import result_bytes
from ppd_core.files.staging import make_staging, move_into_place
from ppd_core.geometry.camera import CameraRecord
from ppd_core.options import OUTPUT_KINDS, output_files
from ppd_core.progress import ProgressCallback, report


@dataclass
class OutputSource:
    """What an output is made of: its geometry ("mesh", "points", "solid" or "depth"), that
    geometry, the metric depth map (on the mesh grid), the photo and its camera."""

    geometry: str
    shape: Optional[MeshData]
    depth: np.ndarray
    photo_rgb: np.ndarray
    photo_path: str
    camera: CameraRecord
    depth_info: dict = field(default_factory=dict)  # where the depth's scale and the camera came from


#: Output kind -> the bytes of each of its files (in the order of `options.output_files`).
ENCODERS: dict[str, Callable[[OutputSource, list[Path]], list[bytes]]] = {
    "stl": lambda source, files: [stl_bytes(source.shape)],
    "3mf": lambda source, files: [threemf_bytes(source.shape)],
    "ply": lambda source, files: [ply_bytes(source.shape)],
    "obj": lambda source, files: list(obj_files(source.shape, source.photo_rgb, files[1].name, files[2].name)),
    "glb": lambda source, files: [glb_bytes(source.shape, source.photo_rgb)],
    "npz": lambda source, files: [result_bytes(source.shape, source.geometry, source.camera, source.photo_path,
                                               source.depth, source.depth_info)],
    "depth_png": lambda source, files: list(depth_png_bytes(source.depth)),
    "depth_exr": lambda source, files: list(depth_exr_files(source.depth, source.camera, source.depth_info,
                                                            (files[0].name, files[1].name))),
    "usd": lambda source, files: [usd_bytes(source.shape)],
    "preview": lambda source, files: [preview_png(source.geometry, source.shape, source.depth, source.photo_rgb,
                                                  source.camera)],
}


def describe(source: OutputSource, checks: dict[int, MeshReport], kind: str) -> dict:
    """Stats of one output of `kind` for the summary: counts, bounds, size with its unit,
    watertightness (and the print check of a solid, kept in `checks` so two outputs of one
    solid check it once); for a depth map its size (and for the 16-bit PNG, the pixels beyond
    its range)."""
    if source.geometry == "depth":
        stats = {"size_px": [int(source.depth.shape[1]), int(source.depth.shape[0])]}
        if kind == "depth_png":
            with np.errstate(invalid="ignore"):
                stats["clipped_px"] = int(np.count_nonzero(source.depth > DEPTH_PNG_MAX_M))
        return stats
    shape = source.shape
    bounds = shape.bounds()
    size = (bounds[1] - bounds[0]).round(4).tolist()
    stats = {"vertices": int(len(shape.vertices)), "faces": int(len(shape.faces)), "bounds": bounds.round(6).tolist()}
    if shape.frame == "print_mm":
        if id(shape) not in checks:
            checks[id(shape)] = check_mesh(shape)
        check = checks[id(shape)]
        stats.update(size_mm=size, watertight=check.watertight, check=check.summary(),
                     printable=check.printable, volume_mm3=round(check.volume, 3))
        if shape.paint is not None and kind in ("3mf", "npz"):
            stats["filaments"] = filament_legend(shape.paint)
    else:
        stats.update(size_m=size, watertight=None)
    return stats


def filament_legend(paint: Paint) -> list[dict]:
    """A colour relief's filaments in slot order: number (1 = also sides and base), name, sRGB, share
    of the painted triangles."""
    counts = np.bincount(paint.faces[paint.faces >= 0].astype(np.int64), minlength=len(paint.colors))
    painted = max(int(counts.sum()), 1)
    return [{"filament": number + 1, "name": name, "rgb": "#" + "".join(f"{int(v):02x}" for v in colour),
             "share": round(int(count) / painted, 4)}
            for number, (name, colour, count) in enumerate(zip(paint.names, paint.colors, counts))]


def describe_picture(source: OutputSource) -> dict:
    """Stats of a preview: its size and what it shows (an Open3D render or the shaded depth)."""
    return {"size_px": list(preview_size(source.camera.width, source.camera.height)),
            "renderer": renderer_for(source.geometry, source.shape)}


def write_outputs(outputs: dict[str, Path], sources: dict[str, OutputSource], *, replace: bool = True,
                  broken: Collection[Path] = (), on_progress: Optional[ProgressCallback] = None,
                  extra_files: Optional[dict[Path, bytes]] = None) -> tuple[dict, list[Path]]:
    """Write each output ({kind: path}) from its source into a staging folder beside it, then
    move them all into place; return ({kind: stats}, every file written). Without `replace`,
    an output file that exists by then (another program made it) is an error, unless it is
    one of the `broken` files (cut short or unreadable), which are written over.
    `extra_files` ({path: bytes}: a clip frame's 16-bit depth) move in with the outputs."""
    staging: dict[Path, Path] = {}
    details: dict[str, dict] = {}
    checks: dict[int, MeshReport] = {}
    moves: list[tuple[Path, Path]] = []
    try:
        for final, data in (extra_files or {}).items():
            if final.parent not in staging:
                staging[final.parent] = make_staging(final.parent)
            _stage(staging[final.parent] / final.name, data, final)
            moves.append((staging[final.parent] / final.name, final))
        for number, (kind, path) in enumerate(outputs.items()):
            report(on_progress, "export", number / len(outputs), f"writing {path.name}")
            files = output_files(kind, path)
            try:
                contents = ENCODERS[kind](sources[kind], files)
            except OSError as error:  # a writer's own scratch space (the 3MF's) is full
                raise OutputError(f"{path}: cannot write ({error.strerror or error})") from None
            folder = path.parent
            if folder not in staging:
                staging[folder] = make_staging(folder)
            for final, data in zip(files, contents):
                staged = staging[folder] / final.name
                _stage(staged, data, final)
                moves.append((staged, final))
            details[kind] = (describe_picture(sources[kind]) if OUTPUT_KINDS[kind].picture
                             else describe(sources[kind], checks, kind))
            if "size_mm" in details[kind]:  # a print solid: the summary gives its file's size
                details[kind]["file_bytes"] = sum(len(data) for data in contents)
        report(on_progress, "export", 1.0, "moving files into place")
        move_into_place(moves, replace, broken)
    finally:
        for folder in staging.values():
            shutil.rmtree(folder, ignore_errors=True)
    return details, [final for _, final in moves]


def _stage(staged: Path, data: bytes, final: Path) -> None:
    try:
        staged.write_bytes(data)
    except OSError as error:  # a full disk, a vanished folder: said plainly, naming the user's file
        raise OutputError(f"{final}: cannot write ({error.strerror or error})") from None
