"""Reading pip's output: the download in progress (pip's machine-readable progress) and the
line of a failed run that says why (no bpy here).

`pip install --progress-bar raw` (pip 24.1 and later) prints "Downloading NAME (SIZE)" and
then "Progress DONE of TOTAL" lines (bytes, about four a second) as it downloads; older pips
show no progress in a pipe at all, so they are not given the flag.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

RAW_PROGRESS_PIP = (24, 1)
"""The first pip with `--progress-bar raw`."""
# Lines of a failed pip run that name the cause, most telling first: pip's "No matching
# distribution" is only the consequence of an unreachable index or a full disk.
ROOT_CAUSES = (
    "Name or service not known", "Temporary failure in name resolution", "nodename nor servname",
    "getaddrinfo failed", "Failed to establish a new connection", "Connection refused", "timed out",
    "CERTIFICATE_VERIFY_FAILED", "No space left on device", "Permission denied", "Access is denied",
    "Could not find a version that satisfies", "No matching distribution found", "HTTP error",
)
PROGRESS = re.compile(r"^Progress (\d+) of (\d+)\s*$")
DOWNLOADING = re.compile(r"^\s*Downloading (\S+)")


@dataclass
class Download:
    """The file pip is downloading and how many of its bytes have arrived (total 0: unknown)."""

    name: str = ""
    done: int = 0
    total: int = 0

    @property
    def fraction(self) -> float:
        return min(self.done / self.total, 1.0) if self.total else 0.0

    def line(self) -> str:
        """"torch-2.6.0-cp311-cp311-linux_x86_64.whl: 0.81 of 2.50 GB"."""
        unit, scale = ("GB", 1e9) if max(self.done, self.total) >= 1e8 else ("MB", 1e6)
        total = f" of {self.total / scale:.2f}" if self.total else ""
        return f"{self.name}: {self.done / scale:.2f}{total} {unit}"


def read_download(line: str, current: Optional[Download]) -> Optional[Download]:
    """The download after one line of pip's output: a new one on "Downloading", its bytes on
    "Progress", else `current` as it was."""
    match = PROGRESS.match(line)
    if match:
        found = current or Download()
        return Download(found.name, int(match.group(1)), int(match.group(2)))
    match = DOWNLOADING.match(line)
    if match:
        return Download(match.group(1).rsplit("/", 1)[-1])
    return current


def pip_version(output: str) -> Optional[tuple]:
    """(major, minor) from `pip --version` ("pip 24.1.2 from ..."), else None."""
    match = re.match(r"pip (\d+)\.(\d+)", output.strip())
    return (int(match.group(1)), int(match.group(2))) if match else None


def root_cause(lines: list) -> str:
    """The line of a failed command's output that says why: a known cause (DNS, network, disk,
    permissions) first, else pip's first ERROR line, else the last line."""
    text = [line.strip() for line in lines if line.strip()]
    for cause in ROOT_CAUSES:
        for line in text:
            if cause.lower() in line.lower():
                return line
    errors = [line for line in text if line.startswith("ERROR")]
    return (errors or text or [""])[0 if errors else -1]
