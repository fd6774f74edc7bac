"""`python -m ppd_core.mesh PHOTO [PHOTO ...] --stl ...`: photos to meshes, point clouds and solids.

PHOTO may also be a folder (`--recursive` for its subfolders), a quoted glob or `@list.txt` (a
text file of photo paths, one a line); `--skip-existing` resumes a batch, `--ray` runs it on
Ray (`ppd_core.batch`, `ppd_core.ray_batch`).

Exit codes: 0 every photo done, 1 at least one photo failed (one line each; the others are
still processed), 2 usage error, 128 + N stopped by signal N (130 Ctrl-C, 143 SIGTERM, 129
SIGHUP). Nothing half-written is left behind; the photo is never overwritten, other files
only with --force.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

from ppd_core.batch import (MANIFEST_NAME, BatchCounts, LocalRunner, PhotoRecord, find_photos,
                            is_batch_argument, make_output_folder, output_strings, plan_batch,
                            remove_empty_folders, run_batch)
from ppd_core.client import WorkerClient, WorkerError
from ppd_core.clip_command import is_clip_run, run_clip_command
from ppd_core.errors import BadInputError, PPDError
from ppd_core import __version__
from ppd_core.options import DEFAULT_OUTPUTS, OPTIONS, OUTPUT_KINDS, JobOptions, Option
from ppd_core.progress_display import PhotoDisplay, Progress, say
from ppd_core.ray_batch import RAY_MISSING, RayRunner
from ppd_core.summary import failure_line, summary_lines
from ppd_core.viewer import result_viewer

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXAMPLES = """examples:
  ppd-mesh photo.jpg                         a textured mesh: photo.glb next to the photo
  ppd-mesh photo.jpg --stl                   a printable solid, 100 mm wide: photo.stl
  ppd-mesh photo.jpg --points --ply          an edge-clean coloured point cloud
  ppd-mesh shoot/ --stl -o prints/           every photo in a folder (-r: and below), into prints/
  ppd-mesh photo.jpg --depth d.png --ply     your own depth map (16-bit PNG in mm), no network
  ppd-mesh photo.jpg --align-to lidar.png --glb   true size from a metric depth map
  ppd-mesh photo.jpg --resolution 196608 --stl    512x384: several times faster on a CPU
  ppd-mesh clip.mp4 --ply                    a clip: clip/clip_000000.ply ... in one scale (docs/video.md)

weights: found in --weights DIR or $PPD_WEIGHTS, else among files added with `ppd-weights add`,
else in the Hugging Face cache, else downloaded (`ppd-weights download` fetches them ahead).
exit codes: 0 every photo done, 1 a photo failed, 2 usage error."""


def _help(row: Option) -> str:
    """An option's help line: its text, unit and default."""
    unit = f" {row.spec.unit}" if row.spec.unit else ""
    if row.default is None or row.kind is bool:
        return row.spec.help + (f" ({row.spec.unit})" if unit else "")
    default = f"{row.default:g}" if row.kind in (int, float) else str(row.default)
    return f"{row.spec.help} (default {default}{unit})"


def _add_option(group: argparse._ArgumentGroup, row: Option) -> None:
    """One JobOptions field as a flag: its type, default, choices and help from the options table."""
    help_text = _help(row)
    if row.kind is bool:
        action = argparse.BooleanOptionalAction if row.optional else "store_true"
        group.add_argument(row.flag, dest=row.name, action=action, default=row.default, help=help_text)
        return
    group.add_argument(row.flag, dest=row.name, type=row.kind, default=row.default, help=help_text,
                       choices=row.spec.choices or None, metavar=row.spec.metavar)


def build_parser() -> argparse.ArgumentParser:
    """The command's arguments: photos, output kinds, the run's own flags, then every job option."""
    parser = argparse.ArgumentParser(
        prog="ppd-mesh", description="Photo to depth, point cloud, mesh or printable solid (Pixel-Perfect Depth).",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("photos", nargs="+", metavar="PHOTO",
                        help="photo files, folders, quoted globs ('shoot/*.jpg') or @list.txt (one path a line)")
    defaults = " ".join(OUTPUT_KINDS[kind].flag for kind in DEFAULT_OUTPUTS)
    out = parser.add_argument_group(f"outputs (several at once, named after the photo, next to it or in -o; "
                                    f"none named: {defaults})")
    for kind in OUTPUT_KINDS.values():
        out.add_argument(kind.flag, dest=f"want_{kind.name}", action="store_true",
                         help=f"{kind.help}: <photo>{kind.suffix}")
    out.add_argument("-o", "--output", type=Path, help="output file (one photo, one output) or folder")
    out.add_argument("--force", action="store_true", help="overwrite existing output files")
    out.add_argument("--quiet", action="store_true", help="no progress bars or stage lines (results, failures and the summary still print)")
    out.add_argument("--show", action="store_true",
                     help="look at each result in an Open3D window once its outputs are written (where a display "
                          "exists; the run goes on when the window is closed)")
    out.add_argument("--subprocess", action="store_true",
                     help="run the photos in a worker process (python -m ppd_core.worker), as Blender does")
    many = parser.add_argument_group("many photos")
    many.add_argument("-r", "--recursive", action="store_true", help="look into the subfolders of folder arguments")
    many.add_argument("--skip-existing", action="store_true",
                      help="skip a photo whose outputs are all there, to resume a batch")
    many.add_argument("--manifest", type=Path, metavar="FILE",
                      help=f"append one JSON line per photo as it finishes (default for folders, globs, lists "
                           f"and --ray: {MANIFEST_NAME} in the -o folder, else in the current folder)")
    many.add_argument("--no-manifest", action="store_true", help="write no manifest")
    many.add_argument("--ray", action="store_true",
                      help="run on Ray with Ray Data: joins a local `ray start`, else starts one")
    many.add_argument("--ray-address", metavar="ADDRESS",
                      help="the Ray cluster to run on (implies --ray): auto, HOST:PORT or ray://HOST:10001")
    many.add_argument("--ray-actors", type=int, metavar="N",
                      help="Ray actors, each with one model (default: one per GPU, else 1)")
    groups = {}
    for row in OPTIONS.values():
        if row.spec.group not in groups:
            groups[row.spec.group] = parser.add_argument_group(row.spec.group)
        _add_option(groups[row.spec.group], row)
    return parser


def job_options(args: argparse.Namespace) -> JobOptions:
    """The pipeline's JobOptions from parsed arguments (every option is a flag of the same name)."""
    return JobOptions(**{name: getattr(args, name) for name in OPTIONS})


def show_record(record: PhotoRecord, quiet: bool) -> None:
    """A done photo's summary lines (stdout), a failed photo's one line (stderr), a skipped
    photo's note (stdout, unless quiet)."""
    if record.status == "failed":
        say(failure_line(record.photo, record.error), sys.stderr)
    elif record.status == "skipped" and not quiet:
        say(f"{record.photo}: skipped, its outputs are all complete")
    elif record.stats:
        for line in summary_lines(record.stats):
            say(line)


def run_in_worker(jobs: list, options, quiet: bool, counts: BatchCounts, show: Optional[Callable] = None) -> None:
    """Run each job in a worker process started with this interpreter (its kept outputs
    named as "keep"), counting each photo in `counts` and `show`ing it. Paths are shown as
    the user named them."""
    with WorkerClient(sys.executable) as client:
        try:
            client.start()
        except WorkerError as error:
            say(f"ppd-mesh: worker: {error}", sys.stderr)
            counts.failed += len(jobs)
            return
        for number, job in enumerate(jobs):
            photo = job.photo
            progress = Progress(photo.name, quiet)
            job_id = client.submit({"photo": str(photo), "outputs": output_strings(job.outputs),
                                    "keep": list(job.kept), "options": dataclasses.asdict(options)})
            try:
                outcome = _await_result(client, job_id, progress)
            except KeyboardInterrupt:
                client.cancel(job_id)
                progress.close()
                say(f"ppd-mesh: {photo}: interrupted; nothing written for it", sys.stderr)
                raise
            progress.close()
            if outcome["type"] == "result":
                counts.done += 1
                for line in summary_lines({**outcome["stats"], "outputs": output_strings(job.outputs),
                                           "redone": job.redone}):
                    say(line)
                if show is not None:
                    show(output_strings(job.outputs))
                continue
            say(failure_line(photo, outcome.get("message", "the worker failed")), sys.stderr)
            counts.failed += 1
            if outcome.get("kind") in ("worker_crashed", "timeout"):  # the photos after it never ran
                counts.failed += len(jobs) - number - 1
                return


def _await_result(client, job_id: str, progress: Progress) -> dict:
    """Feed the job's progress events to the display until its result or error arrives."""
    while True:
        for event in client.poll():
            if event.get("id") not in (job_id, None):
                continue
            if event["type"] == "progress":
                progress.show(event.get("stage", ""), float(event.get("fraction", 0.0)), event.get("message", ""))
            elif event["type"] in ("result", "error"):
                return event
        time.sleep(0.05)


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the program is so that it unwinds like Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_stopped(signum: int, frame) -> None:
    raise Stopped(signum)


@contextlib.contextmanager
def stop_signals_unwind() -> Iterator[None]:
    """While inside, SIGTERM and SIGHUP raise `Stopped` (a KeyboardInterrupt) instead of killing
    the process outright, so every cleanup (staging folders, temporary files) runs. Signals
    the caller ignores (nohup) stay ignored; the old handlers come back on the way out."""
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for name in ("SIGTERM", "SIGHUP"):
            number = getattr(signal, name, None)
            if number is not None and signal.getsignal(number) is not signal.SIG_IGN:
                previous[number] = signal.signal(number, _raise_stopped)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command; return the exit code (0 ok, 1 a photo failed, 2 usage)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return EXIT_OK if exit_.code == 0 else EXIT_USAGE
    kinds = [kind for kind in OUTPUT_KINDS if getattr(args, f"want_{kind}")] or list(DEFAULT_OUTPUTS)
    try:
        options = job_options(args)
        options.validate()
    except BadInputError as error:
        say(f"ppd-mesh: error: {error}", sys.stderr)
        return EXIT_USAGE
    if is_clip_run(args.photos, options):  # a video, or a folder of frames: `ppd_core.clip_command`
        try:
            with stop_signals_unwind():
                return run_clip_command(args, kinds, options)
        except KeyboardInterrupt as interrupt:
            return 128 + getattr(interrupt, "signum", signal.SIGINT)
    args.ray = args.ray or args.ray_address is not None
    usage = batch_usage_error(args)
    photos, problems = find_photos(args.photos, args.recursive,
                                   on_note=lambda note: say(f"ppd-mesh: {note}", sys.stderr))
    if usage is None and options.depth_file is not None and len(photos) > 1:
        usage = "--depth gives the depth of one photo; pass exactly one photo"
    if usage is not None:
        say(f"ppd-mesh: error: {usage}", sys.stderr)
        return EXIT_USAGE
    for argument, error in problems:
        say(failure_line(argument, error), sys.stderr)
    try:
        created = make_output_folder(args.output, photos, kinds)
    except PPDError as error:
        say(f"ppd-mesh: error: {error}", sys.stderr)
        return EXIT_USAGE
    batch = args.ray or any(is_batch_argument(argument) for argument in args.photos)
    counts = BatchCounts()
    try:
        with stop_signals_unwind():
            failures = run_photos(args, photos, kinds, options, counts, batch)
    except KeyboardInterrupt as interrupt:
        return 128 + getattr(interrupt, "signum", signal.SIGINT)
    except PPDError as error:  # the manifest cannot be written, or Ray cannot run
        say(f"ppd-mesh: error: {error}", sys.stderr)
        return EXIT_USAGE
    finally:
        remove_empty_folders(created)
    if batch or len(photos) > 1:
        say(counts.line())
    return EXIT_FAILED if failures or problems else EXIT_OK


def batch_usage_error(args: argparse.Namespace) -> Optional[str]:
    """What is wrong with the run's batch flags, or None."""
    if args.subprocess and (args.ray or args.manifest is not None):
        return "--subprocess runs one worker here, without a manifest: leave out --ray and --manifest"
    if args.ray_actors is not None and args.ray_actors < 1:
        return f"--ray-actors must be at least 1, got {args.ray_actors}"
    if args.ray and importlib.util.find_spec("ray") is None:
        return RAY_MISSING
    return None


def manifest_path(args: argparse.Namespace, batch: bool) -> Optional[Path]:
    """--manifest FILE; for a batch (folders, globs, lists, --ray) by default MANIFEST_NAME in
    the -o folder, else in the current folder; none with --no-manifest."""
    if args.no_manifest or (args.manifest is None and not batch):
        return None
    if args.manifest is not None:
        return args.manifest
    return (args.output if args.output is not None and args.output.is_dir() else Path()) / MANIFEST_NAME


def run_photos(args: argparse.Namespace, photos: list[Path], kinds: list[str], options: JobOptions,
               counts: BatchCounts, batch: bool) -> int:
    """Run the photos here, on Ray, or in a worker (--subprocess); show each as it finishes
    (and in a window, with --show); return the number of failed photos."""
    show = result_viewer(args.show)
    if args.subprocess:
        plan = plan_batch(photos, kinds, options, output=args.output, replace=args.force,
                          skip_existing=args.skip_existing)
        for record in plan.settled:
            counts.add(record)
            show_record(record, args.quiet)
        if plan.jobs:
            run_in_worker(plan.jobs, options, args.quiet, counts, show)
        return counts.failed
    display = PhotoDisplay(args.quiet)
    runner = RayRunner(args.ray_actors, args.ray_address, args.quiet) if args.ray else LocalRunner(
        progress_for=display.start)
    try:
        for record in run_batch(photos, kinds, options, output=args.output, replace=args.force,
                                skip_existing=args.skip_existing, manifest=manifest_path(args, batch), runner=runner):
            display.finish()
            counts.add(record)
            show_record(record, args.quiet)
            if show is not None and record.status == "done":
                show(record.outputs)
    except KeyboardInterrupt:
        stopped = display.finish()
        if stopped is not None:
            say(f"ppd-mesh: {stopped}: interrupted; nothing written for it", sys.stderr)
        raise
    return counts.failed


if __name__ == "__main__":
    sys.exit(main())
