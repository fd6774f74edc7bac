"""Where the product keeps what it makes or fetches for later runs (accuracy verdicts, weight
files added by hand): $PPD_CACHE_DIR, else $XDG_CACHE_HOME/depth-from-image, else
~/.cache/depth-from-image. Standard library only."""

from __future__ import annotations

import os
from pathlib import Path


def cache_folder() -> Path:
    """The product's cache folder (it may not exist yet)."""
    folder = os.environ.get("PPD_CACHE_DIR")
    if folder:
        return Path(folder).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "depth-from-image"
