"""The batch on a Ray cluster with Ray Data: the photo list is a dataset, mapped over a pool of
actors that each keep one loaded model (one actor per GPU, or N CPU actors).

Each actor runs the same `ppd_core.batch.run_job` (so `ppd_core.pipeline.run_photo`) as the
command does in one process. Ray restarts an actor that dies (a killed process, a lost node)
and retries the photos it held, up to `PHOTO_RETRIES` more times; a photo still without a
result is recorded as failed and the others go on. Outputs are written by whichever node runs
the photo, so photos and outputs must be on storage every node reaches under the same path
(the paths are made absolute here, on the driver). Ray is an optional extra: `pip install
'depth-from-image[ray]'`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import warnings
from pathlib import Path
from typing import Iterator, Optional, Sequence

from ppd_core.batch import Job, PhotoRecord, output_strings, outputs_complete, run_job
from ppd_core.errors import BadInputError, first_line
from ppd_core.files.staging import remove_stale_staging
from ppd_core.options import JobOptions

PHOTO_RETRIES = 3
"""Retries of a photo whose actor died while it held it (4 attempts in all): enough for a
lost node or a killed process, few enough that a photo that kills every actor it meets (out
of memory) is given up rather than tried forever."""
RAY_MISSING = "--ray needs Ray Data: pip install 'depth-from-image[ray]' (or pip install 'ray[data]')"


class PhotoWorker:
    """A Ray Data actor: one model, loaded with its first photo and kept for the rest."""

    def __init__(self, options: JobOptions, replace: bool, threads: int) -> None:
        import torch  # only to give the network the CPUs Ray gave this actor

        from ppd_core.photo_depth import ModelCache

        torch.set_num_threads(threads)
        self.options = options
        self.replace = replace
        self.models = ModelCache()

    def __call__(self, row: dict) -> dict:
        job = Job(Path(row["photo"]), {kind: Path(path) for kind, path in json.loads(row["outputs"]).items()},
                  tuple(json.loads(row["kept"])), json.loads(row["redone"]))
        if not self.replace and outputs_complete(job.written):
            # An earlier attempt moved them in, then its actor died before it could report.
            record = PhotoRecord(str(job.photo), {}, "done")
        else:
            record = run_job(job, self.options, models=self.models, replace=self.replace)
        return {"photo": row["photo"], "status": record.status, "seconds": record.seconds,
                "error": record.error or "", "stats": json.dumps(record.stats)}


def pool_shape(resources: dict, actors: Optional[int]) -> tuple[int, float, float]:
    """(actors, CPUs each, GPUs each) for a cluster's resources (`ray.cluster_resources()`):
    one actor per GPU by default, else one; more actors than GPUs share them; the CPUs are
    split evenly."""
    cpus, gpus = float(resources.get("CPU", 0)), float(resources.get("GPU", 0))
    count = actors if actors is not None else max(1, int(gpus))
    if count < 1:
        raise BadInputError(f"--ray-actors must be at least 1, got {count}")
    if not gpus and count > cpus:
        raise BadInputError(f"--ray-actors {count}: the Ray cluster has {cpus:g} CPUs, and each actor needs one")
    return count, max(1.0, float(int(cpus // count))), min(1.0, gpus / count) if gpus else 0.0


def _record(row: dict, job: Job) -> PhotoRecord:
    """An actor's result as the record of the photo and outputs the caller named (the actor
    saw them as absolute paths)."""
    stats = json.loads(row["stats"])
    if stats:
        stats["outputs"] = output_strings(job.outputs)
    error = row["error"].replace(row["photo"], str(job.photo)) if row["error"] else None
    return job.record(row["status"], row["seconds"], error, stats)


def import_ray_data():
    """The `ray` module, with Ray Data imported (seconds; an optional extra). Done when a
    `RayRunner` is made, so that a missing Ray Data (or one of its dependencies) is a usage
    error before any photo is planned or any manifest line written."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as error:
        raise BadInputError(f"{RAY_MISSING} ({error})") from None
    return ray


REACH_TIMEOUT_S = 5.0
"""How long a Ray address may take to accept a connection before it is called unreachable."""


def check_reachable(address: Optional[str]) -> None:
    """An address naming a host and port (HOST:PORT, ray://HOST:PORT) must accept a TCP
    connection within `REACH_TIMEOUT_S`: `ray.init` waits for an unreachable one for good
    (over 7 minutes seen). "auto" and no address are Ray's own to look up."""
    if address is None or address in ("auto", "local"):
        return
    host, colon, port = address.removeprefix("ray://").rpartition(":")
    if not colon or not host or not port.isdigit():
        raise BadInputError(f"--ray-address {address}: expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=REACH_TIMEOUT_S):
            pass
    except (OSError, OverflowError) as error:
        reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
        raise BadInputError(f"cannot reach the Ray cluster at {address} ({reason})") from None


@contextlib.contextmanager
def _data_context(quiet: bool) -> Iterator[None]:
    """Ray Data settings for one batch: a photo whose retries ran out is a failed photo, not
    the end of the run; progress bars unless quiet. The old settings come back afterwards."""
    import ray.data

    context = ray.data.DataContext.get_current()
    log = logging.getLogger("ray.data")
    saved = context.max_errored_blocks, context.enable_progress_bars, log.level
    context.max_errored_blocks = -1
    if quiet:
        context.enable_progress_bars = False
        log.setLevel(logging.ERROR)  # not even "progress bars disabled"
    try:
        yield
    finally:
        context.max_errored_blocks, context.enable_progress_bars = saved[:2]
        log.setLevel(saved[2])


class RayRunner:
    """Runs the photos on Ray with Ray Data: a pool of `actors` actors (default: one per GPU,
    else one), on the cluster at `address` ("auto", "ray://host:10001"; default: the Ray this
    process already uses, else `ray.init()`, which joins a local `ray start` or starts one)."""

    def __init__(self, actors: Optional[int] = None, address: Optional[str] = None, quiet: bool = False) -> None:
        self.ray = import_ray_data()
        check_reachable(address)
        self.actors = actors
        self.address = address
        self.quiet = quiet

    def __call__(self, jobs: Sequence[Job], options: JobOptions, replace: bool) -> Iterator[PhotoRecord]:
        ray = self.ray
        started = not ray.is_initialized()
        if started:
            quiet = dict(logging_level=logging.ERROR, log_to_driver=False) if self.quiet else {}
            try:
                ray.init(address=self.address, **quiet)
            except Exception as error:  # Ray says why in many ways (ConnectionError, RuntimeError...)
                where = f" at {self.address}" if self.address else ""
                raise BadInputError(f"cannot start or join Ray{where}: {first_line(error)}") from None
        try:
            yield from self._run(ray, jobs, options, replace)
        finally:
            if started:
                ray.shutdown()
            for folder in {path.parent for job in jobs for path in job.outputs.values()}:
                remove_stale_staging(folder)  # left by an actor killed mid-photo (its retry wrote anew)

    def _run(self, ray, jobs: Sequence[Job], options: JobOptions, replace: bool) -> Iterator[PhotoRecord]:
        actors, cpus, gpus = pool_shape(ray.cluster_resources(), self.actors)
        by_path = {str(job.photo.absolute()): job for job in jobs}
        rows = [{"photo": path, "kept": json.dumps(job.kept), "redone": json.dumps(job.redone),
                 "outputs": json.dumps({kind: str(file.absolute()) for kind, file in job.outputs.items()})}
                for path, job in by_path.items()]
        error = None
        with _data_context(self.quiet):
            dataset = ray.data.from_items(rows, override_num_blocks=len(rows))  # one photo per task
            with warnings.catch_warnings():  # until Ray 2.64 the one way to cap an actor's task retries
                warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
                results = dataset.map(PhotoWorker, fn_constructor_kwargs=dict(options=options, replace=replace,
                                                                              threads=int(cpus)),
                                      compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=cpus,
                                      num_gpus=gpus, max_task_retries=PHOTO_RETRIES)
            try:
                for row in results.iter_rows():
                    if row["photo"] in by_path:  # (a result delivered twice, after a retry, counts once)
                        yield _record(row, by_path.pop(row["photo"]))
            except Exception as failure:  # the run as a whole broke (no actor could start): the rest fail with it
                error = f"Ray: {type(failure).__name__}: {first_line(failure)}"
        for job in by_path.values():
            yield job.record("failed", error=error or f"no result after {PHOTO_RETRIES + 1} attempts: the Ray actor "
                                                      f"running it died each time (out of memory? see Ray's logs)")
