""""Set up backend": a virtual environment with torch and this package, built as a background task.

No bpy here: the commands run one after another on a `tasks.Task`, each output line goes to
a log file, and the UI reads the task's `SetupStatus`, so Blender never freezes. The torch
wheel index is chosen for the machine: the CUDA version the NVIDIA driver supports, Apple's
default wheels (MPS) on macOS, or the CPU-only wheels otherwise. The package is the wheel
the extension carries (its other dependencies come from PyPI), unless the user names a
folder, a wheel or a PyPI requirement instead: that override is checked before anything
runs, and pip resolves it (`--dry-run`) before the multi-GB torch download. With pip 24.1
or later the downloads report their bytes (`--progress-bar raw`). The environment lives in
a folder of the user's (`backend_home`), not inside the extension: uninstalling or updating
the extension keeps the multi-GB backend, and "Remove backend" deletes it on request.
"""

from __future__ import annotations

import glob
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Optional

from . import wording
from .pip_output import RAW_PROGRESS_PIP, Download, pip_version, read_download, root_cause
from .tasks import Task, TaskFailed, TaskStatus

TORCH_INDEX = "https://download.pytorch.org/whl/"
# (minimum CUDA version the driver must support, wheel index tag), newest first.
CUDA_WHEELS = (((13, 0), "cu130"), ((12, 8), "cu128"), ((12, 6), "cu126"), ((11, 8), "cu118"))
APP_FOLDER = "depth-from-image"
MIN_PYTHON = (3, 10)
VERSION_PROBE = "import sys, venv, ensurepip; print('%d.%d' % sys.version_info[:2])"
#: The steps of a set-up: their labels and their shares of the progress bar (torch is most of it).
STEPS = (("Creating the environment", 0.02), ("Updating pip", 0.05), ("Checking the package", 0.03),
         ("Installing torch", 0.75), ("Installing Depth from Image", 0.15))
# A PyPI requirement (PEP 508, without environment markers' grammar): a name, extras, and
# version specifiers or a URL.
_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
_SPEC = r"(?:===|==|~=|!=|<=|>=|<|>)\s*[A-Za-z0-9.*+!_-]+"
REQUIREMENT = re.compile(rf"{_NAME}(?:\[\s*{_NAME}(?:\s*,\s*{_NAME})*\s*\])?\s*"
                         rf"(?:{_SPEC}(?:\s*,\s*{_SPEC})*|@\s*\S+)?\s*(?:;.*)?")


def backend_home(system: str | None = None, environ: dict | None = None) -> str:
    """The user's folder for the backend and downloaded weights, outside every extension folder:
    %LOCALAPPDATA% on Windows, ~/Library/Application Support on macOS, $XDG_DATA_HOME (or
    ~/.local/share) elsewhere."""
    system = system or platform.system()
    environ = os.environ if environ is None else environ
    if system == "Windows":
        base = environ.get("LOCALAPPDATA") or os.path.join(os.path.expanduser("~"), "AppData", "Local")
    elif system == "Darwin":
        base = os.path.join(os.path.expanduser("~"), "Library", "Application Support")
    else:
        base = environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, APP_FOLDER)


def bundled_wheel(extension_dir: str) -> str | None:
    """The wheel of this project inside the extension (build.py puts it in wheels/), or None."""
    found = sorted(glob.glob(os.path.join(extension_dir, "wheels", "depth_from_image-*.whl")))
    return found[-1] if found else None


def _names_a_file(override: str) -> bool:
    """Whether the Package override is meant as a file or folder rather than a PyPI name."""
    separators = [os.sep] + ([os.altsep] if os.altsep else [])
    return (any(sep in override for sep in separators) or override.startswith(("~", "."))
            or override.lower().endswith((".whl", ".zip", ".tar.gz")))


def package_arguments(override: str, wheel: str | None) -> list:
    """What pip installs as the package: the bundled wheel, or the override (a project folder,
    a wheel file or a PyPI requirement), checked. Raises ValueError saying what to set instead
    (before the set-up downloads anything)."""
    override = override.strip()
    if not override:
        if wheel is None:
            raise ValueError("this extension carries no wheel of Depth from Image: set Package to a folder of "
                             "the project, a wheel file or a PyPI requirement")
        return [wheel]
    if not _names_a_file(override) or ("@" in override and REQUIREMENT.fullmatch(override)):
        if not REQUIREMENT.fullmatch(override):
            raise ValueError(f"Package '{override}' is neither a file, a folder nor a PyPI requirement (such as "
                             "depth-from-image>=0.1): correct it, or clear it to install the wheel this extension "
                             "carries")
        return [override]
    path = os.path.abspath(os.path.expanduser(override))
    if os.path.isdir(path):
        if not any(os.path.isfile(os.path.join(path, name)) for name in ("pyproject.toml", "setup.py")):
            raise ValueError(f"Package folder {path} holds no pyproject.toml: choose the project's folder, a wheel "
                             "file or a PyPI requirement")
        return [path]
    if not os.path.isfile(path):
        raise ValueError(f"Package {path} does not exist: correct the path, or clear Package to install the wheel "
                         "this extension carries")
    return [path]


def venv_python(venv_dir: str) -> str:
    """The interpreter inside a virtual environment folder."""
    if os.name == "nt":
        return os.path.join(venv_dir, "Scripts", "python.exe")
    return os.path.join(venv_dir, "bin", "python")


def parse_cuda_version(nvidia_smi_output: str) -> tuple | None:
    """The "CUDA Version: X.Y" that `nvidia-smi` prints (the newest CUDA the driver runs)."""
    match = re.search(r"CUDA Version:\s*(\d+)\.(\d+)", nvidia_smi_output)
    return (int(match.group(1)), int(match.group(2))) if match else None


def driver_cuda_version(timeout: float = 10.0) -> tuple | None:
    """Ask `nvidia-smi` which CUDA version the driver supports; None without an NVIDIA driver."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        done = subprocess.run([exe], capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_cuda_version(done.stdout)


def torch_index_url(system: str, cuda: tuple | None) -> tuple:
    """(wheel index URL or None for PyPI's default, a short description) for this machine."""
    if system == "Darwin":
        return None, "macOS: default wheels (Apple GPU via MPS)"
    if cuda is not None:
        for minimum, tag in CUDA_WHEELS:
            if cuda >= minimum:
                return TORCH_INDEX + tag, f"NVIDIA driver supports CUDA {cuda[0]}.{cuda[1]}: {tag} wheels"
    return TORCH_INDEX + "cpu", "no usable NVIDIA GPU: CPU-only wheels"


def setup_commands(base_python: str, venv_dir: str, index_url: str | None, package: list,
                   system_site_packages: bool = False, raw_progress: bool = False) -> list:
    """The commands of `STEPS`: create the environment, update pip, resolve the package alone
    (a mistyped override fails here, before torch), install torch, then this package
    (`package`: pip arguments, see `package_arguments`) with its other dependencies from PyPI.
    With `system_site_packages` the environment sees the base Python's packages (a torch already
    installed there is kept, not downloaded again); with `raw_progress` pip reports its bytes."""
    python = venv_python(venv_dir)
    progress = ["--progress-bar", "raw"] if raw_progress else []
    torch = [python, "-m", "pip", "install", "torch", *progress]
    if index_url:
        torch += ["--index-url", index_url]
    venv = [base_python, "-m", "venv", *(["--system-site-packages"] if system_site_packages else []), venv_dir]
    return [
        venv,
        [python, "-m", "pip", "install", "--upgrade", "pip"],
        [python, "-m", "pip", "install", "--dry-run", "--no-deps", *package],
        torch,
        [python, "-m", "pip", "install", *progress, *package],
    ]


def format_command(command: list) -> str:
    """A command as one line a user could paste into a terminal."""
    return " ".join(f'"{part}"' if " " in part else part for part in command)


def python_version(python: str, timeout: float = 15.0) -> tuple | None:
    """(major, minor) of an interpreter that can make virtual environments, else None."""
    try:
        done = subprocess.run([python, "-c", VERSION_PROBE], capture_output=True, text=True,
                              timeout=timeout, check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.fullmatch(r"(\d+)\.(\d+)", done.stdout.strip()) if done.returncode == 0 else None
    return (int(match.group(1)), int(match.group(2))) if match else None


def base_interpreter(path: str | None = None) -> str:
    """A Python to create the environment with: python3 / python on PATH when it is 3.10+
    and has venv, else Blender's own (always recent). Windows' "python3" that only opens the
    Microsoft Store (WindowsApps) and old system Pythons are skipped. Runs subprocesses:
    call it off the UI thread."""
    for name in ("python3", "python"):
        found = shutil.which(name, path=path)
        if found and "WindowsApps" not in found and (python_version(found) or (0, 0)) >= MIN_PYTHON:
            return found
    return sys.executable


@dataclass
class SetupStatus(TaskStatus):
    """A snapshot for the UI: overall fraction, current step, why these wheels, the download in
    progress, the last output line; on failure (`error`) the line of the output that says why
    and what to do next."""

    fraction: float = 0.0
    stage: str = ""
    reason: str = ""
    download: Optional[Download] = None
    cause: str = ""
    next_step: str = ""
    commands: list = field(default_factory=list)

    def line(self) -> str:
        """The progress bar's text: the step, and the bytes of a download in progress."""
        return f"{self.stage}: {self.download.line()}" if self.download and self.download.name else self.stage


def start_setup(venv_dir: str, log_path: str, *, package: list, base_python: str = "",
                system_site_packages: bool = False) -> Task:
    """Start setting up the backend in `venv_dir` (its interpreter is `venv_python(venv_dir)`)."""
    def work(task: Task) -> str:
        return _set_up(task, venv_dir, log_path, package, base_python, system_site_packages)

    return Task("setup", work, SetupStatus()).start()


def _set_up(task: Task, venv_dir: str, log_path: str, package: list, base_python: str,
            system_site_packages: bool) -> str:
    task.update(stage="Looking for Python and an NVIDIA driver")
    base_python = base_python or base_interpreter()
    index_url, why = torch_index_url(platform.system(), driver_cuda_version())
    commands = setup_commands(base_python, venv_dir, index_url, package, system_site_packages)
    task.update(commands=[format_command(c) for c in commands], reason=why)
    os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"\n== Set up backend {time.strftime('%Y-%m-%d %H:%M:%S')}: {why}\n")
        done_share = 0.0
        for number, (label, share) in enumerate(STEPS):
            if number == 2 and _pip_reports_bytes(venv_python(venv_dir)):
                commands = setup_commands(base_python, venv_dir, index_url, package, system_site_packages, True)
                task.update(commands=[format_command(c) for c in commands])
            task.update(stage=label, fraction=done_share, download=None)
            _run_step(task, label, commands[number], log, done_share, share)
            done_share += share
    task.update(fraction=1.0, stage="Done", download=None, message=f"Interpreter: {venv_python(venv_dir)}")
    return venv_python(venv_dir)


def _pip_reports_bytes(python: str) -> bool:
    """Whether the environment's pip (after its update) has `--progress-bar raw`."""
    try:
        done = subprocess.run([python, "-m", "pip", "--version"], capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return (pip_version(done.stdout) or (0, 0)) >= RAW_PROGRESS_PIP


def _run_step(task: Task, label: str, command: list, log, done_share: float, share: float) -> None:
    """One command: its output logged, its downloads' bytes shown; TaskFailed with the cause."""
    log.write(f"$ {format_command(command)}\n")
    log.flush()
    download, bar = [None], [done_share]  # the bar never goes back when the next file starts

    def on_line(line: str) -> None:
        log.write(line)
        found = read_download(line, download[0])
        if found is not download[0]:
            download[0] = found
            bar[0] = max(bar[0], done_share + share * found.fraction)
            task.update(download=found, fraction=bar[0])
        elif line.strip() and not line.startswith("Progress "):
            task.update(message=line.strip())

    try:
        code, lines = task.run_process(command, on_line)
    except OSError as error:
        raise TaskFailed(f"{label} failed: cannot run {command[0]} ({error.strerror or error})") from None
    log.flush()
    if task.cancelled:
        raise TaskFailed("cancelled")
    if code != 0:
        cause = root_cause(lines)
        task.update(cause=cause, next_step=wording.setup_next_step(cause))
        raise TaskFailed(f"{label} failed (exit code {code}): '{format_command(command)}'")
