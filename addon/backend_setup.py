""""Set up backend": a virtual environment with torch and this package, built in the background.

No bpy here: the commands run one after another on a thread, each output line goes to a
log file, and the UI polls `BackendSetup.status()` from a timer, so Blender never freezes.
The torch wheel index is chosen for the machine: the CUDA version the NVIDIA driver
supports, Apple's default wheels (MPS) on macOS, or the CPU-only wheels otherwise.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

TORCH_INDEX = "https://download.pytorch.org/whl/"
# (minimum CUDA version the driver must support, wheel index tag), newest first.
CUDA_WHEELS = (((13, 0), "cu130"), ((12, 8), "cu128"), ((12, 6), "cu126"), ((11, 8), "cu118"))
PACKAGE_SPEC = "depth-from-image==0.1.0"
MIN_PYTHON = (3, 10)
VERSION_PROBE = "import sys, venv, ensurepip; print('%d.%d' % sys.version_info[:2])"


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


def setup_commands(base_python: str, venv_dir: str, index_url: str | None, package: str = PACKAGE_SPEC) -> list:
    """The commands that create the environment and install torch, then this package."""
    python = venv_python(venv_dir)
    torch = [python, "-m", "pip", "install", "torch"]
    if index_url:
        torch += ["--index-url", index_url]
    return [
        [base_python, "-m", "venv", venv_dir],
        [python, "-m", "pip", "install", "--upgrade", "pip"],
        torch,
        [python, "-m", "pip", "install", package],
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
    """A snapshot for the UI: overall fraction, current step, last output line, outcome."""

    fraction: float = 0.0
    stage: str = ""
    message: str = ""
    done: bool = False
    error: str = ""
    commands: list = field(default_factory=list)


class BackendSetup:
    """Runs the setup commands on a thread; `status()` and `cancel()` are safe from the UI."""

    def __init__(self, venv_dir: str, log_path: str, *, package: str = PACKAGE_SPEC, base_python: str = "") -> None:
        self.venv_dir = venv_dir
        self.log_path = log_path
        self.package = package
        self.base_python = base_python  # chosen on the thread when empty (it runs probes)
        self.python = venv_python(venv_dir)
        self._status = SetupStatus()
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._cancelled = False
        self._thread = threading.Thread(target=self._run, name="ppd-backend-setup", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def status(self) -> SetupStatus:
        with self._lock:
            return SetupStatus(**vars(self._status))

    def cancel(self) -> None:
        self._cancelled = True
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()

    def _update(self, **values) -> None:
        with self._lock:
            for key, value in values.items():
                setattr(self._status, key, value)

    def _run(self) -> None:
        self._update(stage="Looking for Python and an NVIDIA driver")
        self.base_python = self.base_python or base_interpreter()
        index_url, why = torch_index_url(platform.system(), driver_cuda_version())
        commands = setup_commands(self.base_python, self.venv_dir, index_url, self.package)
        self._update(commands=[format_command(c) for c in commands], message=why)
        labels = ("Creating the environment", "Updating pip", "Installing torch", "Installing Depth from Image")
        try:
            with open(self.log_path, "a", encoding="utf-8") as log:
                log.write(f"\n== Set up backend {time.strftime('%Y-%m-%d %H:%M:%S')}: {why}\n")
                for number, (label, command) in enumerate(zip(labels, commands)):
                    if self._cancelled:
                        raise RuntimeError("cancelled")
                    self._update(stage=label, fraction=number / len(commands))
                    self._run_one(command, log)
        except (OSError, RuntimeError) as error:
            self._update(done=True, error=f"{error} (log: {self.log_path})")
            return
        self._update(done=True, fraction=1.0, stage="Done", message=f"Interpreter: {self.python}")

    def _run_one(self, command: list, log) -> None:
        log.write(f"$ {format_command(command)}\n")
        log.flush()
        self._process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            text=True, errors="replace",
        )
        for line in self._process.stdout:
            log.write(line)
            if line.strip():
                self._update(message=line.strip()[:200])
        code = self._process.wait()
        log.flush()
        if self._cancelled:
            raise RuntimeError("cancelled")
        if code != 0:
            raise RuntimeError(f"'{format_command(command)}' failed with exit code {code}")
