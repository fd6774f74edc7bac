"""Finding the video model's files (ppvd.pth, Pi3's pi3.safetensors, and moge2.pt for the clip's
scale and camera), and fetching them only when asked, after their terms are accepted.

Looked for where the image model's files are (`--weights DIR` or PPD_WEIGHTS, else the files
added with `ppd-weights add`, else the Hugging Face cache); a run never downloads them: Pi3's
licence is non-commercial and ppvd.pth comes with none, so `ppd-weights download --video`
shows those terms (`weight_sources.VIDEO_TERMS`) and wants them accepted first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

from ..errors import BadInputError, PPDError, WeightsMissingError
from ..progress import ProgressCallback
from ..weight_sources import MOGE2, PI3, PPVD, VIDEO_SOURCES, VIDEO_TERMS, WeightSource, manual_steps
from .download import Transfer, download_source
from .weights import _in_folder, _in_hf_cache, _weights_folder, added_weights_folder

VIDEO_DOWNLOAD_HINT = ("run `ppd-weights download --video` (it shows their terms and asks you to accept them), or "
                       "`ppd-weights add FILE` for a file you downloaded")


@dataclass(frozen=True)
class VideoFiles:
    """The files of the video model, and MoGe-2 (None when absent) for the clip's scale and camera."""

    ppvd: Path
    pi3: Path
    moge2: Optional[Path]

    def describe(self) -> str:
        geometry = "MoGe-2 scale and camera" if self.moge2 is not None else "no MoGe-2 (a depth range gives the scale)"
        return f"Pixel-Perfect Video Depth (Pi3 semantics), {geometry}"


def _find(source: WeightSource, where: Optional[Path]) -> Optional[Path]:
    if where is not None:
        return _in_folder(where, source)
    added = added_weights_folder()
    return (_in_folder(added, source) if added.is_dir() else None) or _in_hf_cache(source)


def find_video_weights(folder: Union[str, Path, None] = None) -> VideoFiles:
    """The video model's files at hand (nothing is downloaded); `WeightsMissingError` saying
    which are missing and how to get them."""
    where = _weights_folder(folder)
    found = {source: _find(source, where) for source in (*VIDEO_SOURCES, MOGE2)}
    absent = [source for source in VIDEO_SOURCES if found[source] is None]
    if absent:
        place = f"weights folder {where}" if where is not None else "the added weights and the Hugging Face cache"
        names = " and ".join(source.name for source in absent)
        raise WeightsMissingError(f"video weights missing: {names} not in {place}; {VIDEO_DOWNLOAD_HINT}")
    return VideoFiles(found[PPVD], found[PI3], found[MOGE2])


def video_weights_record(folder: Union[str, Path, None] = None) -> dict:
    """JSON-ready: {"ready": True, "model", "files"} or {"ready": False, "problem"}, and the terms."""
    try:
        files = find_video_weights(folder)
    except PPDError as error:
        return {"ready": False, "problem": " ".join(str(error).split()), "terms": VIDEO_TERMS}
    paths = [str(path) for path in (files.ppvd, files.pi3, files.moge2) if path is not None]
    return {"ready": True, "model": files.describe(), "files": paths, "terms": VIDEO_TERMS}


def download_video_weights(folder: Optional[Path], accepted: bool,
                           on_transfer: Optional[Callable[[Transfer], None]] = None,
                           on_progress: Optional[ProgressCallback] = None) -> list[Path]:
    """Fetch the video files not already at hand: Pi3 from the hub (into `folder`, else its
    cache), ppvd.pth from where its authors publish it (into `folder`, else the added weights'
    folder). Refused (`BadInputError`) unless the terms were `accepted`."""
    from .drive_download import download_published  # urllib and the page parser: only for this

    if not accepted:
        raise BadInputError("the video files' terms were not accepted: nothing was downloaded (answer yes, or pass "
                            "--accept-video-terms, once you have read them)")
    where = Path(folder).expanduser() if folder is not None else None
    paths = []
    for source in VIDEO_SOURCES:
        present = _find(source, where)
        if present is not None:
            paths.append(present)
        elif source.repo() is not None:
            paths.append(download_source(source, where, on_progress=on_progress, on_transfer=on_transfer))
        elif source.url:
            paths.append(download_published(source, where or added_weights_folder(), on_progress=on_progress,
                                            on_transfer=on_transfer))
        else:
            raise WeightsMissingError(manual_steps(source))
    return paths
