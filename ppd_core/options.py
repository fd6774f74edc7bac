"""Every job option and every output kind, each defined once.

`JobOptions` is the table of options: one field per option, its default, and in the field's
metadata its help text, command-line flag, group, unit and limits. The command's parser
(`ppd_core.mesh`), the worker's JSON checks (`JobOptions.from_dict`) and the Blender add-on's
properties (defaults and limits) are all built from it, so they cannot drift apart.
`OUTPUT_KINDS` is the table of output kinds (flag, file suffix, files written, whether it is
a print solid by default, whether it is a picture of the result).

Standard library only (with `mesh.limits`, itself standard library only): the add-on
imports this module inside Blender, whose Python has none of the pipeline's dependencies.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Union

from mesh.limits import POISSON_DEPTHS, PRINT_MM
from mesh.print_options import FILAMENT_COUNTS, FILAMENTS_PATTERN, HANGERS, shape_problem
from ppd_core.errors import BadInputError

DEFAULT_RESOLUTION = 1024 * 768
RESOLUTIONS = (16 * 16, 4 * DEFAULT_RESOLUTION)
"""Working areas (pixels) the network accepts: up to four times the trained 1024x768. Beyond
it the encoder's attention alone needs tens of GB, and the network never saw that many pixels."""

DEPTH_M = (1e-6, 1e9)
"""Metric depths (metres) outside this range count as no depth: a renderer's background
(Blender writes 1e10 where no surface was hit), or values no camera sees, whose geometry
would overflow float32."""

FOV_DEG = (1.0, 179.0)
DEFAULT_HFOV_DEG = 60.0
"""Horizontal field of view assumed when neither the caller nor EXIF says otherwise.

60 degrees sits between a phone's main camera (about 65-70 degrees) and a "normal" 50 mm
lens on full frame (about 40 degrees), so the shape error of a wrong guess stays moderate.
"""
PRESETS: dict[str, tuple[float, float]] = {
    "tabletop": (0.3, 1.5),
    "indoor": (0.8, 10.0),
    "outdoor": (3.0, 200.0),
}
"""Scene presets: (near, far) in metres of the 2nd..98th percentile depth range."""
DEFAULT_PRESET = "indoor"
DEPTH_KINDS = ("metric", "disparity", "normalized")
METHODS = ("grid", "poisson")
SEMANTICS = ("auto", "moge2", "da2")
SCALE_SOURCES = ("auto", "moge2", "range")
MOGE_PASSES = ("shared", "official")
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp", ".gif", ".heic", ".heif", ".avif")
"""Photo file endings (any case) that folders and globs are searched for and the add-on's file
browser shows; a file named directly is read whatever its name. HEIC/HEIF/AVIF need pillow-heif."""
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".avi", ".webm", ".mpg", ".mpeg", ".wmv", ".mts", ".m2ts", ".ts")
"""Video file endings (any case): such a file is a clip, whose frames the video model runs on."""
STRIDES = (1, 1000)


@dataclass(frozen=True)
class OptionSpec:
    """How one option is shown and checked; lives in its JobOptions field's metadata."""

    help: str
    group: str
    label: str = ""                       # words for messages and the add-on ("edge strength")
    flag: str = ""                        # command-line flag; "" derives "--name-with-dashes"
    unit: str = ""                        # "mm", "m", "degrees"...
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    choices: tuple = ()
    pattern: str = ""                     # a regular expression text values must match
    metavar: Optional[str] = None


def option(default: Any, help: str, group: str, **spec: Any) -> Any:
    """A JobOptions field: its default plus the OptionSpec that describes it."""
    return field(default=default, metadata={"spec": OptionSpec(help=help, group=group, **spec)})


GEOMETRY, DEPTH, MODEL, CLIP = "geometry", "depth and camera", "model", "clips (video)"
PRINT = "print solid"


@dataclass
class JobOptions:
    """Everything one job can ask for (the command's options, the worker job's "options")."""

    method: str = option("grid", "how the scene is meshed: the pixel grid cut at depth edges, or Poisson",
                         GEOMETRY, choices=METHODS)
    points: bool = option(False, "a point cloud instead of a mesh (PLY, NPZ)", GEOMETRY)
    solid: Optional[bool] = option(None, "a watertight print solid (default for STL and 3MF)", GEOMETRY)
    width_mm: float = option(100.0, "print solid width", GEOMETRY, label="print width", unit="mm",
                             minimum=PRINT_MM[0], maximum=PRINT_MM[1])
    relief_mm: float = option(5.0, "height from the farthest to the nearest surface of a print solid",
                              GEOMETRY, label="relief height", unit="mm", minimum=0.0, maximum=PRINT_MM[1])
    base_mm: float = option(2.0, "thickness of the print solid's flat base", GEOMETRY, label="base thickness",
                            unit="mm", minimum=PRINT_MM[0], maximum=PRINT_MM[1])
    frame_mm: float = option(0.0, "a frame this wide around the picture, within the print width (0: none)", PRINT,
                             label="frame width", unit="mm", minimum=0.0, maximum=PRINT_MM[1])
    frame_height_mm: Optional[float] = option(None, "height of the frame's top above the base (default: the relief "
                                              "height)", PRINT, label="frame height", unit="mm", minimum=0.0,
                                              maximum=PRINT_MM[1])
    corner_mm: float = option(0.0, "radius of the print's rounded corners (0: square)", PRINT, label="corner radius",
                              unit="mm", minimum=0.0, maximum=PRINT_MM[1])
    hanger: str = option("none", "a hole through the print near its top edge for a nail or string, or a keyhole "
                         "slot for a screw head in its back (needs a 5 mm base)", PRINT, choices=HANGERS)
    curve_radius_mm: Optional[float] = option(None, "bend the print into a standing curved panel, its back on a "
                                              "cylinder of this radius (at most a half cylinder)", PRINT,
                                              label="curve radius", unit="mm", minimum=PRINT_MM[0],
                                              maximum=PRINT_MM[1])
    smooth_mm: float = option(0.0, "smooth the relief over about this distance, keeping its depth steps (0: none)",
                              PRINT, label="smoothing", unit="mm", minimum=0.0, maximum=PRINT_MM[1])
    silhouette: bool = option(False, "cut the print along the photo's region with depth (sky and other pixels "
                              "without depth cut away) instead of its rectangle", PRINT)
    max_mb: Optional[float] = option(None, "the print file's budget: triangles merged where the relief is flat, its "
                                     "depth edges kept (counted as binary STL, 1 MB = 10^6 bytes)", PRINT,
                                     label="file budget", unit="MB", minimum=0.001, maximum=1e6)
    filaments: Optional[str] = option(None, "a colour relief for a multi-material printer, written as a painted "
                                      "3MF: the photo's colours as this many filaments "
                                      f"({FILAMENT_COUNTS[0]}..{FILAMENT_COUNTS[1]}), or as your own in slot order, "
                                      "by name or #rrggbb (white,black,red,#2060c0)", PRINT,
                                      pattern=FILAMENTS_PATTERN, metavar="N|COLOURS")
    decimate: Optional[int] = option(None, "target triangle count (a print solid: merged where it is flat, its "
                                     "depth edges kept)", GEOMETRY, label="decimation target", minimum=1, metavar="N")
    edge_strength: float = option(0.5, "how readily depth edges cut the surface (0: never, 1: at every faint "
                                  "edge)", GEOMETRY, label="edge strength", minimum=0.0, maximum=1.0)
    poisson_depth: int = option(9, "Poisson octree depth (each step up is ~4x the time)", GEOMETRY,
                                label="Poisson depth", minimum=POISSON_DEPTHS[0], maximum=POISSON_DEPTHS[1])
    preset: Optional[str] = option(None, f"scene depth range (default {DEFAULT_PRESET})", DEPTH,
                                   choices=tuple(PRESETS))
    near: Optional[float] = option(None, "distance of the nearest surfaces (2nd percentile)", DEPTH, unit="m",
                                   minimum=0.0, maximum=DEPTH_M[1])
    far: Optional[float] = option(None, "distance of the farthest surfaces (98th percentile)", DEPTH, unit="m",
                                  minimum=0.0, maximum=DEPTH_M[1])
    scale_from: str = option("auto", "where metric scale comes from: MoGe-2, or the depth range (--preset, --near, "
                             "--far); auto: a given range, else MoGe-2 when its weights are there, else the "
                             f"{DEFAULT_PRESET} range", DEPTH, label="scale source", choices=SCALE_SOURCES)
    align_to: Optional[str] = option(None, "fit the relative depth to this metric depth map (LiDAR, a scan, another "
                                     "model; any resolution, 0 or NaN = unknown)", DEPTH, label="reference depth file",
                                     metavar="FILE")
    fov: Optional[float] = option(None, "horizontal field of view (default: EXIF, else MoGe-2's, else "
                                  f"{DEFAULT_HFOV_DEG:g})", DEPTH, label="field of view", unit="degrees",
                                  minimum=FOV_DEG[0], maximum=FOV_DEG[1])
    depth_file: Optional[str] = option(None, "use this depth map (or an --npz result, to re-mesh it) instead of the "
                                       "network", DEPTH, flag="--depth",
                                       label="depth file", metavar="FILE")
    depth_kind: str = option("metric", "what the depth file holds", DEPTH, label="depth kind", choices=DEPTH_KINDS)
    steps: int = option(4, "diffusion sampling steps (the sampler has 1000 timesteps)", MODEL, minimum=1,
                        maximum=1000)
    resolution: int = option(DEFAULT_RESOLUTION, "working area of the network in pixels", MODEL,
                             unit="pixels", minimum=RESOLUTIONS[0], maximum=RESOLUTIONS[1])
    semantics: str = option("auto", "the DiT's semantic encoder: MoGe-2 or Depth Anything V2; auto: MoGe-2 when "
                            "ppd_moge.pth and moge2.pt are there", MODEL, choices=SEMANTICS)
    moge_pass: str = option("shared", "MoGe-2 geometry from the semantic encoder's own pass (shared, MoGe-2 "
                            "semantics only) or from a second pass at the official 3600 tokens", MODEL,
                            label="MoGe-2 pass", choices=MOGE_PASSES)
    device: str = option("auto", "auto, cpu, cuda (or cuda:N), mps", MODEL, pattern=r"auto|cpu|mps|cuda(:\d+)?")
    precision: str = option("auto", "number format of the network", MODEL, choices=PRECISIONS)
    seed: int = option(0, "random seed of the diffusion sampler", MODEL, minimum=-(2**63), maximum=2**64 - 1)
    weights: Optional[str] = option(None, "folder with the weight files: ppd_moge.pth + moge2.pt, or ppd.pth + "
                                    "depth_anything_v2_vitl.pth (+ moge2.pt); default: $PPD_WEIGHTS, else files "
                                    "added with `ppd-weights add`, the Hugging Face cache, a download", MODEL,
                                    metavar="DIR")
    video: bool = option(False, "treat each folder given as one clip whose images, in name order, are its frames "
                         f"(a video file, {', '.join(VIDEO_SUFFIXES[:3])}..., always is one)", CLIP)
    frames: Optional[str] = option(None, "a clip's frames A up to B (not B itself), counted from 0; A: or :B leave "
                                   "one end open", CLIP, label="frames", pattern=r"\d*:\d*", metavar="A:B")
    stride: int = option(1, "use every Nth frame of a clip", CLIP, minimum=STRIDES[0], maximum=STRIDES[1], metavar="N")

    @classmethod
    def from_dict(cls, values: dict) -> JobOptions:
        """Options from a JSON-like dict; unknown keys are an error, not silently ignored."""
        unknown = sorted(set(values) - set(OPTIONS))
        if unknown:
            raise BadInputError(f"unknown job option(s): {', '.join(unknown)}")
        options = cls(**values)
        options.validate()
        return options

    def validate(self) -> None:
        """Raise BadInputError for a value no stage could use, or options that contradict each other."""
        for name in OPTIONS:
            check_option(name, getattr(self, name))
        start, _, stop = (self.frames or ":").partition(":")
        if start and stop and int(stop) <= int(start):
            raise BadInputError(f"--frames {self.frames} selects no frame: the end must come after the start")
        near, far = self.depth_range()
        if not near < far:
            raise BadInputError(f"depth range near={near}, far={far} is invalid: need 0 <= near < far (metres)")
        if self.align_to is not None and self.depth_file is not None and self.depth_kind != "normalized":
            raise BadInputError("--align-to scales relative depth: the network's, or a --depth file of "
                                "--depth-kind normalized")
        if str(self.depth_file).lower().endswith(".npz") and (self.range_given() or self.scale_from != "auto"):
            raise BadInputError("a saved result (--depth FILE.npz) keeps its own scale: it cannot be combined "
                                "with --preset, --near, --far or --scale-from")
        problem = shape_problem(width_mm=self.width_mm, base_mm=self.base_mm, frame_mm=self.frame_mm,
                                corner_mm=self.corner_mm, hanger=self.hanger, curve_radius_mm=self.curve_radius_mm)
        if problem:
            raise BadInputError(problem)
        if self.scale_from == "moge2" and (self.depth_file is not None or self.align_to is not None
                                           or self.range_given()):
            raise BadInputError("--scale-from moge2 takes the scale from the network's MoGe-2: it cannot be combined "
                                "with --depth, --align-to, --preset, --near or --far")

    def input_files(self, photo: Union[str, Path]) -> dict[Path, str]:
        """The files a job with these options reads, which no output may replace: {path: what it is}."""
        inputs = {Path(photo): "the photo itself"}
        if self.depth_file is not None:
            inputs[Path(self.depth_file)] = "the depth file"
        if self.align_to is not None:
            inputs[Path(self.align_to)] = "the metric reference (--align-to)"
        return inputs

    def range_given(self) -> bool:
        """True when the options name a depth range (a preset, near or far)."""
        return self.preset is not None or self.near is not None or self.far is not None

    def depth_range(self) -> tuple[float, float]:
        """(near, far) in metres: explicit values over the preset over the default preset."""
        near, far = PRESETS[self.preset or DEFAULT_PRESET]
        return (near if self.near is None else self.near, far if self.far is None else self.far)

    def geometry_for(self, kind: str, others: Iterable[str] = ()) -> str:
        """What an output kind gets: "depth" (a depth map), "solid", "points" or "mesh".

        A picture (the preview) shows what the first of the job's `others` that holds a shape
        gets, else the depth map; alone, the mesh, points or solid the options ask for."""
        output = OUTPUT_KINDS[kind]
        if output.picture:
            shown = [other for other in others if not OUTPUT_KINDS[other].picture]
            shown.sort(key=lambda other: OUTPUT_KINDS[other].depth_map)  # shapes first, in their order
            if shown:
                return self.geometry_for(shown[0])
        if output.depth_map:
            return "depth"
        if self.solid or (self.solid is None and output.solid_by_default):
            return "solid"
        if self.points:
            if not output.holds_points:
                points = ", ".join(k.flag for k in OUTPUT_KINDS.values() if k.holds_points)
                raise BadInputError(f"--points cannot be written as {kind.upper()}: use {points}")
            return "points"
        return "mesh"


@dataclass(frozen=True)
class Option:
    """One row of the options table: a JobOptions field with its type and spec."""

    name: str
    kind: type                            # bool, int, float or str
    optional: bool                        # None is allowed (and means "not given")
    default: Any
    spec: OptionSpec

    @property
    def flag(self) -> str:
        return self.spec.flag or "--" + self.name.replace("_", "-")

    @property
    def label(self) -> str:
        return self.spec.label or self.name.replace("_", " ")


def _options_table() -> dict[str, Option]:
    hints = typing.get_type_hints(JobOptions)
    table = {}
    for item in dataclasses.fields(JobOptions):
        kind, optional = hints[item.name], False
        if typing.get_origin(kind) is Union:
            kind, optional = next(a for a in typing.get_args(kind) if a is not type(None)), True
        table[item.name] = Option(item.name, kind, optional, item.default, item.metadata["spec"])
    return table


OPTIONS: dict[str, Option] = _options_table()
"""The options table, by JobOptions field name, in the order of the fields."""

_KIND_WORDS = {bool: "true or false", int: "a whole number", float: "a number", str: "text"}


def _is_kind(value: Any, kind: type) -> bool:
    """True when `value` is a `kind` (numpy numbers too), and never a bool for a number."""
    is_bool = type(value).__name__ in ("bool", "bool_")
    if kind is bool:
        return is_bool
    if kind is int:
        return isinstance(value, numbers.Integral) and not is_bool
    if kind is float:
        return isinstance(value, numbers.Real) and not is_bool
    return isinstance(value, kind)


def _range_text(row: Option) -> str:
    def number(value: float) -> str:
        return str(int(value)) if row.kind is int else f"{value:g}"

    low, high = row.spec.minimum, row.spec.maximum
    unit = f" {row.spec.unit}" if row.spec.unit else ""
    if high is None:
        return f"at least {number(low)}{unit}"
    return f"{number(low)}..{number(high)}{unit}"


def check_option(name: str, value: Any) -> None:
    """Raise BadInputError unless `value` suits option `name`: its type, range, choices, pattern.

    Library functions that take an option's value (the network's steps and resolution, the
    edge strength) call this too, so an option is checked by its one definition everywhere.
    """
    row = OPTIONS[name]
    if value is None and row.optional:
        return
    if not _is_kind(value, row.kind):
        raise BadInputError(f"option {name} must be {_KIND_WORDS[row.kind]}"
                            f"{' or null' if row.optional else ''}, got {value!r}")
    spec = row.spec
    if spec.choices and value not in spec.choices:
        raise BadInputError(f"{row.label} {value!r} is not one of {', '.join(map(str, spec.choices))}")
    if spec.pattern and not re.fullmatch(spec.pattern, value):
        raise BadInputError(f"{row.label} {value!r} is not valid: use {spec.help}")
    if spec.minimum is not None or spec.maximum is not None:
        low = -math.inf if spec.minimum is None else spec.minimum
        high = math.inf if spec.maximum is None else spec.maximum
        if not (math.isfinite(value) and low <= value <= high):
            raise BadInputError(f"{row.label} must be {_range_text(row)}, got {value}")


@dataclass(frozen=True)
class OutputKind:
    """One kind of output file."""

    name: str
    suffix: str                           # appended to the photo's stem for the default name
    help: str
    solid_by_default: bool = False        # a print solid unless the options say otherwise
    holds_points: bool = False            # can hold a point cloud
    depth_map: bool = False               # holds the depth map, not a mesh
    z_up_mm: bool = False                 # written z up in millimetres (a scene is turned), as slicers read it
    picture: bool = False                 # a picture of the result for looking at, not a result itself

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def extension(self) -> str:
        return "." + self.suffix.rsplit(".", 1)[1]


OUTPUT_KINDS: dict[str, OutputKind] = {kind.name: kind for kind in (
    OutputKind("stl", ".stl", "binary STL, z up, millimetres", solid_by_default=True, z_up_mm=True),
    OutputKind("3mf", ".3mf", "3MF in millimetres, z up", solid_by_default=True, z_up_mm=True),
    OutputKind("ply", ".ply", "binary PLY with colours and normals (metres, y up)", holds_points=True),
    OutputKind("obj", ".obj", "OBJ + MTL + the photo as its texture (metres, y up)"),
    OutputKind("glb", ".glb", "binary glTF with the photo as its texture (metres, y up)"),
    OutputKind("npz", ".npz", "arrays and camera for Blender and Python (camera frame)", holds_points=True),
    OutputKind("depth_png", "_depth.png", "16-bit depth in millimetres + a colour preview", depth_map=True),
    OutputKind("depth_exr", "_depth.exr", "float32 depth in metres (no depth: inf) + its validity mask (PNG) and "
               "camera (JSON), as MoGe writes", depth_map=True),
    OutputKind("usd", ".usdc", "binary USD with colours and UVs (metres, y up); a clip's frames also get a stage "
               "that plays them as one object (Blender imports it)", holds_points=True),
    OutputKind("preview", "_preview.png", "a small PNG of the result seen from an oblique angle, to check a batch "
               "at a glance", holds_points=True, picture=True),
)}


DEFAULT_OUTPUTS = ("glb",)
"""What the command writes when no output is named: a textured mesh that every 3D viewer opens."""


def side_stem(path: Path) -> str:
    """An OBJ's stem with blanks as underscores, for the MTL and texture it names inside:
    MeshLab and other readers end a file name in `mtllib` / `map_Kd` at the first blank."""
    return re.sub(r"\s", "_", path.stem)


def output_files(kind: str, path: Union[str, Path]) -> list[Path]:
    """Every file an output of `kind` at `path` consists of, the named one first (OBJ: the
    OBJ, its MTL and texture; depth_png: the 16-bit depth and its colour preview; depth_exr:
    the float depth, its validity mask and its camera)."""
    path = Path(path)
    if kind == "obj":
        return [path, path.with_name(side_stem(path) + ".mtl"), path.with_name(side_stem(path) + "_texture.png")]
    if kind == "depth_png":
        return [path, path.with_name(path.stem + "_preview.png")]
    if kind == "depth_exr":
        return [path, path.with_name(path.stem + "_mask.png"), path.with_name(path.stem + "_camera.json")]
    return [path]
