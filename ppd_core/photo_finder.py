"""The one photo finder: the photos a command line names (files, folders, `--recursive`,
globs with `**`, `@list.txt` files), each photo once.

Folders are walked here rather than by `os.walk` or `glob`, so that every way of naming
photos follows folder links alike and visits each real folder once: a link back into a
folder being walked (a loop, which sends `glob`'s `**` round for ever) or a second link to
a folder already walked is not followed, and the loop is said in a note. Photos named
twice by different paths (`a/../a/x.png`, a link) are the same photo: they compare by
their resolved paths. Hidden files and folders (staging folders, `._` files) are left out,
as are the outputs of other photos (a texture, a depth PNG).
"""

from __future__ import annotations

import fnmatch
import glob
import os
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

from ppd_core.errors import BadInputError, PPDError
from ppd_core.files.staging import resolved
from ppd_core.options import OUTPUT_KINDS, PHOTO_SUFFIXES, output_files

LIST_PREFIX = "@"
"""`@shoot.txt` names a text file of photo paths, one a line."""
MAX_LIST_BYTES = 64 << 20
"""Largest `@list` file read (64 MB, about half a million paths)."""

Note = Callable[[str], None]
"""Receives a one-line note about the search (a folder link not followed)."""


def is_batch_argument(argument: str) -> bool:
    """True for an argument that stands for many photos: a folder, a glob or an @list file."""
    path = Path(argument)
    try:
        if path.is_file():
            return False
        folder = path.is_dir()
    except OSError:  # a name too long for the file system: no folder, and said when it is read
        folder = False
    return folder or argument.startswith(LIST_PREFIX) or glob.has_magic(argument)


def _output_names(photos: Sequence[Path]) -> set[str]:
    """The names of every file any output kind would write for these photos (a texture, a
    depth PNG), so that a second run over the same folder does not take them for photos."""
    return {file.name for photo in photos for kind, output in OUTPUT_KINDS.items()
            for file in output_files(kind, Path(photo.stem + output.suffix))}


def _photos_only(found: Sequence[Path]) -> list[Path]:
    """Photo files, sorted, without the outputs of other photos among them."""
    photos = sorted(path for path in found if path.suffix.lower() in PHOTO_SUFFIXES and path.is_file())
    names = _output_names(photos)
    return [path for path in photos if path.name not in names]


class FolderWalk:
    """Enters real folders once per pattern position: a folder reached again through a link
    is skipped, with a note naming the link (a loop when it leads back into the walk)."""

    def __init__(self, on_note: Optional[Note]) -> None:
        self.on_note = on_note
        self.visited: dict[tuple, Path] = {}
        self.noted: set[Path] = set()

    def enter(self, folder: Path, position: int = 0) -> bool:
        """True the first time the real folder behind `folder` is entered at `position`."""
        try:
            info = folder.stat()
        except OSError:  # a dangling link, a folder that went away
            return False
        key = (info.st_dev, info.st_ino, position)
        if key not in self.visited:
            self.visited[key] = folder
            return True
        if self.on_note is not None and folder.is_symlink() and folder not in self.noted:
            self.noted.add(folder)
            first = self.visited[key]
            self.on_note(f"{folder}: a link back to {first} (a loop); not followed" if first in folder.parents else
                         f"{folder}: a link to {first}, which is already searched; not followed")
        return False


def _entries(folder: Path, hidden: bool = False) -> list[os.DirEntry]:
    """The folder's entries (without hidden ones unless `hidden`), by name; none when it cannot be read."""
    try:
        with os.scandir(folder) as scan:
            return sorted((entry for entry in scan if hidden or not entry.name.startswith(".")),
                          key=lambda entry: entry.name)
    except OSError:
        return []


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # follows links
    except OSError:
        return False


def folder_files(folder: Path, recursive: bool, on_note: Optional[Note] = None) -> Iterator[Path]:
    """The visible files in `folder` and, when `recursive`, in its subfolders (links followed),
    each real folder once."""
    walk = FolderWalk(on_note)
    pending = [folder]
    while pending:
        current = pending.pop()
        if not walk.enter(current):
            continue
        subfolders = []
        for entry in _entries(current):
            if _is_dir(entry):
                subfolders.append(Path(entry.path))
            else:
                yield Path(entry.path)
        if recursive:
            pending.extend(reversed(subfolders))


def _pattern_parts(pattern: str) -> tuple[Path, list[str]]:
    """(the folder a glob starts in, its remaining parts): the leading parts without wildcards."""
    parts = Path(pattern).parts
    fixed = 0
    while fixed < len(parts) - 1 and not glob.has_magic(parts[fixed]):
        fixed += 1
    return Path(*parts[:fixed]) if fixed else Path(), list(parts[fixed:])


def _matches(name: str, part: str) -> bool:
    """`glob`'s rule for one path part: a leading dot is matched only by a leading dot."""
    return fnmatch.fnmatch(name, part) and (not name.startswith(".") or part.startswith("."))


def glob_files(pattern: str, on_note: Optional[Note] = None) -> list[Path]:
    """The files a glob matches; `**` matches any depth of folders (visible ones), each real
    folder once per position in the pattern, so folder links that loop end."""
    start, parts = _pattern_parts(pattern)
    walk = FolderWalk(on_note)
    found: list[Path] = []
    pending = [(start, 0)]  # (folder, position in the pattern), depth first in name order
    while pending:
        folder, position = pending.pop()
        if not walk.enter(folder, position):
            continue
        part = parts[position]
        last = position == len(parts) - 1
        if part == "**" and last:  # `a/**`: every file below
            found += folder_files(folder, True, on_note)
            continue
        deeper = []
        for entry in _entries(folder, hidden=part != "**"):
            path = Path(entry.path)
            if part == "**":
                if _is_dir(entry):
                    deeper.append((path, position))
            elif _matches(entry.name, part):
                if last:
                    found.append(path)
                elif _is_dir(entry):
                    deeper.append((path, position + 1))
        if part == "**":
            deeper.insert(0, (folder, position + 1))  # `**` as no folder at all, first
        pending.extend(reversed(deeper))
    return found


def _listed_photos(argument: str) -> list[Path]:
    """The paths in a list file, one a line; blank lines and `#` comments are skipped. Relative
    paths are relative to the current folder, as if typed on the command line."""
    path = Path(argument[len(LIST_PREFIX):])
    try:
        if path.stat().st_size > MAX_LIST_BYTES:
            raise BadInputError(f"{argument}: a list of photos over {MAX_LIST_BYTES >> 20} MB; is it a list?")
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise BadInputError(f"{argument}: no such list file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise BadInputError(f"{argument}: cannot read the list ({getattr(error, 'strerror', None) or error})") from None
    named = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if any("\x00" in line for line in named):
        raise BadInputError(f"{argument}: holds a NUL character, so it is no list of paths")
    return [Path(line) for line in named]


def expand_argument(argument: str, recursive: bool = False, on_note: Optional[Note] = None) -> list[Path]:
    """The photos one command-line argument stands for: a folder's photos, a glob's matches
    (`**` matches folders at any depth), an `@list.txt`'s lines, or the file itself."""
    if not is_batch_argument(argument):
        return [Path(argument)]
    if argument.startswith(LIST_PREFIX) and not Path(argument).is_dir():
        return _listed_photos(argument)
    if Path(argument).is_dir():
        photos = _photos_only(list(folder_files(Path(argument), recursive, on_note)))
        what = "no photos in this folder" + ("" if recursive else " (--recursive looks into its subfolders)")
    else:
        photos = _photos_only(glob_files(argument, on_note))
        what = "no photos match"
    if not photos:
        raise BadInputError(f"{argument}: {what}")
    return photos


def same_photo_key(photo: Path) -> Path:
    """What makes two names one photo: the resolved path (`a/../a/x.png` and `a/x.png`, a link)."""
    return resolved(photo)


def find_photos(arguments: Sequence[str], recursive: bool = False,
                on_note: Optional[Note] = None) -> tuple[list[Path], list[tuple[str, PPDError]]]:
    """(every photo the arguments stand for, each once, in order; (argument, error) for each
    argument that stands for none). `on_note` hears of folder links not followed."""
    photos: list[Path] = []
    seen: set[Path] = set()
    problems = []
    for argument in arguments:
        try:
            found = expand_argument(argument, recursive, on_note)
        except PPDError as error:
            problems.append((argument, error))
            continue
        except OSError as error:  # a name too long for the file system
            problems.append((argument, BadInputError(f"{argument}: {error.strerror or error}")))
            continue
        for photo in found:
            key = same_photo_key(photo)
            if key not in seen:
                seen.add(key)
                photos.append(photo)
    return photos, problems
