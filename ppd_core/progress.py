"""Progress reporting shared by every long step.

A callback receives (stage, fraction of that stage in [0, 1], short message). It may raise
`ppd_core.errors.Cancelled` to stop the work: that is the one cancellation mechanism, so
every long loop that reports progress is also a place where it can be cancelled.
"""

from __future__ import annotations

from typing import Callable, Optional

ProgressCallback = Callable[[str, float, str], None]


def report(callback: Optional[ProgressCallback], stage: str, fraction: float, message: str = "") -> None:
    """Call `callback` if there is one, with the fraction clamped to [0, 1]."""
    if callback is not None:
        callback(stage, min(1.0, max(0.0, float(fraction))), message)
