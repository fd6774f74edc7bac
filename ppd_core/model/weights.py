"""Finding (and, when allowed, downloading) the released weight files, and which model they make.

Four files, two ways to run Pixel-Perfect Depth:
- MoGe-2 semantics: `ppd_moge.pth` (the DiT; the authors distribute it outside the Hugging
  Face hub) with MoGe-2's `moge2.pt`, which is both the semantic encoder and the metric
  geometry (scale, focal length, sky mask);
- Depth Anything V2 semantics: `ppd.pth` with `depth_anything_v2_vitl.pth` (CC-BY-NC-4.0),
  plus `moge2.pt` for metric geometry when it is there.
Each file is looked for in an explicit folder (`--weights DIR` or `PPD_WEIGHTS`), else in the
folder of files added by hand (`ppd-weights add FILE`), else the Hugging Face cache, else
downloaded with huggingface-hub unless HF_HUB_OFFLINE is set (a licence that restricts use is
said before the download). Run `ppd-weights download` (or `python -m ppd_core.model.weights
download`) to fetch them ahead of time, `ppd-weights where` to see which model the files make.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from huggingface_hub import try_to_load_from_cache

from ..errors import BadInputError, PPDError, WeightsMissingError
from ..options import SEMANTICS
from ..progress import ProgressCallback
from ..cache import cache_folder
from ..weight_sources import DA2, MOGE2, PPD, PPD_MOGE, SOURCES, VIDEO_SOURCES, VIDEO_TERMS, WeightSource, manual_steps
from .download import DOWNLOAD_HINT, Transfer, download_source


SUFFIXES = (".pth", ".pt", ".safetensors")


@dataclass(frozen=True)
class ModelFiles:
    """The weight files of one runnable model."""

    semantics: str            # "moge2" or "da2"
    ppd: Path                 # ppd_moge.pth or ppd.pth
    encoder: Path             # moge2.pt or depth_anything_v2_vitl.pth
    moge2: Optional[Path]     # MoGe-2 for metric geometry (the encoder itself with MoGe-2 semantics)

    def describe(self) -> str:
        """One line: which model these files make."""
        if self.semantics == "moge2":
            return "PPD with MoGe-2 semantics and MoGe-2 geometry"
        if self.moge2 is not None:
            return "PPD with Depth Anything V2 semantics and MoGe-2 geometry"
        return "PPD with Depth Anything V2 semantics; no MoGe-2 (no metric scale or sky mask of its own)"


def offline() -> bool:
    """True when HF_HUB_OFFLINE is set to a true value (read now, not at import)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _in_folder(folder: Path, source: WeightSource) -> Optional[Path]:
    stem = Path(source.name).stem
    for suffix in SUFFIXES:
        candidate = folder / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _in_hf_cache(source: WeightSource) -> Optional[Path]:
    repo = source.repo()
    if repo is None:
        return None
    found = try_to_load_from_cache(repo, source.repo_filename)
    return Path(found) if isinstance(found, str) and Path(found).is_file() else None


def added_weights_folder() -> Path:
    """Where `ppd-weights add` puts files downloaded by hand (the hub does not have them all);
    looked at, file by file, before the Hugging Face cache."""
    return cache_folder() / "weights"


def _weights_folder(folder: Union[str, Path, None]) -> Optional[Path]:
    """The explicit folder (argument, else PPD_WEIGHTS), checked; None when there is none."""
    folder = folder if folder not in (None, "") else os.environ.get("PPD_WEIGHTS") or None
    if folder is None:
        return None
    folder = Path(folder).expanduser()
    if folder.is_file():
        raise WeightsMissingError(f"weights {folder} is a file: pass the folder that holds the weight files")
    if not folder.is_dir():
        raise WeightsMissingError(f"weights folder {folder} does not exist; {DOWNLOAD_HINT}")
    return folder


def _names(sources) -> str:
    return " and ".join(source.name for source in sources)


def _not_on_hub(sources) -> str:
    """Those of `sources` with no hub repository, each with the variable that names one (the others
    were downloaded, or not tried because one of these was missing)."""
    return "; ".join(manual_steps(source) for source in sources if source.repo() is None)


def find_weights(
    folder: Union[str, Path, None] = None,
    *,
    semantics: str = "auto",
    geometry: bool = True,
    download: Optional[bool] = None,
    on_progress: Optional[ProgressCallback] = None,
) -> ModelFiles:
    """The files of the model to run, found, and downloaded when allowed.

    `semantics` "moge2" needs ppd_moge.pth and moge2.pt; "da2" needs ppd.pth and
    depth_anything_v2_vitl.pth, with moge2.pt for metric geometry when `geometry` and it can
    be had; "auto" is "moge2" when its two files are at hand, else "da2". An explicit folder
    (argument, else PPD_WEIGHTS) is the only place looked at: the user said where the files
    are. Otherwise the Hugging Face cache is searched, then missing files are downloaded when
    `download` is True, or None and HF_HUB_OFFLINE is not set.
    """
    if semantics not in SEMANTICS:
        raise BadInputError(f"semantics {semantics!r} is not one of {', '.join(SEMANTICS)}")
    where = _weights_folder(folder)
    added = added_weights_folder()
    found = {source: (_in_folder(where, source) if where else
                      (_in_folder(added, source) if added.is_dir() else None) or _in_hf_cache(source))
             for source in SOURCES}
    allowed = where is None and ((not offline()) if download is None else download)

    def fetch(source: WeightSource) -> Optional[Path]:
        if found[source] is None and allowed and source.repo() is not None:
            found[source] = download_source(source, on_progress=on_progress)
        return found[source]

    def missing(sources) -> WeightsMissingError:
        absent = [source for source in sources if found[source] is None]
        if where is not None:
            place = f"weights folder {where} lacks {_names(absent)}"
        elif not allowed:
            why = "downloads are off (HF_HUB_OFFLINE)" if offline() else "downloading was not allowed"
            place = f"model weights missing: {_names(absent)} not in the Hugging Face cache and {why}"
        else:  # a download was allowed: what is still absent has no hub repository
            return WeightsMissingError(f"model weights missing: {_not_on_hub(absent)}")
        manual = _not_on_hub(absent)
        return WeightsMissingError(f"{place}; {manual or DOWNLOAD_HINT}")

    moge_ready = found[PPD_MOGE] is not None and found[MOGE2] is not None
    if semantics == "moge2" or (semantics == "auto" and moge_ready):
        if fetch(PPD_MOGE) is None or fetch(MOGE2) is None:
            raise missing((PPD_MOGE, MOGE2))
        return ModelFiles("moge2", found[PPD_MOGE], found[MOGE2], found[MOGE2])
    if fetch(PPD) is None or fetch(DA2) is None:
        raise missing((PPD, DA2))
    return ModelFiles("da2", found[PPD], found[DA2], fetch(MOGE2) if geometry else None)


def weights_record(folder: Union[str, Path, None] = None, semantics: str = "auto") -> dict:
    """Which model the weights at hand make (nothing is downloaded), JSON-ready: {"ready": True,
    "model", "semantics", "folder", "files"} or {"ready": False, "problem"}. The worker's
    handshake and `ppd-weights where --json` (the Blender add-on's weights check) say this."""
    try:
        files = find_weights(folder, semantics=semantics, download=False)
    except PPDError as error:
        return {"ready": False, "problem": " ".join(str(error).split())}
    paths = dict.fromkeys(str(path) for path in (files.ppd, files.encoder, files.moge2) if path is not None)
    return {"ready": True, "model": files.describe(), "semantics": files.semantics, "folder": str(files.ppd.parent),
            "files": list(paths)}


def download_to(folder: Optional[Path], sources=SOURCES, on_transfer=None) -> list[Path]:
    """Download `sources` (those the hub has) into the Hugging Face cache, or into `folder`;
    `on_transfer(Transfer)` hears the bytes as they arrive."""
    paths = []
    for source in sources:
        if source.repo() is None:
            print(manual_steps(source), file=sys.stderr)
            continue
        print(f"{source.name}: https://huggingface.co/{source.repo()} (licence: {source.licence})", file=sys.stderr)
        paths.append(download_source(source, folder, on_transfer=on_transfer))
    return paths


def add_file(file: Path, name: Optional[str] = None, folder: Optional[Path] = None, force: bool = False) -> Path:
    """Check a weight file downloaded by hand and copy it, under its folder name, into `folder`
    (default: `added_weights_folder`, looked at before the Hugging Face cache); the copy takes
    its name only when complete. `name` defaults to the file's own name."""
    from .weight_check import check_weight_file  # loads torch: only for this command

    file = Path(file).expanduser()
    names = {source.name for source in SOURCES + VIDEO_SOURCES}
    # A file saved under its hub name (Pi3's model.safetensors) is known by it when no other file shares it.
    hub_names = [source.name for source in SOURCES + VIDEO_SOURCES if source.repo_filename == file.name]
    name = name or (file.name if file.name in names or len(hub_names) != 1 else hub_names[0])
    if name not in names:
        raise BadInputError(f"{file}: which weight file is it? Name it with --as ({', '.join(sorted(names))})")
    if not file.is_file():
        raise BadInputError(f"{file}: {'not a file' if file.exists() else 'no such file'}")
    what = check_weight_file(file, name)
    folder = Path(folder).expanduser() if folder is not None else added_weights_folder()
    target = folder / name
    if target.exists() and not force:
        raise BadInputError(f"{target} already exists (use --force to replace it)")
    folder.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".part")
    os.close(handle)
    try:
        shutil.copyfile(file, temporary)
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    print(f"{target}: {what}", file=sys.stderr)
    return target


def _ask_to_accept(terms: str) -> bool:
    """Show `terms` and ask for a "yes" on a terminal; False where nobody can answer."""
    print(terms, file=sys.stderr)
    if not sys.stdin.isatty():
        return False
    answer = input("Type yes to accept these terms and download: ")
    return answer.strip().lower() == "yes"


def _print_transfer(transfer: Transfer) -> None:
    """One JSON line per progress report, for a program that runs `ppd-weights download --json`."""
    print(json.dumps({"file": transfer.name, "bytes": transfer.done, "total": transfer.total,
                      "bytes_per_second": round(transfer.speed)}), flush=True)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="ppd-weights", description="Find or download the model weights.")
    sub = parser.add_subparsers(dest="command", required=True)
    get = sub.add_parser("download", help="download " + ", ".join(source.name for source in SOURCES))
    get.add_argument("--dir", type=Path, help="download into this folder instead of the Hugging Face cache")
    get.add_argument("--only", nargs="+", choices=[source.name for source in SOURCES], metavar="FILE",
                     help="download only these files")
    get.add_argument("--json", action="store_true", help="report progress as JSON lines on stdout")
    get.add_argument("--video", action="store_true",
                     help="download the video model's files instead (" + ", ".join(s.name for s in VIDEO_SOURCES)
                          + "): their terms are shown first and must be accepted")
    get.add_argument("--accept-video-terms", action="store_true",
                     help="accept the video files' terms (Pi3: CC BY-NC 4.0, non-commercial; ppvd.pth: no licence "
                          "stated) without being asked")
    add = sub.add_parser("add", help="check a weight file downloaded by hand (ppd_moge.pth: the authors publish it "
                                     "outside the hub) and put it where the command finds it")
    add.add_argument("file", type=Path, help="the downloaded file")
    add.add_argument("--as", dest="name", choices=[source.name for source in SOURCES + VIDEO_SOURCES],
                     help="which weight file it is (default: its file name)")
    add.add_argument("--dir", type=Path, help=f"put it in this folder instead of {added_weights_folder()}")
    add.add_argument("--force", action="store_true", help="replace a file of that name already there")
    where = sub.add_parser("where", help="print which model the weights make and where they are (no download)")
    where.add_argument("--weights", type=Path, help="folder to look in first")
    where.add_argument("--semantics", choices=SEMANTICS, default="auto")
    where.add_argument("--json", action="store_true", help="print one JSON object (ready, model, files, or problem)")
    where.add_argument("--video", action="store_true", help="the video model's files instead, and their terms")
    args = parser.parse_args(argv)
    if args.command == "where" and args.video:
        from .video_weights import video_weights_record

        record = video_weights_record(args.weights)
        print(json.dumps(record) if args.json else "\n".join(record.get("files") or [record["problem"]]), flush=True)
        return 0 if args.json or record["ready"] else 1
    if args.command == "where" and args.json:
        print(json.dumps(weights_record(args.weights, args.semantics)), flush=True)
        return 0
    try:
        if args.command == "add":
            print(add_file(args.file, args.name, args.dir, args.force))
            return 0
        if args.command == "download" and args.video:
            from .video_weights import download_video_weights

            accepted = args.accept_video_terms or _ask_to_accept(VIDEO_TERMS)
            for path in download_video_weights(args.dir, accepted, _print_transfer if args.json else None):
                print(json.dumps({"done": str(path)}) if args.json else path, flush=True)
            return 0
        if args.command == "download":
            sources = [source for source in SOURCES if not args.only or source.name in args.only]
            for path in download_to(args.dir, sources, _print_transfer if args.json else None):
                print(json.dumps({"done": str(path)}) if args.json else path, flush=True)
            return 0
        files = find_weights(args.weights, semantics=args.semantics, download=False)
    except PPDError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(files.describe())
    for path in dict.fromkeys(path for path in (files.ppd, files.encoder, files.moge2) if path is not None):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
