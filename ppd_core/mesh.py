"""`python -m ppd_core.mesh PHOTO [PHOTO ...] --stl ...`: photos to meshes, point clouds and solids.

Exit codes: 0 every photo done, 1 at least one photo failed (one line each; the others are
still processed), 2 usage error, 128 + N stopped by signal N (130 Ctrl-C, 143 SIGTERM, 129
SIGHUP). Nothing half-written is left behind; the photo is never overwritten, other files
only with --force.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Iterator, Optional, Sequence

from ppd_core.client import WorkerClient, WorkerError
from ppd_core.errors import BadInputError, OutputExistsError, PPDError
from ppd_core.files.staging import check_targets
from ppd_core.options import OPTIONS, OUTPUT_KINDS, JobOptions, Option, output_files
from ppd_core.progress import JOB_STAGES, JobFraction

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


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
        prog="ppd-mesh", description="Photo to depth, point cloud, mesh or printable solid (Pixel-Perfect Depth).")
    parser.add_argument("photos", nargs="+", metavar="PHOTO", help="photo file(s)")
    out = parser.add_argument_group("outputs (several at once; default names next to the photo)")
    for kind in OUTPUT_KINDS.values():
        out.add_argument(kind.flag, dest=f"want_{kind.name}", action="store_true",
                         help=f"{kind.help}: <photo>{kind.suffix}")
    out.add_argument("-o", "--output", type=Path, help="output file (one photo, one output) or folder")
    out.add_argument("--force", action="store_true", help="overwrite existing output files")
    out.add_argument("--quiet", action="store_true", help="no progress, only failures")
    out.add_argument("--subprocess", action="store_true",
                     help="run the photos in a worker process (python -m ppd_core.worker), as Blender does")
    groups = {}
    for row in OPTIONS.values():
        if row.spec.group not in groups:
            groups[row.spec.group] = parser.add_argument_group(row.spec.group)
        _add_option(groups[row.spec.group], row)
    return parser


def job_options(args: argparse.Namespace) -> JobOptions:
    """The pipeline's JobOptions from parsed arguments (every option is a flag of the same name)."""
    return JobOptions(**{name: getattr(args, name) for name in OPTIONS})


def output_paths(photo: Path, kinds: list[str], output: Optional[Path], single: bool) -> dict[str, Path]:
    """Where each output goes: -o FILE (one photo, one output), -o FOLDER, or next to the photo."""
    if output is not None and not output.is_dir() and output.suffix and single and len(kinds) == 1:
        kind = OUTPUT_KINDS[kinds[0]]
        if output.suffix.lower() != kind.extension:
            raise BadInputError(f"{output}: a {kind.flag} output needs a {kind.extension} file name")
        return {kinds[0]: output}
    if output is not None and output.suffix and not output.is_dir():
        raise BadInputError(f"{output}: -o names a file, but there are several photos or outputs; give a folder")
    folder = output if output is not None else photo.parent
    return {kind: folder / (photo.stem + OUTPUT_KINDS[kind].suffix) for kind in kinds}


def say(text: str, stream=None) -> None:
    """Print one line. A closed or full stream (`ppd-mesh ... | head`, /dev/full) is sent to
    the null device instead: the outputs are on disk, a lost summary line must not undo that."""
    stream = sys.stdout if stream is None else stream
    try:
        print(text, file=stream, flush=True)
    except OSError:
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, stream.fileno())  # so the interpreter's last flush at exit fails no more
            os.close(null)
        except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
            pass


class Progress:
    """A tqdm bar per photo on a terminal; plain lines per stage otherwise; nothing when quiet."""

    def __init__(self, label: str, quiet: bool, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.label = label
        self.whole = JobFraction(JOB_STAGES)
        self.stage = None
        self.bar = None
        if not quiet and self.stream.isatty():
            from tqdm import tqdm  # only on a terminal

            self.bar = tqdm(total=100, desc=label, file=self.stream, unit="%", leave=False,
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}")

    def __call__(self, stage: str, fraction: float, message: str = "") -> None:
        self._display(stage, self.whole(stage, fraction), message)

    def show(self, stage: str, whole: float, message: str = "") -> None:
        """Display a fraction of the whole photo's work (as the worker reports it)."""
        self._display(stage, self.whole.advance(whole), message)

    def _display(self, stage: str, whole: float, message: str) -> None:
        if self.bar is not None:
            self.bar.n = round(100 * whole)
            self.bar.set_postfix_str(f"{stage}: {message}", refresh=True)
        elif not self.quiet and stage != self.stage:
            say(f"{self.label}: {stage} {message}".rstrip(), self.stream)
        self.stage = stage

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def summary_lines(stats: dict) -> list[str]:
    """One line per output: path, vertices, faces, size, watertight; plus the solid check."""
    lines = []
    for kind, path in stats["outputs"].items():
        detail = stats["details"][kind]
        if OUTPUT_KINDS[kind].depth_map:
            width, height = detail["size_px"]
            clipped = detail.get("clipped_px", 0)
            note = f"; {clipped} px beyond 65.535 m stored as 65.535 m" if clipped else ""
            lines.append(f"{path}: depth map {width}x{height} px (+ preview){note}")
            continue
        if "size_mm" in detail:
            size = " x ".join(f"{v:.2f}" for v in detail["size_mm"]) + " mm"
        elif kind in ("stl", "3mf"):  # a scene, turned z up and written in millimetres
            width, height, depth = detail["size_m"]
            size = " x ".join(f"{1000 * v:.1f}" for v in (width, depth, height)) + " mm (z up)"
        else:
            size = " x ".join(f"{v:.3f}" for v in detail["size_m"]) + " m"
        watertight = {True: "yes", False: "no", None: "n/a (open)"}[detail["watertight"]]
        lines.append(f"{path}: {detail['vertices']} vertices, {detail['faces']} faces, {size}, "
                     f"watertight {watertight}")
        if "check" in detail:
            lines.append(f"  check: {detail['check']}")
    return lines


def failure_line(photo: Path, error: BaseException) -> str:
    """One line for a failed photo: our errors as they are, anything else with its type."""
    if isinstance(error, OutputExistsError):
        text = f"{error} (use --force to overwrite)"
    elif isinstance(error, PPDError):
        text = str(error)
    elif isinstance(error, MemoryError):
        text = "out of memory: lower --resolution (or use --precision fp16/bf16 on a GPU)"
    else:
        text = f"internal error ({type(error).__name__}: {error}); please report it"
    return f"ppd-mesh: {text}" if str(photo) in text else f"ppd-mesh: {photo}: {text}"


def run_in_process(jobs: list, options, quiet: bool, force: bool = False) -> int:
    """Run each (photo, outputs) here, one model kept loaded; return the number of failures."""
    # numpy, OpenCV and the meshers load in seconds: not for --help or a usage error
    from ppd_core.photo_depth import ModelCache
    from ppd_core.pipeline import run_photo

    models = ModelCache()
    failures = 0
    for photo, outputs in jobs:
        progress = Progress(photo.name, quiet)
        try:
            stats = run_photo(photo, outputs, options, models=models, on_progress=progress, replace=force)
        except KeyboardInterrupt:
            progress.close()
            say(f"ppd-mesh: {photo}: interrupted; nothing written for it", sys.stderr)
            raise
        except Exception as error:
            progress.close()
            say(failure_line(photo, error), sys.stderr)
            failures += 1
            continue
        progress.close()
        for line in summary_lines(stats):
            say(line)
    return failures


def run_in_worker(jobs: list, options, quiet: bool) -> int:
    """Run each (photo, outputs) in a worker process started with this interpreter."""
    failures = 0
    with WorkerClient(sys.executable) as client:
        try:
            client.start()
        except WorkerError as error:
            say(f"ppd-mesh: worker: {error}", sys.stderr)
            return len(jobs)
        for photo, outputs in jobs:
            progress = Progress(photo.name, quiet)
            job_id = client.submit({"photo": str(photo), "outputs": {k: str(v) for k, v in outputs.items()},
                                    "options": dataclasses.asdict(options)})
            try:
                outcome = _await_result(client, job_id, progress)
            except KeyboardInterrupt:
                client.cancel(job_id)
                progress.close()
                say(f"ppd-mesh: {photo}: interrupted; nothing written for it", sys.stderr)
                raise
            progress.close()
            if outcome["type"] == "result":
                for line in summary_lines({**outcome["stats"], "outputs": outcome["outputs"]}):
                    say(line)
            else:
                say(failure_line(photo, PPDError(outcome.get("message", "the worker failed"))), sys.stderr)
                failures += 1
                if outcome.get("kind") in ("worker_crashed", "timeout"):
                    return failures + len(jobs) - [p for p, _ in jobs].index(photo) - 1
    return failures


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
    kinds = [kind for kind in OUTPUT_KINDS if getattr(args, f"want_{kind}")]
    if not kinds:
        parser.print_usage(sys.stderr)
        flags = ", ".join(kind.flag for kind in OUTPUT_KINDS.values())
        say(f"ppd-mesh: error: choose at least one output ({flags})", sys.stderr)
        return EXIT_USAGE
    try:
        options = job_options(args)
        options.validate()
    except BadInputError as error:
        say(f"ppd-mesh: error: {error}", sys.stderr)
        return EXIT_USAGE
    if options.depth_file is not None and len(args.photos) > 1:
        say("ppd-mesh: error: --depth gives the depth of one photo; pass exactly one photo", sys.stderr)
        return EXIT_USAGE

    failures = 0
    jobs = []
    claimed: dict[Path, Path] = {}
    for name in args.photos:
        photo = Path(name)
        try:
            if not photo.is_file():
                raise BadInputError(f"{photo}: {'not a file' if photo.exists() else 'no such file'}")
            outputs = output_paths(photo, kinds, args.output, single=len(args.photos) == 1)
            inputs = {photo: "the photo itself"}
            if options.depth_file is not None:
                inputs[options.depth_file] = "the depth file"
            targets = [target for kind, path in outputs.items() for target in output_files(kind, path)]
            check_targets(targets, inputs, args.force, claimed=claimed, owner=photo)
        except PPDError as error:
            say(failure_line(photo, error), sys.stderr)
            failures += 1
            continue
        jobs.append((photo, outputs))
    try:
        with stop_signals_unwind():
            if args.subprocess:
                failures += run_in_worker(jobs, options, args.quiet) if jobs else 0
            else:
                failures += run_in_process(jobs, options, args.quiet, args.force) if jobs else 0
    except KeyboardInterrupt as interrupt:
        return 128 + getattr(interrupt, "signum", signal.SIGINT)
    return EXIT_FAILED if failures else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
