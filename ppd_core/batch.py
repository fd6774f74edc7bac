"""Many photos in one run: find them, skip finished ones, run the rest with one loaded model,
and record every photo's result in a manifest the moment it is known.

`run_batch` is the Python API: it takes photos (paths) and yields one `PhotoRecord` per
photo as each finishes, so a crash loses at most the photo in flight. The work on each photo
is `ppd_core.pipeline.run_photo`; a `runner` decides where it happens (`LocalRunner`: here,
one model for all photos; `ppd_core.ray_batch.RayRunner`: a Ray cluster). `find_photos`
turns the command's arguments (folders, globs, `@list.txt` files) into photo paths.
"""

from __future__ import annotations

import glob
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Optional, Sequence, Union

from ppd_core.errors import BadInputError, OutputExistsError, PPDError, brief, is_out_of_memory, out_of_memory_text
from ppd_core.files.staging import check_targets
from ppd_core.options import OUTPUT_KINDS, PHOTO_SUFFIXES, JobOptions, output_files
from ppd_core.progress import ProgressCallback

if TYPE_CHECKING:  # numpy and the model code load only once photos run
    from ppd_core.photo_depth import ModelCache

LIST_PREFIX = "@"
"""`@shoot.txt` names a text file of photo paths, one a line."""
MANIFEST_NAME = "ppd-mesh-manifest.jsonl"
"""The manifest's name when a batch run is not given one."""

Job = tuple[Path, dict[str, Path]]
"""One photo and its outputs ({kind: path})."""


@dataclass
class PhotoRecord:
    """What became of one photo: "done", "skipped" (its outputs were all there) or "failed"."""

    photo: str
    outputs: dict[str, str]
    status: str
    seconds: float = 0.0
    error: Optional[str] = None          # one line, for failed photos
    stats: Optional[dict] = None         # `run_photo`'s stats for done photos (not in the manifest)

    def manifest_line(self) -> str:
        """The record as one JSON line of the manifest."""
        return json.dumps({"photo": self.photo, "outputs": self.outputs, "status": self.status,
                           "seconds": round(self.seconds, 3), "error": self.error})


def error_text(error: BaseException) -> str:
    """One line for a failed photo: our errors as they are, anything else with its type."""
    if isinstance(error, OutputExistsError):
        return f"{error} (use --force to overwrite)"
    if isinstance(error, PPDError):
        return str(error)
    if is_out_of_memory(error):
        return out_of_memory_text(error)
    return f"internal error ({type(error).__name__}: {brief(error, 300)}); please report it"


def is_batch_argument(argument: str) -> bool:
    """True for an argument that stands for many photos: a folder, a glob or an @list file."""
    path = Path(argument)
    if path.is_file():
        return False
    return path.is_dir() or argument.startswith(LIST_PREFIX) or glob.has_magic(argument)


def _output_names(photos: Sequence[Path]) -> set[str]:
    """The names of every file any output kind would write for these photos (a texture, a
    depth PNG), so that a second run over the same folder does not take them for photos."""
    return {file.name for photo in photos for kind, output in OUTPUT_KINDS.items()
            for file in output_files(kind, Path(photo.stem + output.suffix))}


def _photos_only(found: Iterable[Path]) -> list[Path]:
    """Photo files, sorted, without the outputs of other photos among them."""
    photos = sorted(path for path in found if path.suffix.lower() in PHOTO_SUFFIXES and path.is_file())
    names = _output_names(photos)
    return [path for path in photos if path.name not in names]


def _folder_photos(folder: Path, recursive: bool) -> list[Path]:
    """The photos in `folder` (and below it when `recursive`), hidden files and folders left out
    (staging folders, `._` and `.DS_Store` files)."""
    found = []
    for root, folders, files in os.walk(folder):
        folders[:] = sorted(name for name in folders if not name.startswith(".")) if recursive else []
        found += [Path(root) / name for name in files if not name.startswith(".")]
    return _photos_only(found)


def _listed_photos(argument: str) -> list[Path]:
    """The paths in a list file, one a line; blank lines and `#` comments are skipped. Relative
    paths are relative to the current folder, as if typed on the command line."""
    path = Path(argument[len(LIST_PREFIX):])
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise BadInputError(f"{argument}: no such list file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise BadInputError(f"{argument}: cannot read the list ({getattr(error, 'strerror', None) or error})") from None
    return [Path(line.strip()) for line in lines if line.strip() and not line.lstrip().startswith("#")]


def expand_argument(argument: str, recursive: bool = False) -> list[Path]:
    """The photos one command-line argument stands for: a folder's photos, a glob's matches
    (`**` matches folders at any depth), an `@list.txt`'s lines, or the file itself."""
    if not is_batch_argument(argument):
        return [Path(argument)]
    if argument.startswith(LIST_PREFIX) and not Path(argument).is_dir():
        return _listed_photos(argument)
    if Path(argument).is_dir():
        photos = _folder_photos(Path(argument), recursive)
        what = "no photos in this folder" + ("" if recursive else " (--recursive looks into its subfolders)")
    else:
        photos = _photos_only(Path(name) for name in glob.glob(argument, recursive=True))
        what = "no photos match"
    if not photos:
        raise BadInputError(f"{argument}: {what}")
    return photos


def find_photos(arguments: Sequence[str], recursive: bool = False) -> tuple[list[Path], list[tuple[str, PPDError]]]:
    """(every photo the arguments stand for, each once, in order; (argument, error) for each
    argument that stands for none)."""
    photos: list[Path] = []
    seen: set[Path] = set()
    problems = []
    for argument in arguments:
        try:
            found = expand_argument(argument, recursive)
        except PPDError as error:
            problems.append((argument, error))
            continue
        for photo in found:
            if photo.absolute() not in seen:
                seen.add(photo.absolute())
                photos.append(photo)
    return photos, problems


def output_paths(photo: Path, kinds: Sequence[str], output: Optional[Path], single: bool) -> dict[str, Path]:
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


def outputs_complete(outputs: dict[str, Path]) -> bool:
    """True when every file of every output is there (outputs are moved in all or none, so an
    interrupted photo never looks complete)."""
    return all(file.is_file() for kind, path in outputs.items() for file in output_files(kind, path))


def check_job(photo: Path, outputs: dict[str, Path], options: JobOptions, *, replace: bool,
              skip_existing: bool, claimed: dict) -> bool:
    """Check one photo's job before anything runs; True when it is to be skipped (its outputs
    are all there and `skip_existing`). Raises `PPDError` for a job that cannot run."""
    if not photo.is_file():
        raise BadInputError(f"{photo}: {'not a file' if photo.exists() else 'no such file'}")
    targets = [target for kind, path in outputs.items() for target in output_files(kind, path)]
    complete = skip_existing and outputs_complete(outputs)
    check_targets(targets, options.input_files(photo), replace or complete, claimed=claimed, owner=photo)
    return complete


@dataclass
class BatchPlan:
    """The photos to run, and the records of those settled before running (failed, skipped)."""

    jobs: list[Job]
    settled: list[PhotoRecord]


def plan_batch(photos: Iterable[Union[str, Path]], kinds: Sequence[str], options: JobOptions, *,
               output: Optional[Union[str, Path]] = None, replace: bool = False,
               skip_existing: bool = False) -> BatchPlan:
    """Check every photo's job up front (its outputs, the overwrite policy, two photos onto
    one file); a photo that cannot run is settled as failed, a finished one as skipped."""
    photos = [Path(photo) for photo in photos]
    output = Path(output) if output is not None else None
    plan = BatchPlan([], [])
    claimed: dict[Path, Path] = {}
    for photo in photos:
        outputs: dict[str, Path] = {}
        try:
            outputs = output_paths(photo, kinds, output, single=len(photos) == 1)
            skip = check_job(photo, outputs, options, replace=replace, skip_existing=skip_existing, claimed=claimed)
        except PPDError as error:
            plan.settled.append(PhotoRecord(str(photo), output_strings(outputs), "failed", error=error_text(error)))
            continue
        if skip:
            plan.settled.append(PhotoRecord(str(photo), output_strings(outputs), "skipped"))
        else:
            plan.jobs.append((photo, outputs))
    return plan


def output_strings(outputs: dict[str, Path]) -> dict[str, str]:
    """{kind: path} with the paths as strings, as records and the manifest hold them."""
    return {kind: str(path) for kind, path in outputs.items()}


def run_job(photo: Path, outputs: dict[str, Path], options: JobOptions, *, models: Optional[ModelCache] = None,
            replace: bool = False, on_progress: Optional[ProgressCallback] = None) -> PhotoRecord:
    """Run one photo through `ppd_core.pipeline.run_photo`; a failure is a record, not an
    exception (Ctrl-C and signals still unwind)."""
    # numpy, OpenCV and the meshers load in seconds: only once a photo runs
    from ppd_core import pipeline

    start = time.perf_counter()
    try:
        stats = pipeline.run_photo(photo, outputs, options, models=models, on_progress=on_progress, replace=replace)
    except Exception as error:
        return PhotoRecord(str(photo), output_strings(outputs), "failed", time.perf_counter() - start, error_text(error))
    return PhotoRecord(str(photo), output_strings(outputs), "done", time.perf_counter() - start, stats=stats)


Runner = Callable[[Sequence[Job], JobOptions, bool], Iterable[PhotoRecord]]
"""Runs (photo, outputs) jobs with options, replacing existing files or not; yields a record
per photo as each finishes, in any order."""


class LocalRunner:
    """Runs the photos one after the other in this process, with one loaded model."""

    def __init__(self, models: Optional[ModelCache] = None,
                 progress_for: Optional[Callable[[Path], ProgressCallback]] = None) -> None:
        self.models = models
        self.progress_for = progress_for  # a progress callback for each photo, or None

    def __call__(self, jobs: Sequence[Job], options: JobOptions, replace: bool) -> Iterator[PhotoRecord]:
        from ppd_core.photo_depth import ModelCache  # numpy and the geometry: only once photos run

        models = self.models if self.models is not None else ModelCache()
        for photo, outputs in jobs:
            on_progress = self.progress_for(photo) if self.progress_for is not None else None
            yield run_job(photo, outputs, options, models=models, replace=replace, on_progress=on_progress)


class Manifest:
    """A JSON-lines file with one line per photo, appended and flushed to disk as each photo
    finishes, so a run killed outright loses at most the photo in flight."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.file = open(self.path, "a+", encoding="utf-8")
            self.file.seek(0, os.SEEK_END)
            if self.file.tell() > 0:  # a line cut short by a kill must not swallow the next one
                self.file.seek(self.file.tell() - 1)
                if self.file.read(1) != "\n":
                    self.file.write("\n")
        except OSError as error:
            raise BadInputError(f"{self.path}: cannot write the manifest ({error.strerror or error})") from None

    def append(self, record: PhotoRecord) -> None:
        self.file.write(record.manifest_line() + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        self.file.close()


def read_manifest(path: Union[str, Path]) -> list[dict]:
    """The records of a manifest, oldest first; a last line cut short by a kill is left out."""
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def run_batch(photos: Iterable[Union[str, Path]], kinds: Sequence[str], options: Optional[JobOptions] = None, *,
              output: Optional[Union[str, Path]] = None, replace: bool = False, skip_existing: bool = False,
              manifest: Optional[Union[str, Path]] = None, runner: Optional[Runner] = None) -> Iterator[PhotoRecord]:
    """Run many photos; yield one `PhotoRecord` per photo as each is settled.

    `kinds` are output kinds (`"stl"`, `"npz"`, ...), written next to each photo or into the
    folder `output` (a file name only for one photo and one kind). Photos that cannot run
    (missing, an output in the way) come first, as failed; with `skip_existing`, photos whose
    outputs are all there are skipped. One bad photo never stops the batch. Each record is
    appended to `manifest` (JSON lines) when it is known. `runner` runs the photos: by
    default here, one model for all (`LocalRunner`); `ppd_core.ray_batch.RayRunner` on Ray.
    """
    options = options or JobOptions()
    options.validate()
    log = Manifest(Path(manifest)) if manifest is not None else None
    plan = plan_batch(photos, kinds, options, output=output, replace=replace, skip_existing=skip_existing)
    runner = runner or LocalRunner()
    try:
        for record in plan.settled:
            _note(log, record)
            yield record
        if plan.jobs:
            for record in runner(plan.jobs, options, replace):
                _note(log, record)
                yield record
    finally:
        if log is not None:
            log.close()


def _note(log: Optional[Manifest], record: PhotoRecord) -> None:
    if log is not None:
        log.append(record)


@dataclass
class BatchCounts:
    """Done, skipped and failed photos, and the time the batch took, for its summary line."""

    done: int = 0
    skipped: int = 0
    failed: int = 0
    start: float = field(default_factory=time.perf_counter)

    def add(self, record: PhotoRecord) -> None:
        setattr(self, record.status, getattr(self, record.status) + 1)

    def line(self) -> str:
        """`12 photos: 11 done, 0 skipped, 1 failed in 42.0 s (15.7 photos per minute)`."""
        seconds = time.perf_counter() - self.start
        total = self.done + self.skipped + self.failed
        rate = f" ({60 * self.done / seconds:.1f} photos per minute)" if self.done and seconds > 0 else ""
        return (f"{total} photo{'s' if total != 1 else ''}: {self.done} done, {self.skipped} skipped, "
                f"{self.failed} failed in {seconds:.1f} s{rate}")
