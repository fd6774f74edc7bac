"""The released weight files: their names, Hugging Face repositories, licences and sizes.

Standard library only: the Blender add-on shows this table (licences before a download);
`ppd_core.model.weights` finds and downloads the files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional


DOWNLOAD_HINT = "run `ppd-weights download`, or pass a folder holding them with --weights DIR (or PPD_WEIGHTS)"
"""What a command-line user does about missing weights (the Blender add-on says it in its own words)."""


@dataclass(frozen=True)
class WeightSource:
    """One released file: its name in a weights folder, where the hub has it, its licence."""

    name: str                 # the file's name in a weights folder
    repo_id: str              # its Hugging Face repository ("": none by default)
    repo_filename: str        # its name in that repository
    licence: str
    card: str                 # the model card or download page
    size_gb: float            # about how much a download is
    repo_variable: str = ""   # an environment variable that names another repository
    non_commercial: bool = False  # said before every download: the user must know before the bytes arrive
    elsewhere: str = ""       # where its authors publish it when the hub does not have it
    url: str = ""             # a direct link where its authors publish it (fetched when the hub has no copy)

    def repo(self) -> Optional[str]:
        """The repository to look in and download from: the environment's choice, else the default."""
        return (os.environ.get(self.repo_variable, "").strip() if self.repo_variable else "") or self.repo_id or None


PPD = WeightSource("ppd.pth", "gangweix/Pixel-Perfect-Depth", "ppd.pth", "see the model card",
                   "https://huggingface.co/gangweix/Pixel-Perfect-Depth", 2.0)
DA2 = WeightSource("depth_anything_v2_vitl.pth", "depth-anything/Depth-Anything-V2-Large", "depth_anything_v2_vitl.pth",
                   "CC-BY-NC-4.0, non-commercial use only", "https://huggingface.co/depth-anything/Depth-Anything-V2-Large",
                   1.3, non_commercial=True)
MOGE2 = WeightSource("moge2.pt", "Ruicheng/moge-2-vitl-normal", "model.pt", "MIT",
                     "https://huggingface.co/Ruicheng/moge-2-vitl-normal", 1.3, repo_variable="PPD_MOGE2_REPO")
PPD_MOGE = WeightSource("ppd_moge.pth", "", "ppd_moge.pth", "see the PPD repository",
                        "https://github.com/gangweix/pixel-perfect-depth", 2.0, repo_variable="PPD_MOGE_REPO",
                        elsewhere="its authors publish it on Google Drive, linked from the README of "
                                  "https://github.com/gangweix/pixel-perfect-depth")
SOURCES = (PPD, DA2, MOGE2, PPD_MOGE)
"""The image model's files; `ppd-weights download` fetches those the hub has."""

PPVD_PAGE = "https://github.com/gangweix/pixel-perfect-depth"
PI3 = WeightSource("pi3.safetensors", "yyfz233/Pi3", "model.safetensors", "CC BY-NC 4.0, strictly non-commercial use",
                   "https://huggingface.co/yyfz233/Pi3", 3.8, repo_variable="PPD_PI3_REPO", non_commercial=True)
PPVD = WeightSource("ppvd.pth", "", "ppvd.pth", "no licence stated by its authors", PPVD_PAGE, 2.2,
                    repo_variable="PPD_PPVD_REPO",
                    elsewhere=f"its authors publish it on Google Drive, linked from the README of {PPVD_PAGE}",
                    url="https://drive.google.com/uc?export=download&id=1IbMxrljpqkw92Z0G3CVEIrf-JffbI8sN")
VIDEO_SOURCES = (PPVD, PI3)
"""The video model's files (Pixel-Perfect Video Depth): fetched only when asked for by name and
after their terms (`VIDEO_TERMS`) are accepted, never as a side effect of a run."""

VIDEO_TERMS = (
    f"Video depth needs two more files, under their own terms. {PI3.name} (Pi3, {PI3.card}) is licensed "
    f"{PI3.licence}: do not use it, or results made with it, commercially. {PPVD.name} (Pixel-Perfect Video "
    f"Depth) is published by its authors on Google Drive ({PPVD_PAGE}) with no licence stated: use it for "
    "research, and ask its authors before anything else."
)
"""What a user reads, and accepts, before a video file is downloaded (the weights tool and the add-on)."""


def licence_notice(source: WeightSource) -> str:
    """The line said before `source` is downloaded when its licence restricts its use ("" otherwise)."""
    if not source.non_commercial:
        return ""
    return f"{source.name} is licensed {source.licence} ({source.card}): do not use its results commercially"


def manual_steps(source: WeightSource) -> str:
    """How to get a file the hub does not have: where its authors publish it, and the command that puts it in place."""
    return (f"{source.name}: {source.elsewhere}; download it there, then run `ppd-weights add <the downloaded file>` "
            f"(or set {source.repo_variable} to a Hugging Face repository that holds it)")
