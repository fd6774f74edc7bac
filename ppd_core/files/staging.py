"""Where outputs may go (the one overwrite policy), hidden staging folders for a job's outputs,
and moving the staged files into place all or none.

A job writes every output into `.ppd-staging-<host>-<pid>-<random>` beside its final name and
moves them in only when all are written. A run killed outright (SIGKILL, power loss) cannot
remove its staging folder; the next run that stages into the same folder removes those whose
process, on this host, is gone. Folders of live processes or of other hosts are left alone.
Each process also records the folders it stages in (the cache folder's `staging/<host>-<pid>`),
so that a worker starting after a killed one sweeps them before any job writes there.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Collection, Optional, Sequence

from ppd_core.cache import cache_folder
from ppd_core.errors import OutputError, OutputExistsError

STAGING_PREFIX = ".ppd-staging-"


def resolved(path: Path) -> Path:
    """The path with links and `..` resolved, as far as it resolves (a link loop, a NUL byte:
    as given, made absolute), to compare two names of one file."""
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError, ValueError):
        return Path(path).absolute()


def check_targets(targets: Sequence[Path], inputs: dict, replace: bool, claimed: Optional[dict] = None,
                  owner: Optional[Path] = None) -> None:
    """Refuse output files that would go over an input ({path: what it is}, never written
    over), over a folder, over an existing file (unless `replace`), into a missing folder, or
    onto a file an earlier job of the same run writes (`claimed`: {resolved target: owner},
    updated here with these targets for `owner`)."""
    inputs = {resolved(path): what for path, what in inputs.items()}
    claimed = {} if claimed is None else claimed
    for target in map(Path, targets):
        if "\x00" in str(target):  # no file system takes it: refused before any work, not after
            raise OutputError(f"{str(target)!r}: a file name cannot hold a NUL character")
        where = resolved(target)
        if where in inputs:
            raise OutputError(f"{target}: refusing to overwrite {inputs[where]}")
        if where in claimed:
            raise OutputError(f"{target}: already the output of {claimed[where]} in this run; "
                              f"rename one of the photos or run them separately")
        try:
            _check_place(target, replace)
        except OSError as error:  # a name too long for the file system, a folder that cannot be searched
            raise OutputError(f"{target}: cannot write here ({error.strerror or error})") from None
    claimed.update((resolved(target), owner) for target in targets)


def _check_place(target: Path, replace: bool) -> None:
    if target.is_dir():
        raise OutputError(f"{target}: is a folder, not a file")
    if target.exists() and not replace:
        raise OutputExistsError(f"{target}: already exists")
    if not target.parent.is_dir():
        what = "not a folder" if target.parent.exists() else "no such folder"
        raise OutputError(f"{target.parent}: {what}")


def _host() -> str:
    """This machine's name as it goes into staging folder names (letters, digits, dashes)."""
    return re.sub(r"[^A-Za-z0-9]+", "-", socket.gethostname())[:40].strip("-") or "host"


def _owner(name: str) -> Optional[tuple[str, int]]:
    """(host, pid) of the run that made staging folder `name`, or None for other names."""
    match = re.fullmatch(re.escape(STAGING_PREFIX) + r"(.+)-(\d+)-[^-]+", name)
    return (match.group(1), int(match.group(2))) if match else None


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists but belongs to someone else
    return True


def remove_stale_staging(folder: Path) -> list[Path]:
    """Remove the staging folders in `folder` left by dead runs on this host; return them."""
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process there
        return []
    removed = []
    try:
        entries = list(os.scandir(folder))
    except (OSError, ValueError):  # gone, unreadable, a NUL in the name
        return []
    for entry in entries:
        owner = _owner(entry.name)
        if owner is None or owner[0] != _host() or owner[1] == os.getpid() or _process_alive(owner[1]):
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(Path(entry.path))
    return removed


def make_staging(folder: Path) -> Path:
    """A new, empty staging folder in `folder` (after removing dead runs' leftovers there),
    recorded as this process's (`sweep_recorded_staging`)."""
    remove_stale_staging(folder)
    try:
        staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{_host()}-{os.getpid()}-", dir=folder))
    except OSError as error:
        raise OutputError(f"{folder}: cannot write here ({error.strerror or error})") from None
    _record(folder)
    return staging


_recorded: dict[Path, set[str]] = {}
"""{record: folders already in it}; a forked child has a record of its own (its pid in the name)."""


def _records() -> Path:
    return cache_folder() / "staging"


def _record(folder: Path) -> None:
    """Add `folder` to this process's record of where it stages; the record goes when the
    process exits normally. A cache folder that cannot be written only loses the sweep."""
    if os.name == "nt":
        return
    record = _records() / f"{_host()}-{os.getpid()}"
    known = _recorded.setdefault(record, set())
    where = str(resolved(folder))
    if where in known:
        return
    try:
        record.parent.mkdir(parents=True, exist_ok=True)
        with open(record, "a", encoding="utf-8") as file:
            file.write(where + "\n")
    except OSError:
        return
    if not known:
        atexit.register(_forget, record)
    known.add(where)


def _forget(record: Path) -> None:
    with contextlib.suppress(OSError):
        record.unlink()


def sweep_recorded_staging() -> list[Path]:
    """Remove the staging folders of this host's dead runs in every folder they recorded, and
    their records; return the folders removed. The worker calls it when it starts."""
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process there
        return []
    try:
        records = list(_records().iterdir())
    except OSError:
        return []
    removed = []
    for record in records:
        host, _, pid = record.name.rpartition("-")
        if host != _host() or not pid.isdigit() or int(pid) == os.getpid() or _process_alive(int(pid)):
            continue
        try:
            folders = record.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            folders = []
        for folder in dict.fromkeys(folders):
            removed += remove_stale_staging(Path(folder))
        _forget(record)
    return removed


def _place_new(staged: Path, final: Path) -> None:
    """Move `staged` to `final` only if no `final` exists, even one made a moment ago by
    another program (a hard link fails on an existing name; where links are impossible, the
    check and the rename are two steps)."""
    try:
        os.link(staged, final)
    except FileExistsError:
        raise OutputExistsError(f"{final}: already exists") from None
    except OSError:
        if final.exists():
            raise OutputExistsError(f"{final}: already exists") from None
        os.replace(staged, final)
    else:
        os.unlink(staged)


def move_into_place(moves: Sequence[tuple[Path, Path]], replace: bool = True,
                    broken: Collection[Path] = ()) -> None:
    """Move each (staged, final) file onto its final name, all or none.

    With `replace` (--force), or for a final file in `broken` (found cut short or unreadable,
    `ppd_core.files.output_check`), a final file that already exists is first hard-linked (or,
    where links are impossible, renamed) into the staged file's folder; otherwise an existing
    final file stops the move. If any move fails or is interrupted, the files already moved go
    back to staging and the old ones are put back, so the folder is as it was.
    """
    placed: list[tuple[Path, Path]] = []
    saved: list[tuple[Path, Path]] = []
    try:
        for number, (staged, final) in enumerate(moves):
            if final.is_dir():
                raise OutputError(f"{final}: is a folder; refusing to replace it with a file")
            if not (replace or final in broken):
                _place_new(staged, final)
                placed.append((staged, final))
                continue
            if final.exists():
                backup = staged.parent / f".old-{number}"  # no final name: it may be near the length limit
                try:
                    os.link(final, backup)
                except OSError:
                    os.replace(final, backup)
                saved.append((backup, final))
            os.replace(staged, final)
            placed.append((staged, final))
    except BaseException:
        for staged, final in placed:
            with contextlib.suppress(OSError):
                os.replace(final, staged)
        for backup, final in saved:
            with contextlib.suppress(OSError):
                os.replace(backup, final)
        raise
