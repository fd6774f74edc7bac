"""Photos per minute of a batch against one-by-one runs of the command, and on Ray with N actors.

Prints, for the same photos and options in one run, the wall time, photos per minute and the
mean seconds per photo the manifest records (the photo's own work, without start-up) of
  - one by one: `python -m ppd_core.mesh PHOTO ...` once per photo (imports and model load each time),
  - one batch: `python -m ppd_core.mesh FOLDER ...` (one process, the model loaded once), with
    its ratio to one by one,
  - with --ray-actors 1 2 ...: the same batch through `ppd_core.batch.run_batch` on a local Ray
    with all CPUs, split between N actors; the wall time includes starting Ray's actors
    (imports, model load), "first" is the time to the first finished photo.
By default the small random-weight network of the tests (tests/checkpoints.py) runs, so only
the ratios carry over to the released model; --weights DIR runs real weights.

    python benchmarks/batch_speed.py --photos 12 --ray-actors 1 2
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ppd_core.batch import read_manifest, run_batch  # noqa: E402
from ppd_core.options import JobOptions  # noqa: E402


def make_photos(folder: Path, count: int, width: int, height: int) -> list[Path]:
    """`count` smooth random photos (a gradient plus noise, so meshes are not all cut)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    ramp = np.linspace(0, 200, width)[None, :, None]
    photos = []
    for number in range(count):
        pixels = np.clip(ramp + rng.normal(0, 20, (height, width, 3)), 0, 255).astype(np.uint8)
        photos.append(folder / f"photo{number:03d}.png")
        Image.fromarray(pixels).save(photos[-1])
    return photos


def mean_seconds(manifest: Path) -> float:
    """The mean of the photos' own seconds in a manifest."""
    return float(np.mean([record["seconds"] for record in read_manifest(manifest)]))


def command_seconds(arguments: list[str]) -> float:
    """Wall seconds of one `python -m ppd_core.mesh` run (which must succeed)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ppd_core.mesh", *arguments], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def ray_batch(photos: list[Path], options: JobOptions, outputs: Path, actors: int) -> tuple[float, float, float]:
    """(wall seconds, seconds to the first finished photo, mean seconds per photo) of the batch
    on the local Ray with `actors` actors."""
    from ppd_core.ray_batch import RayRunner

    folder = outputs / f"ray{actors}"
    folder.mkdir()
    start = time.perf_counter()
    finished, own = [], []
    for record in run_batch(photos, ["npz"], options, output=folder, runner=RayRunner(actors, quiet=True)):
        assert record.status == "done", record.error
        finished.append(time.perf_counter() - start)
        own.append(record.seconds)
    return finished[-1], finished[0], float(np.mean(own))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=8)
    parser.add_argument("--size", default="320x240", help="photo width x height (default 320x240)")
    parser.add_argument("--resolution", type=int, default=320 * 240, help="network working area in pixels")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--weights", type=Path, help="real weights (default: the tests' small random network)")
    parser.add_argument("--ray-actors", type=int, nargs="*", default=[], metavar="N",
                        help="also run on a local Ray with N actors (needs the ray extra)")
    args = parser.parse_args()
    width, height = map(int, args.size.lower().split("x"))

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        weights = args.weights
        if weights is None:
            from tests.checkpoints import write_small_weights

            weights = write_small_weights(scratch / "weights")
        photos = make_photos(scratch / "shoot", args.photos, width, height)
        flags = ["--npz", "--solid", "--weights", str(weights), "--resolution", str(args.resolution),
                 "--steps", str(args.steps), "--preset", "indoor", "--quiet"]
        for name in ("single", "batch"):
            (scratch / name).mkdir()
        one_by_one = sum(command_seconds([str(photo), "-o", str(scratch / "single"), "--manifest",
                                          str(scratch / "single.jsonl"), *flags]) for photo in photos)
        batch = command_seconds([str(scratch / "shoot"), "-o", str(scratch / "batch"), "--manifest",
                                 str(scratch / "batch.jsonl"), *flags])

        def line(label: str, wall: float, own: float, note: str = "") -> None:
            print(f"{label:36s} {wall:7.1f} s {60 * len(photos) / wall:8.1f} photos/min {own:7.2f} s/photo  {note}")

        model = "real weights" if args.weights else "the small random-weight network"
        print(f"{len(photos)} photos {width}x{height}, {model}, resolution {args.resolution}, {args.steps} steps, "
              f"--npz --solid; {os.cpu_count()} CPU cores")
        line("one by one (a process per photo)", one_by_one, mean_seconds(scratch / "single.jsonl"))
        line("one batch (one process, one model)", batch, mean_seconds(scratch / "batch.jsonl"),
             f"{one_by_one / batch:.2f}x the photos per minute of one by one")
        if args.ray_actors:
            import ray  # optional: only with --ray-actors

            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR", log_to_driver=False)
            options = JobOptions(solid=True, weights=str(weights), resolution=args.resolution, steps=args.steps,
                                 preset="indoor")
            try:
                for actors in args.ray_actors:
                    wall, first, own = ray_batch(photos, options, scratch, actors)
                    line(f"Ray, {actors} actor{'s' if actors > 1 else ''} ({os.cpu_count() // actors} CPU each)", wall,
                         own, f"first photo after {first:.1f} s")
            finally:
                ray.shutdown()


if __name__ == "__main__":
    main()
