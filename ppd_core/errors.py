"""Exceptions a user can act on; each carries the worker protocol's error kind (standard library only)."""

import textwrap
from typing import Optional


def brief(text: object, limit: int) -> str:
    """`text` as one line of at most `limit` characters, cut after a whole word (inside one only
    when its first word alone is longer: a path, say), the cut marked with "…"."""
    line = " ".join(str(text).split())
    if len(line) <= limit:
        return line
    cut = textwrap.shorten(line, width=limit, placeholder=" …")
    return cut if cut != "…" else line[: limit - 1] + "…"


def first_line(error: BaseException, limit: int = 200) -> str:
    """The first line of an error's message, `brief`ed ("" for an empty message): the rest of
    a library's message is usually its traceback-like detail."""
    text = str(error).strip()
    return brief(text.splitlines()[0], limit) if text else ""


def is_out_of_memory(error: BaseException) -> bool:
    """True for host, CUDA and MPS out-of-memory errors (torch's are RuntimeErrors by message
    or its OutOfMemoryError, recognised by name so that this module needs no torch; the CPU
    allocator says "can't allocate memory: you tried to allocate N bytes")."""
    if isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError":
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and ("out of memory" in text or "tried to allocate" in text)


def file_error_text(error: BaseException) -> Optional[str]:
    """One line for an OSError about a named file (a name too long for the file system, a
    full disk, no permission): the user can act on it, so it is no internal error. None for
    any other error."""
    if isinstance(error, OSError) and error.filename is not None:
        return f"{brief(error.filename, 150)}: {brief(error.strerror or error, 100)}"
    return None


def out_of_memory_text(error: BaseException) -> str:
    """One line for an out-of-memory failure: what ran out and what to lower."""
    return (f"out of memory ({brief(error, 160)}); lower the resolution, use precision bf16 or fp16 "
            "(on a GPU, or a CPU with fast bf16), or run on the CPU")


class PPDError(Exception):
    """Base of every error the product reports as one clear line."""

    kind = "internal"


class BadInputError(PPDError):
    """An input file or argument is unusable (unreadable image, wrong size, NaN depth...)."""

    kind = "bad_input"


class CheckpointError(BadInputError):
    """A weights file is corrupt, unsafe, or does not match the network's keys and shapes."""


class WeightsMissingError(PPDError):
    """The model weights are neither on disk nor downloadable."""

    kind = "weights_missing"


class OutputError(PPDError):
    """An output cannot be written (unwritable folder, existing file without --force)."""

    kind = "bad_input"


class OutputExistsError(OutputError):
    """An output file already exists and replacing it was not asked for."""


class Cancelled(PPDError):
    """The user asked to stop; raised from a progress callback and unwinds the job."""

    kind = "cancelled"
