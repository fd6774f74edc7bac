""""Set up backend": a virtual environment with torch and this package, built in the background.

No bpy here: the commands run one after another on a thread, each output line goes to a
log file, and the UI polls `BackendSetup.status()` from a timer, so Blender never freezes.
The torch wheel index is chosen for the machine: the CUDA version the NVIDIA driver
supports, Apple's default wheels (MPS) on macOS, or the CPU-only wheels otherwise. The
package is the wheel the extension carries (its other dependencies come from PyPI), unless
the user names a folder, a wheel or a PyPI requirement instead. The environment lives in a
folder of the user's (`backend_home`), not inside the extension: uninstalling or updating
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

from .background_task import BackgroundTask

TORCH_INDEX = "https://download.pytorch.org/whl/"
# (minimum CUDA version the driver must support, wheel index tag), newest first.
CUDA_WHEELS = (((13, 0), "cu130"), ((12, 8), "cu128"), ((12, 6), "cu126"), ((11, 8), "cu118"))
APP_FOLDER = "depth-from-image"
MIN_PYTHON = (3, 10)
# Lines of a failed pip run that name the cause, most telling first: pip's "No matching
# distribution" is only the consequence of an unreachable index or a full disk.
ROOT_CAUSES = (
    "Name or service not known", "Temporary failure in name resolution", "nodename nor servname",
    "getaddrinfo failed", "Failed to establish a new connection", "Connection refused", "timed out",
    "CERTIFICATE_VERIFY_FAILED", "No space left on device", "Permission denied", "Access is denied",
    "Could not find a version that satisfies", "No matching distribution found", "HTTP error",
)
VERSION_PROBE = "import sys, venv, ensurepip; print('%d.%d' % sys.version_info[:2])"


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


def package_arguments(override: str, wheel: str | None) -> list:
    """What pip installs as the package: the bundled wheel, or the override (a folder, a wheel
    file or a PyPI requirement). Raises ValueError when there is neither."""
    override = override.strip()
    if not override:
        if wheel is None:
            raise ValueError("this extension carries no wheel of Depth from Image: set Package to a folder of "
                             "the project, a wheel file or a PyPI requirement")
        return [wheel]
    if os.path.isdir(override) or override.endswith(".whl"):
        return [os.path.abspath(override)]
    return [override]


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
                   system_site_packages: bool = False) -> list:
    """The commands that create the environment and install torch, then this package (`package`:
    pip arguments, see `package_arguments`) with its other dependencies from PyPI. With
    `system_site_packages` the environment sees the base Python's packages (a torch already
    installed there is kept, not downloaded again)."""
    python = venv_python(venv_dir)
    torch = [python, "-m", "pip", "install", "torch"]
    if index_url:
        torch += ["--index-url", index_url]
    venv = [base_python, "-m", "venv", *(["--system-site-packages"] if system_site_packages else []), venv_dir]
    return [
        venv,
        [python, "-m", "pip", "install", "--upgrade", "pip"],
        torch,
        [python, "-m", "pip", "install", *package],
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
class SetupStatus:
    """A snapshot for the UI: overall fraction, current step, why these wheels, last output
    line, outcome (on failure the failed step, and the line of its output that says why)."""

    fraction: float = 0.0
    stage: str = ""
    reason: str = ""
    message: str = ""
    done: bool = False
    error: str = ""
    cause: str = ""
    commands: list = field(default_factory=list)


class BackendSetup(BackgroundTask):
    """Runs the setup commands on a thread; `status()` and `cancel()` are safe from the UI."""

    def __init__(self, venv_dir: str, log_path: str, *, package: list, base_python: str = "",
                 system_site_packages: bool = False) -> None:
        self.venv_dir = venv_dir
        self.log_path = log_path
        self.package = package
        self.base_python = base_python  # chosen on the thread when empty (it runs probes)
        self.system_site_packages = system_site_packages
        self.python = venv_python(venv_dir)
        super().__init__(SetupStatus(), "ppd-backend-setup")

    def _run(self) -> None:
        self._update(stage="Looking for Python and an NVIDIA driver")
        self.base_python = self.base_python or base_interpreter()
        index_url, why = torch_index_url(platform.system(), driver_cuda_version())
        commands = setup_commands(self.base_python, self.venv_dir, index_url, self.package,
                                  self.system_site_packages)
        self._update(commands=[format_command(c) for c in commands], reason=why)
        labels = ("Creating the environment", "Updating pip", "Installing torch", "Installing Depth from Image")
        try:
            os.makedirs(os.path.dirname(self.log_path) or ".", exist_ok=True)
            with open(self.log_path, "a", encoding="utf-8") as log:
                log.write(f"\n== Set up backend {time.strftime('%Y-%m-%d %H:%M:%S')}: {why}\n")
                for number, (label, command) in enumerate(zip(labels, commands)):
                    if self._cancelled:
                        raise RuntimeError("cancelled")
                    self._update(stage=label, fraction=number / len(commands))
                    self._run_one(label, command, log)
        except (OSError, RuntimeError) as error:
            self._update(done=True, error=str(error))
            return
        self._update(done=True, fraction=1.0, stage="Done", message=f"Interpreter: {self.python}")

    def _run_one(self, label: str, command: list, log) -> None:
        log.write(f"$ {format_command(command)}\n")
        log.flush()
        self._process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            text=True, errors="replace",
        )
        output = []
        for line in self._process.stdout:
            log.write(line)
            output.append(line)
            if line.strip():
                self._update(message=line.strip())
        code = self._process.wait()
        log.flush()
        if self._cancelled:
            raise RuntimeError("cancelled")
        if code != 0:
            self._update(cause=root_cause(output))
            raise RuntimeError(f"{label} failed (exit code {code}): '{format_command(command)}'")
