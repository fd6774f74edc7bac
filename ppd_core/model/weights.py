"""Finding (and, when allowed, downloading) the two released weight files.

Order: an explicit folder (`--weights DIR` or the `PPD_WEIGHTS` environment variable), then
the Hugging Face cache, then a download with huggingface-hub unless HF_HUB_OFFLINE is set.
Run `ppd-weights download` (or `python -m ppd_core.model.weights download`) to fetch them ahead of time.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from huggingface_hub import hf_hub_download, try_to_load_from_cache
from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError

from ..errors import PPDError, WeightsMissingError
from ..progress import ProgressCallback, report


@dataclass(frozen=True)
class WeightSource:
    repo_id: str
    filename: str
    licence: str

    @property
    def url(self) -> str:
        return f"https://huggingface.co/{self.repo_id}"


PPD = WeightSource("gangweix/Pixel-Perfect-Depth", "ppd.pth", "see the model card")
ENCODER = WeightSource(
    "depth-anything/Depth-Anything-V2-Large", "depth_anything_v2_vitl.pth", "CC-BY-NC-4.0, non-commercial use only"
)
SOURCES = (PPD, ENCODER)
SUFFIXES = (".pth", ".safetensors")
DOWNLOAD_HINT = "run `ppd-weights download`, or pass a folder holding them with --weights DIR (or PPD_WEIGHTS)"


@dataclass(frozen=True)
class WeightFiles:
    ppd: Path
    encoder: Path


def offline() -> bool:
    """True when HF_HUB_OFFLINE is set to a true value (read now, not at import)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _in_folder(folder: Path, source: WeightSource) -> Optional[Path]:
    stem = Path(source.filename).stem
    for suffix in SUFFIXES:
        candidate = folder / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _in_hf_cache(source: WeightSource) -> Optional[Path]:
    found = try_to_load_from_cache(source.repo_id, source.filename)
    return Path(found) if isinstance(found, str) and Path(found).is_file() else None


HEARTBEAT_S = 2.0
"""Seconds between progress reports while a download runs (the worker's client treats a
long silence as a hung worker, and a weights file takes minutes to arrive)."""


def _download(source: WeightSource, on_progress: Optional[ProgressCallback], folder: Optional[Path] = None) -> Path:
    """hf_hub_download on a helper thread, reporting progress every HEARTBEAT_S seconds.

    A Cancelled raised by the callback stops the wait; the download thread then finishes
    (or fails) on its own in the background and never leaves a partial file in place.
    """
    kwargs = {"local_dir": str(folder)} if folder is not None else {}
    outcome: dict = {}

    def fetch() -> None:
        try:
            with _quiet_hub_retries():
                outcome["path"] = Path(hf_hub_download(source.repo_id, source.filename, **kwargs))
        except Exception as exc:  # reported on the caller's thread
            outcome["error"] = exc

    report(on_progress, "download", 0.0, f"downloading {source.filename} from {source.url} ({source.licence})")
    worker = threading.Thread(target=fetch, name=f"download {source.filename}", daemon=True)
    started = time.monotonic()
    worker.start()
    while worker.is_alive():
        worker.join(HEARTBEAT_S)
        if worker.is_alive():
            report(on_progress, "download", 0.0, f"downloading {source.filename} ({time.monotonic() - started:.0f} s)")
    if "error" in outcome:
        raise WeightsMissingError(f"could not download {source.filename} from {source.url}: {_download_problem(outcome['error'])}")
    report(on_progress, "download", 1.0, f"downloaded {source.filename}")
    return outcome["path"]


@contextlib.contextmanager
def _quiet_hub_retries():
    """huggingface-hub logs each of its connection retries as a warning; we report one line instead."""
    hub_logger = logging.getLogger("huggingface_hub")
    level = hub_logger.level
    hub_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        hub_logger.setLevel(level)


def _download_problem(error: Exception) -> str:
    """A short reason for a failed download, without huggingface-hub's paragraph of advice."""
    if isinstance(error, LocalEntryNotFoundError):
        return "cannot reach the Hugging Face Hub (no network?) and the file is not cached; " + DOWNLOAD_HINT
    if isinstance(error, (GatedRepoError, RepositoryNotFoundError)):
        return "the Hub refused access (log in with `hf auth login` if the repository is gated)"
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


def find_weights(
    folder: Union[str, Path, None] = None,
    *,
    download: Optional[bool] = None,
    on_progress: Optional[ProgressCallback] = None,
) -> WeightFiles:
    """Paths of ppd.pth and depth_anything_v2_vitl.pth (or their .safetensors).

    An explicit folder (argument, else `PPD_WEIGHTS`) must hold both files: the user said
    where they are. Otherwise the Hugging Face cache is searched, then the files are
    downloaded when `download` is True, or None and HF_HUB_OFFLINE is not set.
    """
    folder = folder if folder not in (None, "") else os.environ.get("PPD_WEIGHTS") or None
    if folder is not None:
        folder = Path(folder).expanduser()
        if folder.is_file():
            raise WeightsMissingError(
                f"weights {folder} is a file: pass the folder that holds ppd.pth and depth_anything_v2_vitl.pth"
            )
        if not folder.is_dir():
            raise WeightsMissingError(f"weights folder {folder} does not exist; {DOWNLOAD_HINT}")
        found = {s: _in_folder(folder, s) for s in SOURCES}
        missing = [s.filename for s, p in found.items() if p is None]
        if missing:
            raise WeightsMissingError(f"weights folder {folder} lacks {' and '.join(missing)}; {DOWNLOAD_HINT}")
        return WeightFiles(found[PPD], found[ENCODER])

    found = {s: _in_hf_cache(s) for s in SOURCES}
    allowed = (not offline()) if download is None else download
    for source, path in found.items():
        if path is None and allowed:
            found[source] = _download(source, on_progress)
    missing = [s.filename for s, p in found.items() if p is None]
    if missing:
        why = "downloads are off (HF_HUB_OFFLINE)" if offline() else "downloading was not allowed"
        raise WeightsMissingError(
            f"model weights missing: {' and '.join(missing)} not in the Hugging Face cache and {why}; {DOWNLOAD_HINT}"
        )
    return WeightFiles(found[PPD], found[ENCODER])


def download_to(folder: Optional[Path]) -> WeightFiles:
    """Download both files into the Hugging Face cache, or into `folder` when given."""
    paths = []
    for source in SOURCES:
        print(f"{source.filename}: {source.url} (licence: {source.licence})", file=sys.stderr)
        paths.append(_download(source, None, folder))
    return WeightFiles(*paths)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="ppd-weights", description="Find or download the PPD weights.")
    sub = parser.add_subparsers(dest="command", required=True)
    get = sub.add_parser("download", help="download ppd.pth and depth_anything_v2_vitl.pth")
    get.add_argument("--dir", type=Path, help="download into this folder instead of the Hugging Face cache")
    where = sub.add_parser("where", help="print where the weights would be loaded from (no download)")
    where.add_argument("--weights", type=Path, help="folder to look in first")
    args = parser.parse_args(argv)
    try:
        if args.command == "download":
            print("The encoder weights (Depth-Anything-V2-Large) are CC-BY-NC-4.0: non-commercial use only.", file=sys.stderr)
            files = download_to(args.dir)
        else:
            files = find_weights(args.weights, download=False)
    except PPDError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(files.ppd)
    print(files.encoder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
