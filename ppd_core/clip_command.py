"""`ppd-mesh clip.mp4 --ply` (and `ppd-mesh frames/ --video --ply`): the command's side of a clip.

Checks every clip before the model loads, says what the run will cost before it starts (a
released-size frame takes minutes on a CPU), shows the clip's progress with the time left,
and ends with the clip's summary. Exit codes as for photos: 0 every clip done, 1 a clip
failed (one line; the frames it wrote stay and `--skip-existing` resumes it), 2 usage.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from ppd_core.errors import PPDError
from ppd_core.options import VIDEO_SUFFIXES, JobOptions
from ppd_core.progress import duration_words
from ppd_core.progress_display import Progress, say
from ppd_core.summary import depth_line, failure_line, precision_lines, warning_lines

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
UNSUPPORTED = {"ray": "--ray", "subprocess": "--subprocess", "recursive": "--recursive", "manifest": "--manifest"}


def is_video_file(path) -> bool:
    """True for a file whose name ends like a video (`VIDEO_SUFFIXES`, any case)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def is_clip_run(arguments: list[str], options: JobOptions) -> bool:
    """Whether the command's arguments name clips: `--video`, or a video file among them."""
    return options.video or any(is_video_file(argument) for argument in arguments)


def usage_error(args: argparse.Namespace, options: JobOptions) -> Optional[str]:
    """What a clip run cannot do, or None."""
    given = [flag for name, flag in UNSUPPORTED.items() if getattr(args, name, None)]
    if given:
        return f"{', '.join(given)}: not for clips; give each clip (a video file, or a folder with --video) by itself"
    if options.depth_file is not None:
        return "--depth gives the depth of one photo; a clip's depth comes from the video model"
    not_clips = [a for a in args.photos if not is_video_file(a) and not (options.video and Path(a).is_dir())]
    if not_clips:
        return (f"{not_clips[0]}: not a clip; run photos and clips separately (a folder of frames is a clip with "
                "--video)")
    return None


def cost_line(plan, model) -> str:
    """Before the run: frames, windows, size and device, and what a frame costs here."""
    from ppd_core.video import window_count

    frames, clip = len(plan.to_write), plan.clip
    seconds = model.seconds_per_frame()
    size = "x".join(map(str, model.size))
    where = f"{model.device.type} ({model.precision})"
    windows = window_count(len(plan.frames))
    head = (f"{clip.path}: {frames} of {len(plan.frames)} chosen frames to write ({clip.width}x{clip.height}), "
            f"{windows} window{'s' if windows > 1 else ''} of 16 at {size} on {where}")
    if seconds is None:
        return f"{head}; the time left is shown once the first window is done"
    return (f"{head}: at least {duration_words(seconds)} a frame here, {duration_words(seconds * len(plan.frames))} "
            "in all (the time left is shown as the windows finish)")


def clip_summary(plan, record: dict) -> list[str]:
    """The finished clip in a few lines: its folder and files, scale and camera, precision, warnings."""
    info = record["depth"]
    camera = record["camera"]
    lines = [f"{plan.clip.path}: {len(plan.frames)} frames -> {plan.folder} ({record['written']} written, "
             f"{record['kept']} kept) in {duration_words(record['seconds'])}",
             f"  per frame: {', '.join(plan.outputs(plan.frames[0])[kind].name for kind in plan.kinds)} ...",
             f"  depth sequence: {plan.depth_path(plan.frames[0]).parent}/ (16-bit PNG, millimetres, 0 = none)",
             f"  depth video: {plan.video_path}",
             f"  record: {plan.record_path}",
             depth_line({**info, "camera": f"{info['camera']}, {camera['lens_mm']:.1f} mm lens (36 mm sensor)"})]
    return lines + precision_lines(info) + warning_lines(info)


def run_clip_command(args: argparse.Namespace, kinds: list[str], options: JobOptions) -> int:
    """Run every clip the arguments name with one loaded model; return the exit code."""
    from ppd_core.clip import ClipRun, plan_clip, run_clip

    usage = usage_error(args, options)
    if usage is not None:
        say(f"ppd-mesh: error: {usage}", sys.stderr)
        return EXIT_USAGE
    plans, failed = [], 0
    for argument in args.photos:
        try:
            plans.append(plan_clip(Path(argument), kinds, options, output=args.output, replace=args.force,
                                   skip_existing=args.skip_existing))
        except PPDError as error:
            say(failure_line(argument, error), sys.stderr)
            failed += 1
    model = None
    for plan in plans:
        progress = Progress(plan.clip.path.name, args.quiet)
        try:
            if model is None:
                model = _load_model(options, progress)
            say(cost_line(plan, model), sys.stderr)
            record = run_clip(ClipRun(plan, options, model, replace=args.force or args.skip_existing,
                                      on_progress=progress.show))
        except KeyboardInterrupt:
            progress.close()
            say(f"ppd-mesh: {plan.clip.path}: interrupted; the frames written so far are whole and kept "
                "(--skip-existing resumes)", sys.stderr)
            raise
        except Exception as error:  # one line per failed clip, as for a photo
            progress.close()
            say(failure_line(plan.clip.path, error), sys.stderr)
            failed += 1
            continue
        progress.close()
        for line in clip_summary(plan, record):
            say(line)
    return EXIT_FAILED if failed else EXIT_OK


def _load_model(options: JobOptions, progress: Progress):
    from ppd_core.model.video_inference import VideoModel  # torch: only once a clip runs

    return VideoModel.load(options.weights, device=options.device, precision=options.precision,
                           on_progress=lambda stage, fraction, message: progress.show(stage, 0.0, message))
