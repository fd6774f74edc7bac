"""Wall-clock timing for the benchmark scripts."""

from __future__ import annotations

import time
from typing import Callable


def seconds(job: Callable[[], object], repeat: int) -> tuple[float, object]:
    """Best wall time of `repeat` runs of `job` and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = job()
        best = min(best, time.perf_counter() - start)
    return best, result
