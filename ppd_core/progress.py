"""Progress reporting shared by every long step.

A callback receives (stage, fraction of that stage in [0, 1], short message). It may raise
`ppd_core.errors.Cancelled` to stop the work: that is the one cancellation mechanism, so
every long loop that reports progress is also a place where it can be cancelled.
"""

from __future__ import annotations

from typing import Callable, Iterable, Optional

ProgressCallback = Callable[[str, float, str], None]

#: Stages of one photo's job in order, with their share of the whole job's time (they sum to 1).
JOB_STAGES: tuple[tuple[str, float], ...] = (
    ("load", 0.03), ("model", 0.07), ("encode", 0.05), ("diffusion", 0.45), ("geometry", 0.05),
    ("lift", 0.1), ("mesh", 0.15), ("export", 0.1),
)


def report(callback: Optional[ProgressCallback], stage: str, fraction: float, message: str = "") -> None:
    """Call `callback` if there is one, with the fraction clamped to [0, 1]."""
    if callback is not None:
        callback(stage, min(1.0, max(0.0, float(fraction))), message)


class JobFraction:
    """Turns (stage, fraction of that stage) into a fraction of the whole job that only goes up.

    `stages` lists (name, weight) in order; weights are normalised. A stage not listed keeps
    the fraction where it is (it still counts as a sign of life).
    """

    def __init__(self, stages: Iterable[tuple[str, float]]) -> None:
        weights = [(name, float(weight)) for name, weight in stages]
        total = sum(weight for _, weight in weights) or 1.0
        self.spans: dict[str, tuple[float, float]] = {}
        start = 0.0
        for name, weight in weights:
            self.spans[name] = (start / total, weight / total)
            start += weight
        self.fraction = 0.0

    def __call__(self, stage: str, fraction: float) -> float:
        start, width = self.spans.get(stage, (self.fraction, 0.0))
        return self.advance(start + width * min(1.0, max(0.0, float(fraction))))

    def advance(self, whole: float) -> float:
        """Move to `whole` (clamped to [current, 1]) and return the new fraction."""
        self.fraction = min(1.0, max(self.fraction, whole))
        return self.fraction


def duration_words(seconds: float) -> str:
    """A duration as people read it: "8 s", "3 min 05 s", "1 h 02 min"."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def progress_text(stage: str, message: str, elapsed: Optional[float] = None,
                  remaining: Optional[float] = None) -> str:
    """One progress event in words, the same for every front end: "diffusion: step 2/4 (41 s
    elapsed, about 40 s left)". A message that repeats the stage's name ("diffusion step
    2/4", "done") does not say it twice."""
    words = message.strip()
    if words.lower() == stage.lower():
        words = ""
    elif words.lower().startswith(stage.lower() + " "):
        words = words[len(stage) + 1:]
    text = f"{stage}: {words}" if words and stage else (words or stage)
    times = ([f"{duration_words(elapsed)} elapsed"] if elapsed is not None else []) + (
        [f"about {duration_words(remaining)} left"] if remaining is not None else [])
    return f"{text} ({', '.join(times)})" if times else text


def remaining_seconds(elapsed: float, whole: float) -> Optional[float]:
    """The time left at this pace, once enough of the job is done to tell (5 % and 2 s)."""
    if whole < 0.05 or elapsed < 2.0 or whole >= 1.0:
        return None
    return elapsed * (1.0 - whole) / whole
