"""Cancellation points inside the networks, so that a cancel lands within about a second.

The progress callback raising `Cancelled` is the one way to cancel (`ppd_core.progress`),
but a diffusion step of the released network at 1024x768 takes tens of seconds on a CPU,
so the networks ask again while they run: `cancel_points(check)` makes `check` the one that
`poll()` calls on this thread, and the networks poll before each transformer block of the
DiT, DINOv2 and MoGe-2, before each residual block of MoGe-2's neck and heads, and between
the head groups of an attention on the CPU (a block there is seconds long at fine grids).

The check lives in a context variable rather than travelling as an argument: each thread
(a worker's job, a Ray actor) has its own, and the blocks that `torch.compile` compiles see
no new input; inside code being traced `poll` does nothing.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Callable, Iterator, Optional

import torch

from ..progress import ProgressCallback

Check = Callable[[], None]
"""Returns, or raises (`Cancelled`) to stop the network where it is."""

_CHECK: contextvars.ContextVar[Optional[Check]] = contextvars.ContextVar("ppd_cancel_check", default=None)


@contextlib.contextmanager
def cancel_points(check: Optional[Check]) -> Iterator[None]:
    """While inside, `poll()` on this thread calls `check` (None: polls do nothing)."""
    token = _CHECK.set(check)
    try:
        yield
    finally:
        _CHECK.reset(token)


def poll() -> None:
    """A cancellation point: call the check of `cancel_points`, if there is one."""
    if torch.compiler.is_compiling():
        return
    check = _CHECK.get()
    if check is not None:
        check()


def polling() -> bool:
    """True when a check is set: work may then be split where it otherwise would not be."""
    return _CHECK.get() is not None and not torch.compiler.is_compiling()


class RepeatingProgress:
    """A progress callback that remembers its last report, so that a cancellation point can
    repeat it (`check`): the callback, which may raise `Cancelled`, is asked again without
    a new stage or fraction to show."""

    def __init__(self, callback: Optional[ProgressCallback]) -> None:
        self.callback = callback
        self.last: Optional[tuple[str, float, str]] = None

    def __call__(self, stage: str, fraction: float, message: str = "") -> None:
        self.last = (stage, fraction, message)
        if self.callback is not None:
            self.callback(stage, fraction, message)

    def check(self) -> None:
        if self.callback is not None and self.last is not None:
            self.callback(*self.last)
