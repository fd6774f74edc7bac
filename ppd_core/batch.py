"""Many photos in one run: find them, skip finished ones, run the rest with one loaded model,
and record every photo's result in a manifest the moment it is known.

`run_batch` is the Python API: it takes photos (paths) and yields one `PhotoRecord` per
photo as each finishes, so a crash loses at most the photo in flight. The work on each photo
is `ppd_core.pipeline.run_photo`; a `runner` decides where it happens (`LocalRunner`: here,
one model for all photos; `ppd_core.ray_batch.RayRunner`: a Ray cluster). `find_photos`
(of `ppd_core.photo_finder`, importable from here) turns the command's arguments (folders,
globs, `@list.txt` files) into photo paths.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Optional, Sequence, Union

from ppd_core.errors import (BadInputError, OutputError, OutputExistsError, PPDError, brief, file_error_text,
                             is_out_of_memory, out_of_memory_text)
from ppd_core.files.output_check import MISSING, output_problem
from ppd_core.files.staging import check_targets, remove_stale_staging
from ppd_core.options import OUTPUT_KINDS, JobOptions, output_files
# The finder's names stay importable from here, where the command and the add-on import them.
from ppd_core.photo_finder import LIST_PREFIX, expand_argument, find_photos, is_batch_argument  # noqa: F401
from ppd_core.photo_finder import same_photo_key
from ppd_core.progress import ProgressCallback

if TYPE_CHECKING:  # numpy and the model code load only once photos run
    from ppd_core.photo_depth import ModelCache

MANIFEST_NAME = "ppd-mesh-manifest.jsonl"
"""The manifest's name when a batch run is not given one."""
MANIFEST_START = b'{"photo": '
"""How every manifest line starts (`PhotoRecord.manifest_line`)."""

@dataclass
class PhotoRecord:
    """What became of one photo: "done", "skipped" (its outputs were all complete) or "failed".
    A resumed photo (--skip-existing) names the outputs it kept and those it wrote anew over
    a broken file, with what was wrong."""

    photo: str
    outputs: dict[str, str]
    status: str
    seconds: float = 0.0
    error: Optional[str] = None          # one line, for failed photos
    stats: Optional[dict] = None         # `run_photo`'s stats for done photos (not in the manifest)
    kept: tuple[str, ...] = ()           # kinds complete from an earlier run, left as they were
    redone: dict[str, str] = field(default_factory=dict)  # {kind: what was wrong with its old files}

    def manifest_line(self) -> str:
        """The record as one JSON line of the manifest ("kept" and "redone" only when there are any)."""
        record = {"photo": self.photo, "outputs": self.outputs, "status": self.status,
                  "seconds": round(self.seconds, 3), "error": self.error}
        if self.kept and self.status != "skipped":
            record["kept"] = list(self.kept)
        if self.redone:
            record["redone"] = self.redone
        precision = (self.stats or {}).get("depth", {}).get("precision")
        if precision:
            record["precision"] = precision
        return json.dumps(record)


@dataclass
class Job:
    """One photo's job: every output asked for ({kind: path}); with --skip-existing, the kinds
    already complete (kept, not written) and those whose files are there but cut short or
    unreadable ({kind: what is wrong}: written anew over them)."""

    photo: Path
    outputs: dict[str, Path]
    kept: tuple[str, ...] = ()
    redone: dict[str, str] = field(default_factory=dict)

    @property
    def written(self) -> dict[str, Path]:
        """The outputs this job writes."""
        return {kind: path for kind, path in self.outputs.items() if kind not in self.kept}

    def record(self, status: str, seconds: float = 0.0, error: Optional[str] = None,
               stats: Optional[dict] = None) -> PhotoRecord:
        """What became of this job, with the photo and outputs as named."""
        return PhotoRecord(str(self.photo), output_strings(self.outputs), status, seconds, error, stats,
                           self.kept, dict(self.redone))


def error_text(error: BaseException) -> str:
    """One line for a failed photo: our errors as they are, anything else with its type."""
    if isinstance(error, OutputExistsError):
        return f"{error} (use --force to overwrite)"
    if isinstance(error, PPDError):
        return str(error)
    if is_out_of_memory(error):
        return out_of_memory_text(error)
    return file_error_text(error) or f"internal error ({type(error).__name__}: {brief(error, 300)}); please report it"


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


def output_folder(output: Optional[Path], photos: Sequence[Path], kinds: Sequence[str]) -> Optional[Path]:
    """The folder `-o` puts files in (the file's own folder for `-o FILE`), None without -o."""
    if output is None:
        return None
    names_a_file = not output.is_dir() and output.suffix and len(photos) == 1 and len(kinds) == 1
    return output.parent if names_a_file else output


def make_output_folder(output: Optional[Path], photos: Sequence[Path], kinds: Sequence[str]) -> list[Path]:
    """Create the `-o` folder (and its parents) when it is not there, as users of every depth
    tool expect; `OutputError` when it cannot be made. Returns the folders it created, innermost
    first, so that a run that writes nothing can take them away again (`remove_empty_folders`)."""
    try:
        folder = output_folder(output, photos, kinds)
        if folder is None or folder.is_dir():
            return []
        created = [folder]
        while not created[-1].parent.exists():
            created.append(created[-1].parent)
        folder.mkdir(parents=True, exist_ok=True)
        return created
    except OSError as error:  # also a name too long for the file system
        raise OutputError(f"{output}: cannot create the output folder ({error.strerror or error})") from None


def remove_empty_folders(folders: Sequence[Path]) -> None:
    """Remove the given folders, innermost first, while they are empty: a run whose every photo
    failed leaves no empty `-o` folder behind."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty (something was written), or already gone
            return


def outputs_complete(outputs: dict[str, Path]) -> bool:
    """True when every file of every output is there and whole (`output_problem`: a cheap
    check by file type; outputs are moved in all or none, so an interrupted photo never looks
    complete, but a copy cut short or a damaged file is found out)."""
    return all(output_problem(kind, path) is None for kind, path in outputs.items())


def check_job(photo: Path, outputs: dict[str, Path], options: JobOptions, *, replace: bool,
              skip_existing: bool, claimed: dict) -> Job:
    """Check one photo's job before anything runs. With `skip_existing`, its outputs that are
    complete are kept and those cut short or unreadable are redone (a job that keeps every
    output is skipped). Raises `PPDError` for a job that cannot run."""
    if not photo.is_file():
        raise BadInputError(f"{photo}: {'not a file' if photo.exists() else 'no such file'}")
    targets = [target for kind, path in outputs.items() for target in output_files(kind, path)]
    if not skip_existing:
        check_targets(targets, options.input_files(photo), replace, claimed=claimed, owner=photo)
        return Job(photo, outputs)
    # Each existing file is kept (complete) or written over (broken): none is in the way.
    check_targets(targets, options.input_files(photo), True, claimed=claimed, owner=photo)
    problems = {kind: output_problem(kind, path) for kind, path in outputs.items()}
    return Job(photo, outputs, kept=tuple(kind for kind, problem in problems.items() if problem is None),
               redone={kind: problem for kind, problem in problems.items() if problem not in (None, MISSING)})


@dataclass
class BatchPlan:
    """The photos to run, and the records of those settled before running (failed, skipped);
    every file the photos' jobs read ({path: what}) and every output they claim ({resolved path: photo})."""

    jobs: list[Job]
    settled: list[PhotoRecord]
    inputs: dict = field(default_factory=dict)
    claimed: dict = field(default_factory=dict)


def plan_batch(photos: Iterable[Union[str, Path]], kinds: Sequence[str], options: JobOptions, *,
               output: Optional[Union[str, Path]] = None, replace: bool = False,
               skip_existing: bool = False) -> BatchPlan:
    """Check every photo's job up front (its outputs, the overwrite policy, two photos onto
    one file); a photo that cannot run is settled as failed, a finished one as skipped. A
    photo named twice (by any path: `a/../a/x.png`, a link) runs once."""
    first_names: dict[Path, Path] = {}
    for photo in map(Path, photos):
        first_names.setdefault(same_photo_key(photo), photo)
    photos = list(first_names.values())
    output = Path(output) if output is not None else None
    plan = BatchPlan([], [])
    for photo in photos:
        plan.inputs.update(options.input_files(photo))
        outputs: dict[str, Path] = {}
        try:
            outputs = output_paths(photo, kinds, output, single=len(photos) == 1)
            job = check_job(photo, outputs, options, replace=replace, skip_existing=skip_existing,
                            claimed=plan.claimed)
        except (PPDError, OSError) as error:  # OSError: a name too long for the file system
            plan.settled.append(PhotoRecord(str(photo), output_strings(outputs), "failed", error=error_text(error)))
            continue
        if job.written:
            plan.jobs.append(job)
        else:
            plan.settled.append(job.record("skipped"))
    return plan


def output_strings(outputs: dict[str, Path]) -> dict[str, str]:
    """{kind: path} with the paths as strings, as records and the manifest hold them."""
    return {kind: str(path) for kind, path in outputs.items()}


def run_job(job: Job, options: JobOptions, *, models: Optional[ModelCache] = None, replace: bool = False,
            on_progress: Optional[ProgressCallback] = None) -> PhotoRecord:
    """Run one photo's job through `ppd_core.pipeline.run_photo` (its kept outputs left alone,
    its broken ones written over); a failure is a record, not an exception (Ctrl-C and
    signals still unwind)."""
    # numpy, OpenCV and the meshers load in seconds: only once a photo runs
    from ppd_core import pipeline

    start = time.perf_counter()
    for folder in {path.parent for path in job.outputs.values()}:
        remove_stale_staging(folder)  # a killed run's leftovers, even if this photo fails before writing
    try:
        stats = pipeline.run_photo(job.photo, job.outputs, options, models=models, on_progress=on_progress,
                                   replace=replace, keep=job.kept, redo=job.redone)
    except Exception as error:
        return job.record("failed", time.perf_counter() - start, error_text(error))
    if job.redone:
        stats["redone"] = dict(job.redone)
    return job.record("done", time.perf_counter() - start, stats=stats)


Runner = Callable[[Sequence[Job], JobOptions, bool], Iterable[PhotoRecord]]
"""Runs jobs with options, replacing existing files or not; yields a record per photo as
each finishes, in any order."""


class LocalRunner:
    """Runs the photos one after the other in this process, with one loaded model."""

    def __init__(self, models: Optional[ModelCache] = None,
                 progress_for: Optional[Callable[[Path], ProgressCallback]] = None) -> None:
        self.models = models
        self.progress_for = progress_for  # a progress callback for each photo, or None

    def __call__(self, jobs: Sequence[Job], options: JobOptions, replace: bool) -> Iterator[PhotoRecord]:
        from ppd_core.photo_depth import ModelCache  # numpy and the geometry: only once photos run

        models = self.models if self.models is not None else ModelCache()
        for job in jobs:
            on_progress = self.progress_for(job.photo) if self.progress_for is not None else None
            yield run_job(job, options, models=models, replace=replace, on_progress=on_progress)


class Manifest:
    """A JSON-lines file with one line per photo, appended and flushed to disk as each photo
    finishes, so a run killed outright loses at most the photo in flight. It is opened with
    its first record: a run refused before any photo is settled writes nothing."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.file = None

    def check(self, inputs: dict, claimed: dict) -> None:
        """The rule of every output (`check_targets`: never an input of the run, a folder or
        another output), appending allowed; an existing file must be a manifest, and
        writable. `OutputError` says what is wrong."""
        try:
            check_targets([self.path], inputs, replace=True, claimed=dict(claimed), owner=Path("the manifest"))
            # A pipe would block the run, a device swallow the lines, a broken link lead nowhere.
            if os.path.lexists(self.path) and not self.path.is_file():
                raise OutputError(f"{self.path}: not a regular file (--no-manifest writes none)")
            if self.path.exists() and not is_manifest(self.path):
                raise OutputError(f"{self.path}: not a manifest (not JSON lines of photos); refusing to append to it")
            if not os.access(self.path if self.path.exists() else self.path.parent, os.W_OK):
                raise OutputError(f"{self.path}: permission denied")
        except OutputError as error:
            raise OutputError(f"cannot write the manifest: {error}") from None

    def append(self, record: PhotoRecord) -> None:
        if self.file is None:
            self.file = self._open()
        self.file.write(record.manifest_line() + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())

    def _open(self):
        try:
            file = open(self.path, "a+", encoding="utf-8")
            file.seek(0, os.SEEK_END)
            if file.tell() > 0:  # a line cut short by a kill must not swallow the next one
                file.seek(file.tell() - 1)
                if file.read(1) != "\n":
                    file.write("\n")
        except OSError as error:
            raise OutputError(f"{self.path}: cannot write the manifest ({error.strerror or error})") from None
        return file

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def is_manifest(path: Path) -> bool:
    """True for an empty file or one that starts as every manifest line does (even one a kill cut short)."""
    try:
        with open(path, "rb") as file:
            start = file.read(len(MANIFEST_START))
    except OSError:
        return False
    return start in (b"", MANIFEST_START)


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
    (missing, an output in the way) come first, as failed; with `skip_existing`, outputs that
    are complete are kept, those missing, cut short or unreadable are written, and photos
    whose outputs are all complete are skipped. One bad photo never stops the batch. Each record is
    appended to `manifest` (JSON lines) when it is known. `runner` runs the photos: by
    default here, one model for all (`LocalRunner`); `ppd_core.ray_batch.RayRunner` on Ray.
    """
    options = options or JobOptions()
    options.validate()
    plan = plan_batch(photos, kinds, options, output=output, replace=replace, skip_existing=skip_existing)
    log = Manifest(Path(manifest)) if manifest is not None else None
    if log is not None:
        log.check(plan.inputs, plan.claimed)
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
