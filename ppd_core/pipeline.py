"""One photo through the whole flow: load, depth, lift, mesh, write. The command and the worker call this.

`run_photo` reads top to bottom over one small job context (`PhotoJob`), each stage filling
in its part. It is all or nothing: outputs are staged and moved into place together
(`ppd_core.files.outputs`), so an error or cancel leaves the output folders as they were.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Collection, Optional, Union

import cv2
import numpy as np

from mesh.data import MeshData, MeshError, PixelCloud
from mesh.decimate import decimate
from mesh.grid import grid_mesh
from mesh.poisson import poisson_mesh
from mesh.relief_print import ReliefSpec, relief_print, stl_face_budget
from mesh.solid import mesh_depth
from ppd_core.errors import BadInputError
from ppd_core.files.outputs import OutputSource, write_outputs
from ppd_core.files.photo import Photo, load_image
from ppd_core.files.staging import check_targets
from ppd_core.geometry.camera import Intrinsics, camera_record, project
from ppd_core.geometry.depth import upsample_depth
from ppd_core.geometry.lift import lift
from ppd_core.options import OUTPUT_KINDS, JobOptions, output_files
from ppd_core.photo_depth import ModelCache, PhotoDepth, photo_depth, photo_identity
from ppd_core.progress import ProgressCallback, report

COLOUR_KINDS = ("3mf", "npz")
"""Output kinds that carry a colour relief's filaments."""


@dataclass
class PhotoJob:
    """One photo's job as it moves through the stages; each stage fills in its fields."""

    photo: Path
    outputs: dict[str, Path]
    options: JobOptions
    on_progress: Optional[ProgressCallback] = None
    image: Optional[Photo] = None                 # the photo, upright RGB
    depth_info: Optional[PhotoDepth] = None       # the photo's depth and camera, and where they came from
    depth: Optional[np.ndarray] = None            # metric depth on the mesh grid
    rgb: Optional[np.ndarray] = None              # the photo on the mesh grid
    grid: Optional[Intrinsics] = None             # the camera in pixels of the mesh grid
    cloud: Optional[PixelCloud] = None            # edge-clean points, when an output needs them
    shapes: dict[str, MeshData] = field(default_factory=dict)  # "mesh" | "points" | "solid"
    kept: frozenset = frozenset()                 # outputs already complete: not written

    def geometry(self, kind: str) -> str:
        return self.options.geometry_for(kind, self.outputs)

    @property
    def written(self) -> dict[str, Path]:
        return {kind: path for kind, path in self.outputs.items() if kind not in self.kept}

    def wants(self, *geometries: str) -> bool:
        return any(self.geometry(kind) in geometries for kind in self.written)


def mesh_grid_size(width: int, height: int, resolution: int) -> tuple[int, int]:
    """(width, height) of the grid that is lifted and meshed: the photo, shrunk to about
    `resolution` pixels when it is larger (the texture stays the full photo)."""
    scale = min(1.0, math.sqrt(resolution / float(width * height)))
    return max(2, int(round(width * scale))), max(2, int(round(height * scale)))


def load_photo(job: PhotoJob) -> None:
    report(job.on_progress, "load", 0.0, f"reading {job.photo.name}")
    job.image = load_image(job.photo)
    report(job.on_progress, "load", 1.0, f"{job.image.width}x{job.image.height}")


def depth_on_mesh_grid(job: PhotoJob, models: Optional[ModelCache]) -> None:
    """Metric depth, photo and camera on the mesh grid. Depth is resampled without blending
    across edges, sampled at each grid pixel's centre (a nearest-pixel pick would put the
    points half a pixel off the surface)."""
    job.depth_info = photo_depth(job.image, job.options, models, job.on_progress)
    to_mesh_grid(job)


def to_mesh_grid(job: PhotoJob) -> None:
    """The job's metric depth (`depth_info`), photo and camera resampled onto the mesh grid."""
    metric = job.depth_info.metric
    size = mesh_grid_size(job.image.width, job.image.height, job.options.resolution)
    job.rgb = job.image.rgb
    if size != (job.image.width, job.image.height):
        job.rgb = cv2.resize(job.image.rgb, size, interpolation=cv2.INTER_AREA)
    width, height = size
    job.depth = metric.astype(np.float32) if metric.shape == (height, width) else upsample_depth(
        metric, width, height, guide_rgb=job.rgb)
    job.grid = job.depth_info.intrinsics.scaled(*size)


def lift_points(job: PhotoJob) -> None:
    """The edge-clean point cloud, when a mesh, a point cloud or a Poisson solid needs it."""
    if not (job.wants("mesh", "points") or (job.wants("solid") and job.options.method == "poisson")):
        return
    report(job.on_progress, "lift", 0.0, "edge-clean points")
    job.cloud = lift(job.depth, job.grid, job.rgb, edge_strength=job.options.edge_strength)
    report(job.on_progress, "lift", 1.0, f"{len(job.cloud)} points")


def projected_uvs(vertices: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
    """Texture coordinates (v up) of camera-frame vertices: where the photo sees them."""
    pixels = np.nan_to_num(project(vertices, intrinsics))
    u = pixels[:, 0] / intrinsics.width
    v = 1.0 - pixels[:, 1] / intrinsics.height
    return np.clip(np.column_stack([u, v]), 0.0, 1.0).astype(np.float32)


def scene_mesh(job: PhotoJob) -> MeshData:
    """The scene mesh (OpenCV frame, UVs into the photo), decimated if asked."""
    options = job.options
    if options.method == "grid":
        report(job.on_progress, "mesh", 0.1, "grid triangulation")
        surface = grid_mesh(job.cloud)
    else:
        surface = poisson_mesh(job.cloud.points, job.cloud.colors, job.cloud.normals, depth=options.poisson_depth,
                               on_progress=lambda fraction, message: report(job.on_progress, "mesh", fraction, message))
        surface.uvs = projected_uvs(surface.vertices, job.grid)
    if len(surface.faces) == 0:
        raise BadInputError("no triangles survived the depth-edge cuts: the depth map has no smooth region to mesh")
    if options.decimate is not None:
        report(job.on_progress, "mesh", 0.6, f"decimating to {options.decimate} triangles")
        surface = decimate(surface, options.decimate)
    return surface


def relief_spec(options: JobOptions) -> ReliefSpec:
    """The print solid the options ask for; a triangle budget from --decimate and --max-mb, the smaller."""
    budgets = [options.decimate] if options.decimate is not None else []
    if options.max_mb is not None:
        budgets.append(stl_face_budget(options.max_mb))
    return ReliefSpec(width_mm=options.width_mm, relief_mm=options.relief_mm, base_mm=options.base_mm,
                      frame_mm=options.frame_mm, frame_height_mm=options.frame_height_mm, corner_mm=options.corner_mm,
                      hanger=options.hanger, curve_radius_mm=options.curve_radius_mm, smooth_mm=options.smooth_mm,
                      silhouette=options.silhouette, max_faces=min(budgets) if budgets else None,
                      filaments=options.filaments)


def print_solid(job: PhotoJob) -> MeshData:
    """The print solid: the depth map's relief, or the Poisson surface's depth seen by the photo's
    camera made a relief, with every relief option (`mesh.relief_print`)."""
    depth = job.depth
    if job.options.method == "poisson":
        grid = job.grid
        depth = mesh_depth(job.shapes["mesh"], (grid.fx, grid.fy, grid.cx, grid.cy), grid.width, grid.height)
    return relief_print(depth, job.rgb, relief_spec(job.options),
                        on_progress=lambda fraction, message: report(job.on_progress, "mesh", 0.9 + 0.1 * fraction,
                                                                     message))


def build_shapes(job: PhotoJob) -> None:
    """The meshes, point cloud and solid the outputs want."""
    report(job.on_progress, "mesh", 0.0, "building")
    if job.wants("mesh") or (job.wants("solid") and job.options.method == "poisson"):
        job.shapes["mesh"] = scene_mesh(job)
    if job.wants("points"):
        job.shapes["points"] = job.cloud.to_mesh_data()
    if job.wants("solid"):
        report(job.on_progress, "mesh", 0.9, "print solid")
        job.shapes["solid"] = print_solid(job)
    report(job.on_progress, "mesh", 1.0, "meshes ready")


def run_photo(photo: Union[str, Path], outputs: dict, options: JobOptions, *,
              models: Optional[ModelCache] = None, on_progress: Optional[ProgressCallback] = None,
              replace: bool = True, keep: Collection[str] = (), redo: Collection[str] = ()) -> dict:
    """Run one photo and write `outputs` ({kind: path}, kinds of `options.OUTPUT_KINDS`).

    `keep`: kinds of `outputs` already complete (a resumed batch): not written, though they
    still decide what a preview shows. `redo`: kinds whose files are there but cut short or
    unreadable: written over even without `replace`.

    Returns JSON-serialisable stats: "outputs" {kind: path}, "vertices", "faces", "bounds",
    "size_mm" or "size_m", "watertight" (None for open meshes and points), "camera" (the
    photo's `CameraRecord`), "depth" (where scale and camera came from, `PhotoDepth.describe`),
    "details" {kind: the same stats per output} and "files" (every file written, e.g. an
    OBJ's MTL and texture). Nothing is written unless every output
    succeeds; a failure or cancel leaves the folders as they were. Existing files are
    replaced (`replace=False`: refused, even when they appear during the run), but never the
    files it reads (`JobOptions.input_files`). "kept" in the stats lists the kinds kept.
    """
    outputs = {kind: Path(path) for kind, path in outputs.items()}
    unknown = sorted(set(outputs) - set(OUTPUT_KINDS))
    if unknown or not outputs:
        raise BadInputError(f"outputs must be some of {', '.join(OUTPUT_KINDS)}; got {', '.join(unknown) or 'none'}")
    if not set(keep) | set(redo) <= set(outputs) or set(keep) >= set(outputs):
        raise BadInputError("kept and redone outputs must be some of the job's outputs, and something must be written")
    options.validate()
    job = PhotoJob(Path(photo), outputs, options, on_progress, kept=frozenset(keep))
    broken = [f for kind in redo if kind not in job.kept for f in output_files(kind, outputs[kind])]
    check_targets([f for kind, path in job.written.items() if kind not in redo for f in output_files(kind, path)],
                  options.input_files(photo), replace)
    check_targets(broken, options.input_files(photo), True)
    for kind in outputs:
        job.geometry(kind)  # refuses a point cloud in a mesh-only format before any work
    if options.filaments is not None and not any(job.geometry(kind) == "solid" and kind in COLOUR_KINDS
                                                 for kind in outputs):
        raise BadInputError("--filaments paints a print solid's 3MF (and the NPZ for Blender); STL has no colours: "
                            "add --3mf")

    load_photo(job)
    depth_on_mesh_grid(job, models)
    return mesh_and_write(job, replace=replace, broken=broken)


def mesh_and_write(job: PhotoJob, *, replace: bool, broken: Collection[Path] = (), info: Optional[dict] = None,
                   extra_files: Optional[dict] = None) -> dict:
    """Lift, mesh and write the outputs of a job whose depth is on the mesh grid (`to_mesh_grid`),
    all or none (`extra_files` {path: bytes} with them); return `run_photo`'s stats. `info`
    adds to the depth info the outputs carry."""
    try:
        lift_points(job)
        build_shapes(job)
        camera = camera_record(job.depth_info.intrinsics)
        info = {**job.depth_info.describe(), "photo": photo_identity(job.image), **(info or {})}
        sources = {kind: OutputSource(job.geometry(kind), job.shapes.get(job.geometry(kind)), job.depth,
                                      job.image.rgb, str(job.photo.resolve()), camera, info) for kind in job.written}
        details, written = write_outputs(job.written, sources, replace=replace, broken=broken,
                                         on_progress=job.on_progress, extra_files=extra_files)
    except MeshError as error:  # `mesh` speaks for itself; here it is bad input like any other
        raise BadInputError(str(error)) from None
    stats = job_stats(job.outputs, details, written, camera, info)
    stats["kept"] = [kind for kind in job.outputs if kind in job.kept]
    return stats


def job_stats(outputs: dict[str, Path], details: dict, written: list[Path], camera, depth: dict) -> dict:
    """The stats `run_photo` returns: the main (first written neither depth map nor picture)
    output's, plus per written output, and `depth`: where the depth's scale and the camera
    came from (`PhotoDepth.describe`)."""
    shapes = [kind for kind in details if not (OUTPUT_KINDS[kind].depth_map or OUTPUT_KINDS[kind].picture)]
    main = details[shapes[0]] if shapes else {}
    stats = {key: main[key] for key in ("vertices", "faces", "bounds", "size_mm", "size_m") if key in main}
    stats.setdefault("vertices", 0)
    stats.setdefault("faces", 0)
    stats.setdefault("bounds", None)
    stats.update(outputs={kind: str(path) for kind, path in outputs.items()}, camera=dataclasses.asdict(camera),
                 watertight=main.get("watertight"), details=details, files=[str(path) for path in written],
                 depth=depth)
    return stats
