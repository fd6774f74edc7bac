"""A shoot of small random photos and the flags for a fast small-network run, for the batch tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

H, W = 48, 64
PHOTOS = 11  # and one corrupt file: a dozen


def small_run(weights) -> list[str]:
    """Flags for a fast run of the small random network; solids, since its depth is noise."""
    return ["--weights", str(weights), "--resolution", str(H * W), "--steps", "2", "--preset", "tabletop", "--solid"]


def make_shoot(folder: Path, photos: int = PHOTOS) -> list[Path]:
    """`photos` random photos and a corrupt one in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    made = []
    for number in range(photos):
        made.append(folder / f"img{number:02d}.png")
        Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(made[-1])
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is no jpeg")
    return made
