"""One photo through the whole flow: load, depth, lift, mesh, export. The CLI and worker call this.

`run_photo` is all or nothing: outputs are staged and moved into place together
(`ppd_core.outputs`), so an error or cancel leaves the output folders as they were.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from ppd_core.errors import BadInputError
from ppd_core.progress import ProgressCallback, report

#: Stages of one job in order, with their share of the whole job's time (they sum to 1).
STAGES: tuple[tuple[str, float], ...] = (
    ("load", 0.03), ("model", 0.07), ("encode", 0.05), ("diffusion", 0.5),
    ("lift", 0.1), ("mesh", 0.15), ("export", 0.1),
)
OUTPUT_KINDS = ("stl", "3mf", "ply", "obj", "glb", "npz", "depth_png")
#: Kinds that are a printable solid unless the options say otherwise.
SOLID_BY_DEFAULT = ("stl", "3mf")
DEFAULT_PRESET = "indoor"


@dataclass
class JobOptions:
    """Everything a job can ask for; the CLI's options, field for field."""

    method: str = "grid"                 # "grid" or "poisson"
    points: bool = False                 # a point cloud instead of a mesh
    solid: Optional[bool] = None         # None: STL and 3MF are solids, other kinds are not
    width_mm: float = 100.0
    relief_mm: float = 5.0
    base_mm: float = 2.0
    decimate: Optional[int] = None       # target triangle count
    edge_strength: float = 0.5
    preset: Optional[str] = None         # tabletop | indoor | outdoor (default indoor)
    near: Optional[float] = None         # metres; override the preset
    far: Optional[float] = None
    fov: Optional[float] = None          # horizontal degrees; overrides EXIF
    depth: Optional[str] = None          # a depth file: skip the network
    depth_kind: str = "metric"           # metric | disparity | normalized
    steps: int = 4
    resolution: int = 1024 * 768
    device: str = "auto"
    precision: str = "auto"
    seed: int = 0
    weights: Optional[str] = None
    poisson_depth: int = 9

    @classmethod
    def from_dict(cls, values: dict) -> "JobOptions":
        """Options from a JSON-like dict; unknown keys are an error, not silently ignored."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise BadInputError(f"unknown job option(s): {', '.join(unknown)}")
        options = cls(**values)
        options.validate()
        return options

    def validate(self) -> None:
        """Raise BadInputError for values no stage could use."""
        from ppd_core.depth import DEPTH_KINDS, MAX_DEPTH_M, PRESETS

        self._check_types()
        if self.method not in ("grid", "poisson"):
            raise BadInputError(f"method {self.method!r} is not one of grid, poisson")
        if self.preset is not None and self.preset not in PRESETS:
            raise BadInputError(f"preset {self.preset!r} is not one of {', '.join(PRESETS)}")
        if self.depth_kind not in DEPTH_KINDS:
            raise BadInputError(f"depth kind {self.depth_kind!r} is not one of {', '.join(DEPTH_KINDS)}")
        if self.decimate is not None and self.decimate < 1:
            raise BadInputError(f"--decimate needs a positive triangle count, got {self.decimate}")
        from ppd_core.preprocess import check_resolution

        if self.steps < 1:
            raise BadInputError(f"steps must be at least 1, got {self.steps}")
        check_resolution(self.resolution)
        if not -(2**63) <= self.seed < 2**64:
            raise BadInputError(f"seed {self.seed} does not fit in 64 bits")
        if not 0.0 <= self.edge_strength <= 1.0:
            raise BadInputError(f"edge strength must be in [0, 1], got {self.edge_strength}")
        near, far = self.depth_range()
        if not (math.isfinite(near) and math.isfinite(far) and 0 <= near < far):
            raise BadInputError(f"depth range near={near}, far={far} is invalid: need 0 <= near < far (metres)")
        if far > MAX_DEPTH_M:
            raise BadInputError(f"far={far} m is beyond the {MAX_DEPTH_M:g} m the pipeline accepts")
        if self.fov is not None and not 1.0 <= self.fov <= 179.0:
            raise BadInputError(f"field of view {self.fov} degrees is outside 1..179")
        from mesh.poisson import MAX_DEPTH, MIN_DEPTH

        if not MIN_DEPTH <= self.poisson_depth <= MAX_DEPTH:
            raise BadInputError(f"Poisson depth must be {MIN_DEPTH}..{MAX_DEPTH}, got {self.poisson_depth}")
        from mesh.solid import check_print_size

        check_print_size(self.width_mm, self.relief_mm, self.base_mm)

    def _check_types(self) -> None:
        """Each field holds its annotated type (options also arrive as JSON from the worker's
        clients): a number for a number, a bool for a bool, never a bool for a number."""
        tests = {"bool": lambda v: isinstance(v, (bool, np.bool_)),
                 "int": lambda v: isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_)),
                 "float": lambda v: isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)),
                 "str": lambda v: isinstance(v, str)}
        names = {"bool": "true or false", "int": "a whole number", "float": "a number", "str": "text"}
        for field in dataclasses.fields(self):
            value, kind = getattr(self, field.name), str(field.type)
            optional = kind.startswith("Optional[")
            kind = kind[len("Optional["):-1] if optional else kind
            if not (value is None and optional) and not tests[kind](value):
                raise BadInputError(f"option {field.name} must be {names[kind]}"
                                    f"{' or null' if optional else ''}, got {value!r}")

    def depth_range(self) -> tuple[float, float]:
        """(near, far) in metres: explicit values over the preset over the default preset."""
        from ppd_core.depth import PRESETS

        near, far = PRESETS[self.preset or DEFAULT_PRESET]
        return (near if self.near is None else self.near, far if self.far is None else self.far)


class ModelCache:
    """Keeps one loaded depth model, reused while weights, device and precision stay the same."""

    def __init__(self) -> None:
        self.key: Optional[tuple] = None
        self.model = None
        self.loads = 0

    def get(self, weights: Optional[str], device: str, precision: str,
            on_progress: Optional[ProgressCallback] = None):
        """The model for these settings, loading it (and dropping the old one) if needed."""
        from ppd_core.inference import DepthModel

        key = (str(weights) if weights else None, device, precision)
        if self.model is None or key != self.key:
            self.model = None
            self.model = DepthModel.load(weights, device=device, precision=precision, on_progress=on_progress)
            self.key = key
            self.loads += 1
        else:
            report(on_progress, "model", 1.0, "model already loaded")
        return self.model


def mesh_grid_size(width: int, height: int, resolution: int) -> tuple[int, int]:
    """(width, height) of the grid that is lifted and meshed: the photo, shrunk to about
    `resolution` pixels when it is larger (the texture stays the full photo)."""
    scale = min(1.0, math.sqrt(resolution / float(width * height)))
    return max(2, int(round(width * scale))), max(2, int(round(height * scale)))


def _depth_on_grid(depth: np.ndarray, size: tuple[int, int], guide: np.ndarray) -> np.ndarray:
    """Depth resampled to `size` without blending across edges, sampled at each grid pixel's
    centre (up or down: a nearest-pixel pick would put the points half a pixel off the surface)."""
    from ppd_core.depth import upsample_depth

    width, height = size
    if depth.shape == (height, width):
        return depth.astype(np.float32)
    return upsample_depth(depth, width, height, guide_rgb=guide)


def metric_depth(photo, options: JobOptions, models: Optional[ModelCache],
                 on_progress: Optional[ProgressCallback]) -> np.ndarray:
    """Metric depth (metres) of the photo: from `options.depth` or from the network."""
    from ppd_core import depth as depth_maps

    if options.depth is not None:
        report(on_progress, "model", 0.0, f"reading depth file {options.depth}")
        values = depth_maps.read_depth_file(options.depth, options.depth_kind)
        height, width = values.shape
        if abs(width / height - photo.width / photo.height) > 0.01 * photo.width / photo.height:
            turned = abs(height / width - photo.width / photo.height) <= 0.01 * photo.width / photo.height
            hint = "; photos are read upright (EXIF orientation applied): turn the depth map too" if turned else ""
            raise BadInputError(f"{options.depth}: depth map is {width}x{height} but the photo "
                                f"{photo.path} is {photo.width}x{photo.height} (another aspect ratio{hint})")
        explicit = options.preset is not None or options.near is not None or options.far is not None
        near, far = options.depth_range() if explicit or options.depth_kind == "normalized" else (None, None)
        metric = depth_maps.depth_to_metric(values, options.depth_kind, near, far)
        if not np.isfinite(metric).any():
            raise BadInputError(
                f"{options.depth}: no usable depth: every value is NaN, infinite, zero, negative or outside "
                f"{depth_maps.MIN_DEPTH_M:g}..{depth_maps.MAX_DEPTH_M:g} m once read as {options.depth_kind} "
                f"depth (check --depth-kind and the file's units)")
        report(on_progress, "diffusion", 1.0, "depth from file")
        return metric
    models = models or ModelCache()
    model = models.get(options.weights, options.device, options.precision, on_progress)
    p = model.predict(photo.rgb, steps=options.steps, resolution=options.resolution, seed=options.seed,
                      on_progress=on_progress)
    near, far = options.depth_range()
    return depth_maps.metric_from_normalized(p, near, far)


def _geometry_for(kind: str, options: JobOptions) -> str:
    """Which geometry an output kind gets: "solid", "points", or "mesh"."""
    if kind == "depth_png":
        return "depth"
    if options.solid or (options.solid is None and kind in SOLID_BY_DEFAULT):
        return "solid"
    if options.points:
        if kind in ("stl", "3mf", "obj", "glb"):
            raise BadInputError(f"--points cannot be written as {kind.upper()}: use --ply or --npz")
        return "points"
    return "mesh"


def _scene_mesh(lifted, intrinsics, options: JobOptions, on_progress):
    """The scene mesh (OpenCV frame, UVs into the photo), decimated if asked."""
    from mesh.decimate import decimate
    from mesh.grid import grid_mesh
    from mesh.poisson import poisson_mesh

    if options.method == "grid":
        report(on_progress, "mesh", 0.1, "grid triangulation")
        surface = grid_mesh(lifted)
    else:
        surface = poisson_mesh(lifted.points, lifted.colors, lifted.normals, depth=options.poisson_depth,
                               on_progress=on_progress)
        surface.uvs = projected_uvs(surface.vertices, intrinsics)
    if len(surface.faces) == 0:
        raise BadInputError("no triangles survived the depth-edge cuts: the depth map has no smooth region to mesh")
    if options.decimate is not None:
        report(on_progress, "mesh", 0.6, f"decimating to {options.decimate} triangles")
        surface = decimate(surface, options.decimate)
    return surface


def projected_uvs(vertices: np.ndarray, intrinsics) -> np.ndarray:
    """Texture coordinates (v up) of camera-frame vertices: where the photo sees them."""
    from ppd_core.camera import project

    pixels = np.nan_to_num(project(vertices, intrinsics))
    u = pixels[:, 0] / intrinsics.width
    v = 1.0 - pixels[:, 1] / intrinsics.height
    return np.clip(np.column_stack([u, v]), 0.0, 1.0).astype(np.float32)


def _solid(metric: np.ndarray, surface, options: JobOptions):
    """The print solid: the depth map's relief, or the Poisson surface closed over a base."""
    from mesh.solid import DEFAULT_CELL_MM, cell_for_face_count, relief_solid, solid_from_mesh

    cell = DEFAULT_CELL_MM
    if options.decimate is not None:
        cell = cell_for_face_count(metric.shape, options.width_mm, options.decimate)
    if options.method == "poisson" and surface is not None:
        return solid_from_mesh(surface, width_mm=options.width_mm, relief_mm=options.relief_mm,
                               base_mm=options.base_mm, cell_mm=cell)
    return relief_solid(metric, width_mm=options.width_mm, relief_mm=options.relief_mm,
                        base_mm=options.base_mm, cell_mm=cell)


def _points(lifted):
    """The lifted cloud as a face-less MeshData (colours, normals, UVs into the photo)."""
    from mesh.data import MeshData
    from mesh.grid import pixel_uvs

    return MeshData(vertices=lifted.points, faces=np.zeros((0, 3), np.int32), colors=lifted.colors,
                    normals=lifted.normals, uvs=pixel_uvs(lifted.pixel_index, lifted.shape))


def _camera_stats(intrinsics) -> dict:
    """The Blender camera of the photo plus its pinhole intrinsics, JSON-ready."""
    from ppd_core.camera import blender_camera

    camera = dataclasses.asdict(blender_camera(intrinsics))
    camera.update(fx=intrinsics.fx, fy=intrinsics.fy, cx=intrinsics.cx, cy=intrinsics.cy,
                  width=intrinsics.width, height=intrinsics.height)
    return camera


def _lift_grid(image, intrinsics, metric: np.ndarray, options: JobOptions, needs_points: bool, on_progress):
    """Depth, photo and camera on the mesh grid, and the lifted points when they are needed."""
    from ppd_core.lift import lift

    report(on_progress, "lift", 0.0, "lifting")
    size = mesh_grid_size(image.width, image.height, options.resolution)
    rgb = image.rgb
    if size != (image.width, image.height):
        import cv2

        rgb = cv2.resize(image.rgb, size, interpolation=cv2.INTER_AREA)
    metric = _depth_on_grid(metric, size, rgb)
    grid_intrinsics = intrinsics.scaled(*size)
    lifted = lift(metric, grid_intrinsics, rgb, edge_strength=options.edge_strength) if needs_points else None
    report(on_progress, "lift", 1.0, "" if lifted is None else f"{len(lifted.points)} points")
    return metric, grid_intrinsics, lifted


def _geometries(wanted: set, metric: np.ndarray, lifted, grid_intrinsics, options: JobOptions, on_progress) -> dict:
    """{"mesh" | "points" | "solid": MeshData} for the geometries the outputs want."""
    report(on_progress, "mesh", 0.0, "meshing")
    geometry: dict[str, Any] = {}
    if "mesh" in wanted or ("solid" in wanted and options.method == "poisson"):
        geometry["mesh"] = _scene_mesh(lifted, grid_intrinsics, options, on_progress)
    if "points" in wanted:
        geometry["points"] = _points(lifted)
    if "solid" in wanted:
        report(on_progress, "mesh", 0.9, "print solid")
        geometry["solid"] = _solid(metric, geometry.get("mesh"), options)
    report(on_progress, "mesh", 1.0, "meshes ready")
    return geometry


def run_photo(photo: Union[str, Path], outputs: dict, options: JobOptions, *,
              models: Optional[ModelCache] = None, on_progress: Optional[ProgressCallback] = None,
              replace: bool = True) -> dict:
    """Run one photo and write `outputs` ({kind: path}, kinds from `OUTPUT_KINDS`).

    Returns JSON-serialisable stats: "outputs" {kind: path}, "vertices", "faces", "bounds",
    "size_mm" or "size_m", "watertight" (None for open meshes and points), "camera" (Blender
    camera and intrinsics of the photo), "details" {kind: the same stats per output} and
    "files" (every file written, e.g. an OBJ's MTL and texture). Nothing is written unless
    every output succeeds; a failure or cancel leaves the folders as they were. Existing
    files are replaced (`replace=False`: refused, even when they appear during the run), but
    never the photo or depth file.
    """
    from mesh.export import CameraInfo
    from ppd_core.camera import intrinsics_for_photo
    from ppd_core.image import load_image
    from ppd_core.outputs import refuse_overwriting_inputs, write_outputs

    outputs = {kind: Path(path) for kind, path in outputs.items()}
    unknown = sorted(set(outputs) - set(OUTPUT_KINDS))
    if unknown or not outputs:
        raise BadInputError(f"outputs must be some of {', '.join(OUTPUT_KINDS)}; got {', '.join(unknown) or 'none'}")
    options.validate()
    refuse_overwriting_inputs(photo, outputs, options)
    wanted = {kind: _geometry_for(kind, options) for kind in outputs}

    report(on_progress, "load", 0.0, f"loading {photo}")
    image = load_image(photo)
    intrinsics = intrinsics_for_photo(image, options.fov)
    report(on_progress, "load", 1.0, f"{image.width}x{image.height}")
    metric = metric_depth(image, options, models, on_progress)
    needs_points = bool(set(wanted.values()) & {"mesh", "points"}) or options.method == "poisson"
    metric, grid_intrinsics, lifted = _lift_grid(image, intrinsics, metric, options, needs_points, on_progress)
    geometry = _geometries(set(wanted.values()), metric, lifted, grid_intrinsics, options, on_progress)

    blender = _camera_stats(intrinsics)
    camera = CameraInfo(
        image_path=str(Path(photo).resolve()), image_size=(image.width, image.height),
        intrinsics=(intrinsics.fx, intrinsics.fy, intrinsics.cx, intrinsics.cy),
        lens_mm=blender["lens_mm"], sensor_width_mm=blender["sensor_width_mm"],
        shift=(blender["shift_x"], blender["shift_y"]), sensor_fit=blender["sensor_fit"])
    details, written = write_outputs(outputs, wanted, geometry, metric, image, camera, on_progress, replace)

    main = next((details[kind] for kind in outputs if kind != "depth_png"), {})
    stats = {key: main[key] for key in ("vertices", "faces", "bounds", "size_mm", "size_m") if key in main}
    stats.setdefault("vertices", 0)
    stats.setdefault("faces", 0)
    stats.setdefault("bounds", None)
    stats.update(outputs={kind: str(path) for kind, path in outputs.items()}, camera=blender,
                 watertight=main.get("watertight"), details=details, files=[str(path) for path in written])
    return stats
