"""A clip through the whole flow: its frames through the video model, one scale and one camera for
all of them, each frame lifted and meshed by the photo pipeline's edge-clean stages.

A clip (`clip.mp4`, or a folder of frames) gets a folder named after it (`clip/`; a folder
`walk/` gets `walk_3d/`) holding, per chosen frame, one file of each output kind
(`clip_000012.ply`) and its 16-bit depth in millimetres (`depth/clip_000012.png`); and for the
clip a coloured depth video (`clip_depth.mp4`) and its record (`clip_clip.json`: frames,
scale, camera). Frame numbers are the clip's own, so a `--frames` run lands beside another.

Each frame's files move in together or not at all (`files.outputs.write_outputs`); the video
and the record each appear whole. With `skip_existing`, frames whose files are all complete
are kept and the rest are written: a run cut short resumes where it stopped, at the window it
was in (`ppd_core.clip_resume`; the network runs through kept frames only when no such state
is saved, since each window is aligned through the ones before). Memory holds one window of
frames and depths whatever the clip's length (`ppd_core.video`).
"""

from __future__ import annotations

import dataclasses
import gc
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np

from ppd_core.clip_resume import read_state, resume_path, state_bytes
from ppd_core.errors import BadInputError
from ppd_core.files.clip_file import Clip, FrameSelection, open_clip
from ppd_core.files.depth_file import depth_png_bytes
from ppd_core.files.output_check import MISSING, output_problem, picture_problem
from ppd_core.files.photo import Photo
from ppd_core.files.staging import check_targets, make_staging, move_into_place
from ppd_core.geometry.camera import camera_record
from ppd_core.options import OUTPUT_KINDS, JobOptions, output_files
from ppd_core.progress import ProgressCallback, report
from ppd_core.video import WINDOW, WindowState, window_of

FRAME_DIGITS = 6
# A clip's run reports stages "network", "scale", "frames" and "video", each with the fraction of the whole clip.
RECORD_FORMAT = "ppd-clip-1"
FOLDER_CLIP_SUFFIX = "_3d"  # a folder of frames `walk/` gets `walk_3d/`, not a folder inside itself


@dataclass
class ClipPlan:
    """Where a clip's outputs go and which frames are already done."""

    clip: Clip
    selection: FrameSelection
    kinds: list[str]
    folder: Path
    frames: list[int]                                  # the chosen frame numbers
    kept: set = field(default_factory=set)             # frames whose files are all complete (resumed)
    broken: dict = field(default_factory=dict)         # {frame: [files cut short or unreadable]}
    skip_existing: bool = False                        # a resume: it may start at a saved window

    @property
    def resume_path(self) -> Path:
        return resume_path(self.folder, self.clip.name)

    def outputs(self, index: int) -> dict[str, Path]:
        """{kind: path} of one frame's outputs."""
        stem = f"{self.clip.name}_{index:0{FRAME_DIGITS}d}"
        return {kind: self.folder / (stem + OUTPUT_KINDS[kind].suffix) for kind in self.kinds}

    def depth_path(self, index: int) -> Path:
        """The frame's 16-bit depth (millimetres, 0: none) in the depth sequence."""
        return self.folder / "depth" / f"{self.clip.name}_{index:0{FRAME_DIGITS}d}.png"

    def frame_files(self, index: int) -> list[Path]:
        return [f for kind, path in self.outputs(index).items() for f in output_files(kind, path)] + [
            self.depth_path(index)]

    @property
    def video_path(self) -> Path:
        return self.folder / f"{self.clip.name}_depth.mp4"

    @property
    def record_path(self) -> Path:
        return self.folder / f"{self.clip.name}_clip.json"

    @property
    def stage_paths(self) -> list[Path]:
        """The USD stage that plays the frames' USD files, and its clip manifest (none without --usd)."""
        if "usd" not in self.kinds:
            return []
        return [self.folder / f"{self.clip.name}.usda", self.folder / f"{self.clip.name}_manifest.usda"]

    @property
    def to_write(self) -> list[int]:
        return [index for index in self.frames if index not in self.kept]


def clip_folder(clip: Clip, output: Optional[Path]) -> Path:
    """The clip's output folder: named after it, beside it or in `output`."""
    name = clip.name + (FOLDER_CLIP_SUFFIX if clip.frame_files else "")
    return (Path(output) if output is not None else clip.path.parent) / name


def _frame_problems(plan: ClipPlan, index: int) -> dict[Path, str]:
    """{file: what is wrong} of one frame's files (MISSING for those not there)."""
    problems = {}
    for kind, path in plan.outputs(index).items():
        problem = output_problem(kind, path)
        if problem is not None:
            problems[path] = problem
    depth = plan.depth_path(index)
    problem = MISSING if not depth.exists() else picture_problem(depth)
    if problem is not None:
        problems[depth] = problem
    return problems


def plan_clip(path: Path, kinds: list[str], options: JobOptions, *, output: Optional[Path] = None,
              replace: bool = False, skip_existing: bool = False) -> ClipPlan:
    """Open and check the clip, and check every file it will write against the one overwrite
    policy (`check_targets`: never an input, existing files only with `replace`); with
    `skip_existing`, complete frames are kept and broken files are written over."""
    options.validate()
    for kind in kinds:
        options.geometry_for(kind, kinds)  # refuses a point cloud in a mesh-only format before any work
    selection = FrameSelection.parse(options.frames, options.stride)
    clip = open_clip(path, selection)
    folder = clip_folder(clip, output)
    plan = ClipPlan(clip, selection, list(kinds), folder, list(selection.indices(clip.frame_count)),
                    skip_existing=skip_existing)
    inputs = {**options.input_files(clip.path), **{file: "a frame of the clip" for file in clip.frame_files}}
    if skip_existing:
        record = read_record(plan.record_path)
        if record is not None and record.get("options") != depth_options(options):
            raise BadInputError(f"{plan.record_path}: the frames there were made with other options; "
                                "run with the same options to resume, or with --force to redo them")
        for index in plan.frames:
            problems = _frame_problems(plan, index)
            if not problems:
                plan.kept.add(index)
            plan.broken[index] = [file for file, problem in problems.items() if problem != MISSING]
    if folder.exists() and not folder.is_dir():
        raise BadInputError(f"{folder}: the clip's output folder is a file")
    if folder.is_dir():  # a new folder holds nothing to overwrite
        targets = [file for index in plan.to_write for file in plan.frame_files(index)]
        check_targets(targets + [plan.video_path, plan.record_path, *plan.stage_paths], inputs,
                      replace or skip_existing)
    return plan


@dataclass
class ClipRun:
    """What a clip's run needs besides its plan: the model (`VideoModel`), options and callbacks."""

    plan: ClipPlan
    options: JobOptions
    model: object
    replace: bool = False
    on_progress: Optional[ProgressCallback] = None
    on_frame: Optional[Callable[[int, dict], None]] = None  # (frame number, its stats) as each is written
    whole: float = 0.0                                       # the network's fraction of the clip so far


def _record(run: ClipRun, scale, frames_written: int, seconds: float) -> dict:
    """The clip's record: what it is, its frames and outputs, its one scale and camera, its depth video's range."""
    plan, model = run.plan, run.model
    clip = plan.clip
    near, far = (float(value) for value in scale.metric(np.array([[0.0, 1.0]], np.float32))[0][0])
    return {
        "format": RECORD_FORMAT, "clip": str(clip.path.resolve()), "size": [clip.width, clip.height],
        "fps": clip.fps / plan.selection.stride, "frames": plan.frames, "frame_digits": FRAME_DIGITS,
        "outputs": {kind: OUTPUT_KINDS[kind].suffix for kind in plan.kinds}, "depth_folder": "depth",
        "video": plan.video_path.name, "camera": dataclasses.asdict(camera_record(scale.intrinsics)),
        "depth": {**scale.describe(), "model": model.files.describe() if model.files else "",
                  "precision": model.precision_choice.describe(), "preview_range_m": [near, far]},
        "written": frames_written, "kept": len(plan.kept), "seconds": round(seconds, 3),
        "options": depth_options(run.options),
    }


def read_record(path: Path) -> Optional[dict]:
    """A clip's record, or None when it is missing or not one."""
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("format") == RECORD_FORMAT else None


def depth_options(options: JobOptions) -> dict:
    """The options a resumed clip must share with the run that wrote its kept frames (all but the
    selection), JSON-ready (a path as its text)."""
    return {name: str(value) if isinstance(value, Path) else value
            for name, value in dataclasses.asdict(options).items() if name not in ("frames", "stride")}


def _write_files(files: dict[Path, bytes]) -> None:
    """Files of one folder, moved in together once all are written."""
    staging = make_staging(next(iter(files)).parent)
    try:
        for path, data in files.items():
            (staging / path.name).write_bytes(data)
        move_into_place([(staging / path.name, path) for path in files], replace=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_json(path: Path, record: dict) -> None:
    _write_files({path: json.dumps(record).encode()})


def _write_usd_stage(plan: ClipPlan) -> None:
    """The stage that plays every frame's USD file in turn (time code = frame number + 1, as Blender
    counts a movie's frames), and its manifest."""
    from mesh.usd import clip_stage_files

    frames = [(index + 1, f"./{plan.outputs(index)['usd'].name}") for index in plan.frames]
    stage, manifest = plan.stage_paths
    data = clip_stage_files(frames, plan.outputs(plan.frames[0])["usd"], plan.clip.fps, manifest.name)
    _write_files(dict(zip(plan.stage_paths, data)))


def _frames_with_depth(run: ClipRun, resume: Optional[WindowState] = None,
                       on_window: Optional[Callable[[WindowState], None]] = None,
                       ) -> Iterator[tuple[int, np.ndarray, Optional[np.ndarray]]]:
    """(frame number, RGB, p) of every chosen frame, the network streaming one window at a time
    (p None for the frames of the windows `resume` skips)."""
    plan, options = run.plan, run.options
    decoded: list[tuple[int, np.ndarray]] = []  # frames read but not yet handed back: one window at most

    def frames() -> Iterator[np.ndarray]:
        for index, rgb in plan.clip.frames(plan.selection):
            decoded.append((index, rgb))
            yield rgb

    def progress(stage: str, fraction: float, message: str) -> None:
        run.whole = fraction
        report(run.on_progress, "network", fraction, message)

    for p in run.model.depths(frames(), steps=options.steps, seed=options.seed, frame_count=len(plan.frames),
                              progress=progress, resume=resume, on_window=on_window):
        index, rgb = decoded.pop(0)
        yield index, rgb, p


def _write_frame(run: ClipRun, scale, index: int, rgb: np.ndarray, p: np.ndarray) -> dict:
    """One frame's outputs and depth PNG, all or none."""
    from ppd_core.pipeline import PhotoJob, mesh_and_write, to_mesh_grid  # OpenCV, the meshers: once a frame is due
    from ppd_core.photo_depth import PhotoDepth

    plan, model = run.plan, run.model
    metric, clipped = scale.metric(p)
    depth = PhotoDepth(metric, scale.intrinsics, scale.scale_source, scale.camera_source,
                       model=model.files.describe() if model.files else "", fit=scale.fit, clipped_px=clipped,
                       precision=model.precision_choice.describe(), scale_guessed=scale.scale_guessed,
                       warnings=list(scale.warnings))

    def progress(stage: str, fraction: float, message: str) -> None:
        report(run.on_progress, "frames", run.whole, f"frame {index}: {message}")

    job = PhotoJob(plan.clip.path, plan.outputs(index), run.options, progress,
                   image=Photo(rgb=rgb, path=plan.clip.path), depth_info=depth)
    to_mesh_grid(job)
    plan.depth_path(index).parent.mkdir(exist_ok=True)
    return mesh_and_write(job, replace=run.replace, broken=plan.broken.get(index, ()),
                          info={"clip": {"frame": index, "keyframes": list(scale.keyframes)}},
                          extra_files={plan.depth_path(index): depth_png_bytes(metric)[0]})


def _resume_key(run: ClipRun) -> dict:
    """What a run must share with the one that saved a resume state: its depth is then the same."""
    plan, model = run.plan, run.model
    return {"clip": str(plan.clip.path.resolve()), "frames": plan.frames, "options": depth_options(run.options),
            "model": model.files.describe() if model.files else "", "precision": model.precision}


def _resume_point(run: ClipRun, key: dict) -> Optional[tuple[WindowState, object]]:
    """(the saved window state, the clip's scale) when this run can start at that window: a
    resume of the same run whose frames before that window are all complete; else None."""
    plan = run.plan
    if not plan.skip_existing or not plan.to_write:
        return None
    saved = read_state(plan.resume_path, key)
    first_missing = min(plan.frames.index(index) for index in plan.to_write)
    if saved is None or window_of(first_missing) < saved[0].window:
        return None
    return saved


def _scale_and_frames(run: ClipRun, record: Optional[dict]) -> Iterator[tuple]:
    """(the clip's scale, frame number, RGB, p) of each frame to write; the scale comes from the
    first window, before any frame is handed on, or from the resume state. Nothing runs when every
    frame is kept and the record is whole; with only the record missing, the first window alone runs."""
    from ppd_core.clip_scale import clip_scale

    plan, options, model = run.plan, run.options, run.model
    if not plan.to_write and record is not None:
        return
    key = _resume_key(run)
    resumed = _resume_point(run, key) if record is not None else None
    scale = None
    if resumed is not None:
        scale = resumed[1]
        report(run.on_progress, "network", 0.0, f"resuming at window {resumed[0].window + 1}: the frames "
               "before it are complete")
        yield scale, None, None, None

    def save_state(state: WindowState) -> None:
        _write_files({plan.resume_path: state_bytes(state, scale, key)})

    geometry_of = None if model.moge2 is None else (lambda rgb: model.geometry(rgb, options.fov, run.on_progress))
    first: list = []
    for frame in _frames_with_depth(run, resumed[0] if resumed else None, save_state):
        if frame[2] is None:  # computed by the run that was cut short
            continue
        if scale is None:
            first.append(frame)
            if len(first) < min(WINDOW, len(plan.frames)):
                continue
            report(run.on_progress, "scale", run.whole, "the clip's scale and camera (once, from its first window)")
            scale = clip_scale(first, options, geometry_of)
            due, first = first, []
            yield scale, None, None, None
        else:
            due = [frame]
        if not plan.to_write:
            return
        for index, rgb, p in due:
            if index not in plan.kept:
                yield scale, index, rgb, p


def run_clip(run: ClipRun) -> dict:
    """Run the plan: the clip's one scale and camera from its first window, then each frame written
    as its window finishes, then the depth video and the record. Returns the record."""
    from ppd_core.files.clip_video import video_problem, write_preview_video

    plan = run.plan
    started = time.perf_counter()
    plan.folder.mkdir(parents=True, exist_ok=True)
    record = read_record(plan.record_path)
    written = 0
    for scale, index, rgb, p in _scale_and_frames(run, record):
        if index is None:  # the scale is known: the record says so before the first frame is written
            record = _record(run, scale, 0, 0.0)
            _write_json(plan.record_path, record)
            continue
        stats = _write_frame(run, scale, index, rgb, p)
        written += 1
        # A trimesh mesh and its colours refer to each other: only the cyclic collector frees them, and it
        # runs by objects made, not bytes, so a long clip's memory crept up (70 MB in 300 frames). They are
        # young yet: collecting the two young generations frees them in microseconds (a full pass: 0.3 s).
        gc.collect(1)
        if run.on_frame is not None:
            run.on_frame(index, stats)
    near, far = record["depth"]["preview_range_m"]
    if written or video_problem(plan.video_path, len(plan.frames)) is not None:
        report(run.on_progress, "video", run.whole, "the depth video")
        write_preview_video((plan.depth_path(index) for index in plan.frames), plan.video_path, record["fps"],
                            near, far)
    if plan.stage_paths:
        report(run.on_progress, "video", run.whole, "the USD stage of the frames")
        _write_usd_stage(plan)
        record["usd_stage"] = plan.stage_paths[0].name
    record.update(written=written, kept=len(plan.kept), seconds=round(time.perf_counter() - started, 3))
    _write_json(plan.record_path, record)
    plan.resume_path.unlink(missing_ok=True)
    report(run.on_progress, "video", 1.0, f"{written} frames written, {len(plan.kept)} kept")
    return record
